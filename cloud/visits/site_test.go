package visits_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hub"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/visits"
	visitv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/visit/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// siteGet fetches path from the hub as a site would, with the bearer token
// tok ("" for none), and returns the status, the headers and the body.
func siteGet(t *testing.T, method, url, tok, body string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// TestSiteWatchlist: a site reads the watchlist with its sync token, in
// the documented JSON; the version grows with every change; a caller
// without the token, another method, a query or a body are refused with
// a JSON error.
func TestSiteWatchlist(t *testing.T) {
	h := mustOpenSiteHub(t, t.TempDir(), freeAddr(t))
	url := "http://" + h.Addr() + visits.SiteWatchlistPath
	read := func() visits.SiteWatchlist {
		t.Helper()
		st, hdr, body := siteGet(t, http.MethodGet, url, siteToken, "")
		if st != 200 || hdr.Get("Cache-Control") != "no-store" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Fatalf("site watchlist: %d %v\n%s", st, hdr, body)
		}
		var w visits.SiteWatchlist
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			t.Fatalf("%v:\n%s", err, body)
		}
		return w
	}
	empty := read()
	if empty.Site != string(siteID) || empty.Version != 0 || empty.Entries == nil || len(empty.Entries) != 0 {
		t.Fatalf("empty watchlist: %+v", empty)
	}
	if _, _, body := siteGet(t, http.MethodGet, url, siteToken, ""); !strings.Contains(body, `"entries":[]`) {
		t.Errorf("an empty list is not []: %s", body)
	}

	sec := client(h, auth.Security)
	put := func(e *visitv1.WatchEntry) *visitv1.WatchEntry {
		t.Helper()
		res, err := sec.PutWatchEntry(ctxT(t), connect.NewRequest(&visitv1.PutWatchEntryRequest{Entry: e}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetEntry()
	}
	mallory := put(&visitv1.WatchEntry{GivenNames: "Mallory", Surname: "Schmidt", BirthDate: "1980-02-29", DocumentNumber: "L01X00T47",
		Action: visitv1.WatchAction_WATCH_ACTION_DENY, Reason: "banned"})
	eve := put(&visitv1.WatchEntry{GivenNames: "Eve", Surname: "Adams", Action: visitv1.WatchAction_WATCH_ACTION_HOLD, Reason: "check"})
	w := read()
	want := []visits.SiteWatchEntry{
		{ID: eve.GetId(), GivenNames: "Eve", Surname: "Adams", Action: "hold", Reason: "check"},
		{ID: mallory.GetId(), GivenNames: "Mallory", Surname: "Schmidt", BirthDate: "1980-02-29", DocumentNumber: "L01X00T47", Action: "deny", Reason: "banned"},
	}
	if w.Version <= empty.Version || len(w.Entries) != 2 || w.Entries[0] != want[0] || w.Entries[1] != want[1] {
		t.Fatalf("watchlist: %+v\nwant entries %+v", w, want)
	}
	if again := read(); again.Version != w.Version {
		t.Errorf("version moved without a change: %d then %d", w.Version, again.Version)
	}
	if _, err := sec.DeleteWatchEntry(ctxT(t), connect.NewRequest(&visitv1.DeleteWatchEntryRequest{Id: eve.GetId()})); err != nil {
		t.Fatal(err)
	}
	after := read()
	if after.Version <= w.Version || len(after.Entries) != 1 || after.Entries[0].ID != mallory.GetId() {
		t.Errorf("after a delete: %+v", after)
	}

	for _, c := range []struct {
		name, method, url, tok, body string
		status                       int
	}{
		{"ErrNoToken", http.MethodGet, url, "", "", 401},
		{"ErrWrongToken", http.MethodGet, url, "not-the-token-of-any-site", "", 401},
		{"ErrAPIKeyIsNotASite", http.MethodGet, url, apiKeys[auth.Admin], "", 401},
		{"ErrMethod", http.MethodPost, url, siteToken, "", 405},
		{"ErrQuery", http.MethodGet, url + "?site=" + string(otherSit), siteToken, "", 400},
		{"ErrBody", http.MethodGet, url, siteToken, strings.Repeat("x", 1024), 413},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, hdr, body := siteGet(t, c.method, c.url, c.tok, c.body)
			var e struct {
				Error string `json:"error"`
			}
			if st != c.status || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || strings.Contains(body, "Mallory") {
				t.Errorf("%d %q, want %d and a JSON error", st, body, c.status)
			}
			if hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", hdr.Get("Cache-Control"))
			}
		})
	}
	if got := read(); got.Version != after.Version {
		t.Errorf("refused requests changed the version: %d, want %d", got.Version, after.Version)
	}
}

// TestSiteVisitorTypes: a site reads the visitor types with its sync
// token; a type's allowed groups leave out the groups of other sites.
func TestSiteVisitorTypes(t *testing.T) {
	h := mustOpenSiteHub(t, t.TempDir(), freeAddr(t))
	seedBuilding(t, h)
	foreign := "01JGRP00000000000000000009"
	if _, err := h.State().Write(ctxT(t), func(tx *hubstate.Tx) error {
		tx.Change(replication.KindGroup, foreign, replication.SetOp("site", string(otherSit)), replication.SetOp("name", "Elsewhere"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	vt := mustPutType(t, h, &visitv1.VisitorType{Name: "Contractor", AllowedProfileIds: []string{string(lobby), foreign},
		RequiredDocuments: []string{"Safety certificate"}, MaxDurationSeconds: 4 * 3600, EscortRequired: true})
	url := "http://" + h.Addr() + visits.SiteVisitorTypesPath
	st, hdr, body := siteGet(t, http.MethodGet, url, siteToken, "")
	if st != 200 || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v\n%s", st, hdr, body)
	}
	var got visits.SiteVisitorTypes
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Site != string(siteID) || got.Version == 0 || len(got.VisitorTypes) != 1 {
		t.Fatalf("visitor types: %+v", got)
	}
	g := got.VisitorTypes[0]
	if g.ID != vt.GetId() || g.Name != "Contractor" || len(g.AllowedGroups) != 1 || g.AllowedGroups[0] != string(lobby) ||
		len(g.RequiredDocuments) != 1 || g.MaxDurationSeconds != 4*3600 || !g.EscortRequired {
		t.Errorf("the type as a site sees it: %+v", g)
	}
	if st, _, _ := siteGet(t, http.MethodGet, url, "", ""); st != 401 {
		t.Errorf("without a token: %d", st)
	}
}

// TestSiteEndpointsUseTheSyncAuthenticator: the site endpoints accept
// exactly what the hub's sync service accepts — here an authenticator set
// in place of the tokens (the hook for client certificates).
func TestSiteEndpointsUseTheSyncAuthenticator(t *testing.T) {
	cfg := hub.DefaultConfig()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Store.Dir = filepath.Join(t.TempDir(), "store")
	cfg.SyncSites = []hub.SyncSite{{ID: string(siteID), Token: siteToken}}
	h := hub.New(cfg, testLogger(t))
	h.SetSyncAuthenticator(func(_ context.Context, hdr http.Header, _ *tls.ConnectionState) (string, error) {
		if hdr.Get("Authorization") == "Bearer certificate-of-the-other-site" {
			return string(otherSit), nil
		}
		return "", errors.New("not a site")
	})
	if err := h.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	url := "http://" + h.Addr() + visits.SiteWatchlistPath
	st, _, body := siteGet(t, http.MethodGet, url, "certificate-of-the-other-site", "")
	var w visits.SiteWatchlist
	if st != 200 || json.Unmarshal([]byte(body), &w) != nil || w.Site != string(otherSit) {
		t.Errorf("as the authenticator's site: %d %s", st, body)
	}
	if st, _, _ := siteGet(t, http.MethodGet, url, siteToken, ""); st != 401 {
		t.Errorf("a token the authenticator does not accept: %d", st)
	}
}
