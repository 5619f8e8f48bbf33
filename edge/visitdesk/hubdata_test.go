package visitdesk

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/sitestate"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

const testSite = access.ID("01JTEST0S1TE00000000000000")

// viewSite reads a real (empty) state machine; nothing here proposes or
// publishes (the kiosk flow is tested against a real site in edge/node).
type viewSite struct{ m *sitestate.Machine }

func (s viewSite) View(fn func(*access.State)) { s.m.View(fn) }
func (viewSite) Propose(context.Context, *raftv1.Command) (*edgev1.CommandResult, error) {
	return nil, access.Errorf(access.Unavailable, "no raft here")
}
func (viewSite) Publish(context.Context, mqttproto.Device, []byte) error {
	return access.Errorf(access.Unavailable, "no broker here")
}

// hub serves token keys and a watchlist; body overrides set the answers.
type hub struct {
	mu                 sync.Mutex
	keys, watch, types string
	srv                *httptest.Server
}

func newHub(t *testing.T) *hub {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &hub{
		keys: `{"keys":[{"key_id":"` + access.KeyIDOf(pub).String() + `","public_key":"` + hex.EncodeToString(pub) +
			`","created":"2026-01-01T00:00:00Z","current":true}]}`,
		types: `{"site":"` + string(testSite) + `","version":1,"visitor_types":[{"id":"01JTEST0TYPE00000000000000","name":"Contractor","allowed_groups":[],"required_documents":["Safety certificate"],"max_duration_seconds":0,"escort_required":true}]}`,
		watch: `{"site":"` + string(testSite) + `","version":3,"entries":[{"id":"01JTEST0WATCH0000000000000","given_names":"Jane","surname":"Doe","birth_date":"1980-05-01","document_number":"","action":"deny","reason":"x"}]}`,
	}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		switch r.URL.Path {
		case "/visits/token-keys":
			_, _ = io.WriteString(w, h.keys)
		case "/visits/site-watchlist":
			if r.Header.Get("Authorization") != "Bearer tok" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, h.watch)
		case "/visits/site-visitor-types":
			if r.Header.Get("Authorization") != "Bearer tok" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, h.types)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hub) set(keys, watch string, types ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(types) > 0 {
		h.types = types[0]
	}
	if keys != "" {
		h.keys = keys
	}
	if watch != "" {
		h.watch = watch
	}
}

func newDesk(t *testing.T, dir, hubURL, token string) *Desk {
	t.Helper()
	d, err := New(Config{SiteID: testSite, NodeID: "n1", Dir: dir, HubURL: hubURL, Token: token, CardFrom: 10, CardTo: 19,
		Refresh: time.Hour, Sweep: time.Hour, FetchTimeout: 2 * time.Second},
		viewSite{sitestate.New(testSite, slog.New(slog.DiscardHandler))}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestHubData(t *testing.T) {
	ctx := context.Background()
	t.Run("KeptForARestartWithoutWAN", func(t *testing.T) {
		h, dir := newHub(t), t.TempDir()
		d := newDesk(t, dir, h.srv.URL, "tok")
		if err := d.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if st := d.Status(); st.TokenKeys != 1 || !st.Watchlist || st.WatchlistVersion != 3 || st.WatchlistEntries != 1 || st.PoolSize != 10 || st.PoolFree != 10 {
			t.Fatalf("status %+v", st)
		}
		if got := d.requiredDocs(access.Visit{TypeID: "01JTEST0TYPE00000000000000"}); len(got) != 1 || got[0] != "Safety certificate" {
			t.Fatalf("required documents %v", got)
		}
		h.srv.Close() // the WAN is down from here on
		d2 := newDesk(t, dir, h.srv.URL, "tok")
		d2.Open()
		if st := d2.Status(); st.TokenKeys != 1 || st.WatchlistEntries != 1 || len(d2.requiredDocs(access.Visit{TypeID: "01JTEST0TYPE00000000000000"})) != 1 {
			t.Fatalf("after a restart without the hub: %+v", st)
		}
		if err := d2.Refresh(ctx); access.ErrorCode(err) != access.Unavailable {
			t.Fatalf("refresh without the hub: %v", err)
		}
		if st := d2.Status(); st.TokenKeys != 1 {
			t.Fatal("a failed refresh dropped the keys")
		}
	})
	t.Run("BadAnswersAreNotKept", func(t *testing.T) {
		h, dir := newHub(t), t.TempDir()
		d := newDesk(t, dir, h.srv.URL, "tok")
		if err := d.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(filepath.Join(dir, KeysFile))
		beforeW, _ := os.ReadFile(filepath.Join(dir, WatchlistFile))
		beforeT, _ := os.ReadFile(filepath.Join(dir, TypesFile))
		for _, tc := range []struct{ name, keys, watch, types string }{
			{"KeyNotHex", `{"keys":[{"key_id":"","public_key":"zz","created":"2026-01-01T00:00:00Z"}]}`, "", ""},
			{"KeyIDMismatch", `{"keys":[{"key_id":"0000000000000000","public_key":"` + hex.EncodeToString(make([]byte, 32)) + `"}]}`, "", ""},
			{"BadRetired", `{"keys":[{"public_key":"` + hex.EncodeToString(make([]byte, 32)) + `","retired":"yesterday"}]}`, "", ""},
			{"NotJSON", `<html>`, "", ""},
			{"WatchlistOfAnotherSite", "", `{"site":"OTHER","version":1,"entries":[]}`, ""},
			{"WatchlistBadAction", "", `{"site":"` + string(testSite) + `","version":1,"entries":[{"id":"01JTEST0WATCH0000000000000","surname":"Doe","action":"shoot"}]}`, ""},
			{"WatchlistBadDate", "", `{"site":"` + string(testSite) + `","version":1,"entries":[{"id":"01JTEST0WATCH0000000000000","surname":"Doe","action":"hold","birth_date":"1.5.1980"}]}`, ""},
			{"TypesOfAnotherSite", "", "", `{"site":"OTHER","version":1,"visitor_types":[]}`},
			{"TypesBadID", "", "", `{"site":"` + string(testSite) + `","version":1,"visitor_types":[{"id":"x"}]}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h2 := newHub(t)
				h2.set(h.keys, "") // the same good keys unless the case replaces them
				h2.set(tc.keys, tc.watch)
				if tc.types != "" {
					h2.set("", "", tc.types)
				}
				d.cfg.HubURL = h2.srv.URL
				if err := d.Refresh(ctx); access.ErrorCode(err) != access.Invalid {
					t.Fatalf("refresh: %v, want invalid", err)
				}
				if st := d.Status(); st.TokenKeys != 1 || st.WatchlistVersion != 3 || len(d.requiredDocs(access.Visit{TypeID: "01JTEST0TYPE00000000000000"})) != 1 {
					t.Fatalf("a bad answer replaced good data: %+v", st)
				}
				after, _ := os.ReadFile(filepath.Join(dir, KeysFile))
				afterW, _ := os.ReadFile(filepath.Join(dir, WatchlistFile))
				afterT, _ := os.ReadFile(filepath.Join(dir, TypesFile))
				if string(after) != string(before) || string(afterW) != string(beforeW) || string(afterT) != string(beforeT) {
					t.Fatal("a bad answer was written to disk")
				}
			})
		}
	})
	t.Run("WatchlistNeedsTheSiteToken", func(t *testing.T) {
		h := newHub(t)
		d := newDesk(t, t.TempDir(), h.srv.URL, "wrong")
		if err := d.Refresh(ctx); access.ErrorCode(err) != access.Unavailable {
			t.Fatalf("refresh with a wrong token: %v", err)
		}
		if st := d.Status(); st.TokenKeys != 1 || st.Watchlist {
			t.Fatalf("status %+v: want the keys (public) and no watchlist", st)
		}
	})
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		in       string
		from, to access.CardNumber
		ok       bool
	}{
		{"900000-900999", 900000, 900999, true},
		{" 5 - 5 ", 5, 5, true},
		{"9-5", 0, 0, false},
		{"0-5", 0, 0, false},
		{"5", 0, 0, false},
		{"a-b", 0, 0, false},
		{"", 0, 0, false},
	} {
		from, to, err := ParseCardRange(tc.in)
		if (err == nil) != tc.ok || from != tc.from || to != tc.to {
			t.Errorf("ParseCardRange(%q) = %v, %v, %v", tc.in, from, to, err)
		}
		if err != nil && access.ErrorCode(err) != access.Invalid {
			t.Errorf("ParseCardRange(%q): code %s", tc.in, access.ErrorCode(err))
		}
	}
	good := Config{SiteID: testSite, Dir: "x", CardFrom: 1, CardTo: 2}
	for name, c := range map[string]Config{
		"NoSite":   {Dir: "x", CardFrom: 1, CardTo: 2},
		"NoDir":    {SiteID: testSite, CardFrom: 1, CardTo: 2},
		"NoRange":  {SiteID: testSite, Dir: "x"},
		"BadHub":   {SiteID: testSite, Dir: "x", CardFrom: 1, CardTo: 2, HubURL: "ftp://x"},
		"Backward": {SiteID: testSite, Dir: "x", CardFrom: 3, CardTo: 2},
	} {
		if err := c.Validate(); access.ErrorCode(err) != access.Invalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := good.Validate(); err != nil {
		t.Error(err)
	}
}
