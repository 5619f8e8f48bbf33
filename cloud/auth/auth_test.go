package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1/statusv1connect"
)

const (
	occA = access.ID("01JAAAAAAAAAAAAAAAAAAAAAAA")
	occB = access.ID("01JBBBBBBBBBBBBBBBBBBBBBBB")
)

// whoami answers GetStatus with the caller's key ID as the version, after
// requiring the admin or occupier_admin role.
type whoami struct {
	statusv1connect.UnimplementedStatusServiceHandler
}

func (whoami) GetStatus(ctx context.Context, _ *connect.Request[statusv1.GetStatusRequest]) (*connect.Response[statusv1.GetStatusResponse], error) {
	p, err := auth.Require(ctx, auth.Admin, auth.OccupierAdmin)
	if err != nil {
		return nil, err
	}
	if err := auth.ScopeOccupier(ctx, occA); err != nil {
		return nil, err
	}
	return connect.NewResponse(&statusv1.GetStatusResponse{Self: &statusv1.Component{Id: p.KeyID}}), nil
}

func TestInterceptor(t *testing.T) {
	keys := map[string]auth.Key{
		"admin-key-0123456789":  {ID: "admin", Role: auth.Admin},
		"host-key-0123456789":   {ID: "host", Role: auth.Host},
		"occ-a-key-0123456789":  {ID: "occ-a", Role: auth.OccupierAdmin, Occupier: occA},
		"occ-b-key-0123456789":  {ID: "occ-b", Role: auth.OccupierAdmin, Occupier: occB},
		"security-0123456789ab": {ID: "sec", Role: auth.Security},
	}
	var list []auth.Key
	for plain, k := range keys {
		k.SHA256 = auth.HashKey(plain)
		list = append(list, k)
	}
	kr, err := auth.NewKeyring(list)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(statusv1connect.NewStatusServiceHandler(whoami{}, connect.WithInterceptors(kr.Interceptor())))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name, key string
		code      connect.Code // 0: OK
		want      string
	}{
		{"OK admin", "admin-key-0123456789", 0, "admin"},
		{"OK occupier admin in scope", "occ-a-key-0123456789", 0, "occ-a"},
		{"ErrNoKey", "", connect.CodeUnauthenticated, ""},
		{"ErrUnknownKey", "nope-nope-nope-nope", connect.CodeUnauthenticated, ""},
		{"ErrRole", "host-key-0123456789", connect.CodePermissionDenied, ""},
		{"ErrRoleSecurity", "security-0123456789ab", connect.CodePermissionDenied, ""},
		{"ErrScope", "occ-b-key-0123456789", connect.CodePermissionDenied, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []connect.ClientOption
			if tc.key != "" {
				opts = append(opts, connect.WithInterceptors(auth.Bearer(tc.key)))
			}
			c := statusv1connect.NewStatusServiceClient(srv.Client(), srv.URL, opts...)
			res, err := c.GetStatus(context.Background(), connect.NewRequest(&statusv1.GetStatusRequest{}))
			if got := connect.CodeOf(err); err != nil && got != tc.code || err == nil && tc.code != 0 {
				t.Fatalf("code %v (%v), want %v", got, err, tc.code)
			}
			if err == nil && res.Msg.GetSelf().GetId() != tc.want {
				t.Fatalf("key id %q, want %q", res.Msg.GetSelf().GetId(), tc.want)
			}
		})
	}
}

func TestScopeOccupier(t *testing.T) {
	ctx := context.Background()
	if err := auth.ScopeOccupier(ctx, occA); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("no principal: %v", err)
	}
	sec := auth.WithPrincipal(ctx, auth.Principal{Role: auth.Security, KeyID: "s"})
	for _, occ := range []access.ID{occA, occB, ""} {
		if err := auth.ScopeOccupier(sec, occ); err != nil {
			t.Fatalf("security, occupier %q: %v", occ, err)
		}
	}
	oa := auth.WithPrincipal(ctx, auth.Principal{Role: auth.OccupierAdmin, Occupier: occA, KeyID: "a"})
	if err := auth.ScopeOccupier(oa, occA); err != nil {
		t.Fatal(err)
	}
	for _, occ := range []access.ID{occB, ""} {
		if err := auth.ScopeOccupier(oa, occ); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("occupier admin of A, occupier %q: %v", occ, err)
		}
	}
}

func TestKeyValidate(t *testing.T) {
	h := auth.HashKey("0123456789abcdef")
	for _, tc := range []struct {
		name string
		key  auth.Key
		ok   bool
	}{
		{"OK", auth.Key{ID: "k", SHA256: h, Role: auth.Admin}, true},
		{"OK occupier admin", auth.Key{ID: "k", SHA256: h, Role: auth.OccupierAdmin, Occupier: occA}, true},
		{"ErrIDRequired", auth.Key{SHA256: h, Role: auth.Admin}, false},
		{"ErrHash", auth.Key{ID: "k", SHA256: "abc", Role: auth.Admin}, false},
		{"ErrRole", auth.Key{ID: "k", SHA256: h, Role: "root"}, false},
		{"ErrOccupierMissing", auth.Key{ID: "k", SHA256: h, Role: auth.OccupierAdmin}, false},
		{"ErrOccupierOnAdmin", auth.Key{ID: "k", SHA256: h, Role: auth.Admin, Occupier: occA}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.key.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	k := auth.Key{ID: "k", SHA256: h, Role: auth.Admin}
	if _, err := auth.NewKeyring([]auth.Key{k, k}); err == nil {
		t.Fatal("duplicate key accepted")
	}
}

func TestReadSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte("  file-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := auth.ReadSecret("file:" + path); err != nil || got != "file-secret-0123456789" {
		t.Fatalf("file: %q, %v", got, err)
	}
	t.Setenv("GATEHOUSE_TEST_KEY", "env-secret-0123456789")
	if got, err := auth.ReadSecret("env:GATEHOUSE_TEST_KEY"); err != nil || got != "env-secret-0123456789" {
		t.Fatalf("env: %q, %v", got, err)
	}
	t.Setenv("GATEHOUSE_TEST_KEY", "short")
	if _, err := auth.ReadSecret("env:GATEHOUSE_TEST_KEY"); err == nil {
		t.Fatal("short key accepted")
	}
	k, err := auth.NewKey()
	if err != nil || len(k) < auth.MinKeyLen {
		t.Fatalf("NewKey: %q, %v", k, err)
	}
}
