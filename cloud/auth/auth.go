// Package auth authenticates the callers of the hub's console APIs and
// says what they may do (DESIGN.md §6).
//
// A caller presents an API key as "Authorization: Bearer <key>". The hub's
// configuration holds only each key's SHA-256 hash, with the key's ID, its
// role (admin, security, host, occupier_admin) and, for an occupier admin,
// the occupier (tenant) it is scoped to. Interceptor checks the key on
// every call, unary and streaming, and puts the caller's Principal in the
// context; handlers then call Require for the roles a method admits and
// ScopeOccupier for every occupier whose people they touch.
//
// Errors: an absent or unknown key is connect.CodeUnauthenticated; a role
// or scope that does not admit the call is connect.CodePermissionDenied.
// Both messages say what is missing without echoing the key.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
)

// Role is what a console user or API client may do.
type Role string

// The roles (DESIGN.md §1).
const (
	// Admin may do everything, for every occupier.
	Admin Role = "admin"
	// Security manages cardholders, groups and logs across sites and
	// occupiers.
	Security Role = "security"
	// Host invites visitors; it may not manage cardholders.
	Host Role = "host"
	// OccupierAdmin manages the people of one occupier (tenant) only.
	OccupierAdmin Role = "occupier_admin"
)

// Roles lists every role.
var Roles = []Role{Admin, Security, Host, OccupierAdmin}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Key is one API key as the hub's configuration holds it: never the key
// itself, only its SHA-256 hash.
type Key struct {
	// ID names the key in logs and audit records; unique.
	ID string `json:"id"`
	// SHA256 is the hex SHA-256 of the key (HashKey).
	SHA256 string `json:"sha256"`
	// Role is what the key may do.
	Role Role `json:"role"`
	// Occupier is the occupier an occupier_admin key is scoped to; it must
	// be empty for any other role.
	Occupier access.ID `json:"occupier,omitempty"`
}

// Validate returns the first problem with k.
func (k Key) Validate() error {
	if k.ID == "" || len(k.ID) > 128 {
		return errors.New("api key: id is required (at most 128 bytes)")
	}
	if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("api key %s: sha256 must be 64 hex digits", k.ID)
	}
	if !k.Role.Valid() {
		return fmt.Errorf("api key %s: unknown role %q (want admin, security, host or occupier_admin)", k.ID, k.Role)
	}
	if k.Role == OccupierAdmin {
		if _, err := access.ParseID(string(k.Occupier)); err != nil {
			return fmt.Errorf("api key %s: an occupier_admin key needs the occupier ID it is scoped to: %w", k.ID, err)
		}
	} else if k.Occupier != "" {
		return fmt.Errorf("api key %s: only an occupier_admin key has an occupier", k.ID)
	}
	return nil
}

// MinKeyLen is the shortest key accepted, in bytes.
const MinKeyLen = 16

// HashKey returns the hex SHA-256 of key, the form the configuration holds.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NewKey returns a fresh random key: "ghk_" and 32 random bytes in
// unpadded base64url.
func NewKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "ghk_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ReadSecret returns a key given at setup time: "env:NAME" reads the
// environment variable NAME, "file:PATH" (or a bare path) reads the file,
// trimmed of surrounding white space. It returns an error for an empty key
// or one shorter than MinKeyLen.
func ReadSecret(spec string) (string, error) {
	var v string
	if name, ok := strings.CutPrefix(spec, "env:"); ok {
		v = os.Getenv(name)
	} else {
		b, err := os.ReadFile(strings.TrimPrefix(spec, "file:"))
		if err != nil {
			return "", fmt.Errorf("api key: %w", err)
		}
		v = string(b)
	}
	v = strings.TrimSpace(v)
	if len(v) < MinKeyLen {
		return "", fmt.Errorf("api key from %s: empty or shorter than %d bytes", spec, MinKeyLen)
	}
	return v, nil
}

// Principal is the authenticated caller of a request.
type Principal struct {
	// Role is the caller's role.
	Role Role
	// Occupier is the occupier an occupier admin is scoped to; empty for
	// the other roles.
	Occupier access.ID
	// KeyID names the API key the caller presented.
	KeyID string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p. Interceptor does it for every
// authenticated call; tests and in-process callers may do it themselves.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller of ctx, if authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Sentinel errors, each inside a *connect.Error of the code shown.
var (
	// ErrUnauthenticated (connect.CodeUnauthenticated): no key, or a key
	// the hub does not know.
	ErrUnauthenticated = errors.New("auth: not authenticated")
	// ErrDenied (connect.CodePermissionDenied): the caller's role or
	// occupier scope does not admit the call.
	ErrDenied = errors.New("auth: permission denied")
)

// Require returns the caller of ctx if its role is one of roles. It returns
// a connect.CodeUnauthenticated error when ctx has no caller and a
// connect.CodePermissionDenied one when the role is not admitted.
func Require(ctx context.Context, roles ...Role) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, connect.NewError(connect.CodeUnauthenticated, ErrUnauthenticated)
	}
	if !slices.Contains(roles, p.Role) {
		return p, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: role %s may not do this", ErrDenied, p.Role))
	}
	return p, nil
}

// ScopeOccupier returns nil if the caller of ctx may see and manage the
// people of occupier (empty: access users, who belong to no occupier).
// Every role but occupier_admin spans all occupiers; an occupier admin
// spans only its own, and never access users. It returns a
// connect.CodeUnauthenticated error when ctx has no caller and a
// connect.CodePermissionDenied one otherwise. It does not check the role:
// call Require too.
func ScopeOccupier(ctx context.Context, occupier access.ID) error {
	p, ok := FromContext(ctx)
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, ErrUnauthenticated)
	}
	if p.Role != OccupierAdmin {
		return nil
	}
	if occupier == "" || occupier != p.Occupier {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: outside the occupier this key is scoped to", ErrDenied))
	}
	return nil
}

// InScope reports whether ScopeOccupier(ctx, occupier) would return nil:
// for filtering lists without an error per entry.
func InScope(ctx context.Context, occupier access.ID) bool {
	return ScopeOccupier(ctx, occupier) == nil
}

// Keyring holds the configured API keys. It is immutable and safe for
// concurrent use.
type Keyring struct {
	keys []Key
	sums [][]byte
}

// NewKeyring checks keys and returns their keyring. It returns the first
// key's validation error, or an error for an ID or hash listed twice.
func NewKeyring(keys []Key) (*Keyring, error) {
	kr := &Keyring{}
	ids, sums := map[string]bool{}, map[string]bool{}
	for _, k := range keys {
		if err := k.Validate(); err != nil {
			return nil, err
		}
		k.SHA256 = strings.ToLower(k.SHA256)
		if ids[k.ID] || sums[k.SHA256] {
			return nil, fmt.Errorf("api key %s: id or key listed twice", k.ID)
		}
		ids[k.ID], sums[k.SHA256] = true, true
		b, _ := hex.DecodeString(k.SHA256)
		kr.keys = append(kr.keys, k)
		kr.sums = append(kr.sums, b)
	}
	return kr, nil
}

// Len returns the number of keys.
func (kr *Keyring) Len() int { return len(kr.keys) }

// Authenticate returns the principal of an Authorization header value
// ("Bearer <key>"). It returns a connect.CodeUnauthenticated error when
// the header is absent or malformed or the key unknown. The presented key's
// hash is compared with every configured hash in constant time.
func (kr *Keyring) Authenticate(authorization string) (Principal, error) {
	key, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || key == "" {
		return Principal{}, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w: send Authorization: Bearer <api key>", ErrUnauthenticated))
	}
	sum := sha256.Sum256([]byte(key))
	found := -1
	for i, s := range kr.sums { // every one, whatever matches
		if subtle.ConstantTimeCompare(sum[:], s) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w: unknown api key", ErrUnauthenticated))
	}
	k := kr.keys[found]
	return Principal{Role: k.Role, Occupier: k.Occupier, KeyID: k.ID}, nil
}

// Interceptor returns a Connect handler interceptor that authenticates
// every call, unary and streaming, before the handler runs, and puts the
// Principal in the handler's context. Unauthenticated calls never reach
// the handler.
func (kr *Keyring) Interceptor() connect.Interceptor { return interceptor{kr} }

type interceptor struct{ kr *Keyring }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		p, err := i.kr.Authenticate(req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		return next(WithPrincipal(ctx, p), req)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		p, err := i.kr.Authenticate(conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(WithPrincipal(ctx, p), conn)
	}
}

// Bearer returns a Connect client interceptor that sends key as
// "Authorization: Bearer <key>" on every call, unary and streaming.
func Bearer(key string) connect.Interceptor { return bearer(key) }

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// Middleware authenticates plain HTTP requests (not Connect) the same way:
// an unauthenticated request gets 401, others reach next with the
// Principal in their context.
func (kr *Keyring) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := kr.Authenticate(r.Header.Get("Authorization"))
		if err != nil {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}
