package partition

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// TestCheck: the safety checker over hand-written histories, including
// ones that violate the invariant (the checker can fail).
func TestCheck(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const site, other = "S1", "S2"
	rev := Revocation{Site: site, Card: 7, Acked: at(100), What: "disable bob"}
	tap := func(ms int, card access.CardNumber, grant bool) Tap {
		return Tap{At: at(ms), Site: site, Node: "n1", Door: "D", Card: card, Grant: grant, Mode: access.Online}
	}
	for _, tc := range []struct {
		name string
		taps []Tap
		revs []Revocation
		want int // violations
	}{
		{"OK/NoRevocation", []Tap{tap(50, 7, true), tap(150, 7, true)}, nil, 0},
		{"OK/GrantBeforeAck", []Tap{tap(50, 7, true), tap(99, 7, true), tap(100, 7, true)}, []Revocation{rev}, 0},
		{"OK/DenyAfterAck", []Tap{tap(150, 7, false), tap(5000, 7, false)}, []Revocation{rev}, 0},
		{"OK/OtherCard", []Tap{tap(150, 8, true)}, []Revocation{rev}, 0},
		{"OK/OtherSite", []Tap{{At: at(150), Site: other, Node: "m1", Card: 7, Grant: true}}, []Revocation{rev}, 0},
		{"OK/OfflineControllerWithinWindow", []Tap{{At: at(150), Site: site, Node: "ctl-1", Card: 7, Grant: true,
			Mode: access.Offline, CacheUntil: at(200)}}, []Revocation{rev}, 0},
		{"ErrGrantAfterAck", []Tap{tap(50, 7, true), tap(101, 7, true), tap(150, 7, false)}, []Revocation{rev}, 1},
		{"ErrEveryLateGrant", []Tap{tap(101, 7, true), tap(102, 7, true)}, []Revocation{rev}, 2},
		{"ErrOfflineControllerPastWindow", []Tap{{At: at(250), Site: site, Node: "ctl-1", Card: 7, Grant: true,
			Mode: access.Offline, CacheUntil: at(200)}}, []Revocation{rev}, 1},
		{"ErrFencedNodeOfflineRule", []Tap{{At: at(150), Site: site, Node: "n2", Card: 7, Grant: true, Mode: access.Offline}},
			[]Revocation{rev}, 1},
		{"ErrCacheClaimUnderOnlineRule", []Tap{{At: at(150), Site: site, Node: "n2", Card: 7, Grant: true,
			Mode: access.Online, CacheUntil: at(900)}}, []Revocation{rev}, 1},
		{"ErrEarliestRevocationCounts", []Tap{tap(150, 7, true)},
			[]Revocation{{Site: site, Card: 7, Acked: at(300), What: "late"}, rev}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check(tc.taps, tc.revs)
			if len(got) != tc.want {
				t.Fatalf("Check found %d violations, want %d: %v", len(got), tc.want, got)
			}
			for _, v := range got {
				if v.Revocation.What != rev.What {
					t.Errorf("violation against %q, want the earliest %q", v.Revocation.What, rev.What)
				}
				if s := v.String(); !strings.Contains(s, "granted") || !strings.Contains(s, rev.What) {
					t.Errorf("violation reads %q", s)
				}
			}
		})
	}
}

// TestHistoryRecords: a History collects concurrently and checks what it
// holds.
func TestHistoryRecords(t *testing.T) {
	var h History
	now := time.Now()
	done := make(chan struct{})
	for i := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := range 50 {
				h.RecordTap(Tap{At: now.Add(time.Duration(i*50+j) * time.Millisecond), Site: "S", Card: 1, Grant: false})
			}
		}()
	}
	for range 4 {
		<-done
	}
	h.RecordRevocation(Revocation{Site: "S", Card: 1, Acked: now})
	if got := len(h.Taps()); got != 200 {
		t.Fatalf("%d taps recorded, want 200", got)
	}
	if v := h.Check(); len(v) != 0 {
		t.Fatalf("violations in a history of denials: %v", v)
	}
	h.RecordTap(Tap{At: now.Add(time.Second), Site: "S", Card: 1, Grant: true})
	if v := h.Check(); len(v) != 1 {
		t.Fatalf("%d violations after a late grant, want 1", len(v))
	}
}
