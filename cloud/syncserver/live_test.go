package syncserver_test

import (
	"slices"
	"testing"
	"time"
)

// waitLive polls the server's view of site until it is want.
func waitLive(t *testing.T, h *testHub, site string, want bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		live, err := h.server.Live(ctx, site)
		if err != nil {
			t.Fatal(err)
		}
		if live == want && h.server.Connected(site) == want && slices.Contains(h.server.ConnectedSites(), site) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("site %s: gave up waiting for connected=%v", site, want)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising on time
	}
}

func TestConnected(t *testing.T) {
	h := MustOpenHub(t, t.TempDir())
	a := newSite(t, siteA, tokenA)
	waitLive(t, h, siteA, false)
	stop := a.Start(h.client())
	waitLive(t, h, siteA, true)
	waitLive(t, h, siteB, false)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	waitLive(t, h, siteA, false)

	// Another hub process holds B's stream lease: B is live, not connected here.
	if _, err := h.store.Acquire(ctx, siteB, "another-hub-process", time.Minute); err != nil {
		t.Fatal(err)
	}
	if live, err := h.server.Live(ctx, siteB); err != nil || !live || h.server.Connected(siteB) {
		t.Fatalf("B with another process's lease: live %v (%v), connected %v", live, err, h.server.Connected(siteB))
	}
}
