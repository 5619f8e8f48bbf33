package partition

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/replication"
)

// Tap is one door decision recorded during a run.
type Tap struct {
	// At is when the tap was presented (the reader published it). A tap
	// presented after a revocation was acknowledged must be denied; one
	// presented before may still be granted, whenever its answer comes.
	At time.Time
	// Site is the site of the door; Node the node (or controller) that
	// decided.
	Site, Node string
	// Door and Card are what was presented where.
	Door access.ID
	Card access.CardNumber
	// Grant is the decision; Reason explains it.
	Grant  bool
	Reason access.Reason
	// Mode is the rule the decider applied.
	Mode access.Mode
	// CacheUntil is set when a door controller cut off from its site
	// decided alone from its offline cache: the end of the cache entry's
	// validity window. Zero for a decision by a node.
	CacheUntil time.Time
}

// Revocation is one revocation (a disable, a removed or revoked grant, a
// checkout) of a card's access, and when its site acknowledged it.
type Revocation struct {
	// Site is the site that acknowledged it.
	Site string
	// Card is the card it takes access from. A revocation of a person
	// is recorded once per card they hold.
	Card access.CardNumber
	// Acked is when the site acknowledged it: for a site-made revocation,
	// when the proposal returned; for a hub-made one, see WatchAck.
	Acked time.Time
	// What names it in reports.
	What string
}

// History is what a run recorded. It is safe for concurrent use.
type History struct {
	mu   sync.Mutex
	taps []Tap
	revs []Revocation
}

// RecordTap adds a tap.
func (h *History) RecordTap(t Tap) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.taps = append(h.taps, t)
}

// RecordRevocation adds a revocation acknowledged at a site.
func (h *History) RecordRevocation(r Revocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.revs = append(h.revs, r)
}

// Taps returns a copy of the taps recorded.
func (h *History) Taps() []Tap {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.taps)
}

// Revocations returns a copy of the revocations recorded.
func (h *History) Revocations() []Revocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.revs)
}

// Check checks the recorded history (see the package function Check).
func (h *History) Check() []Violation { return Check(h.Taps(), h.Revocations()) }

// Violation is a tap that broke the safety invariant.
type Violation struct {
	Tap        Tap
	Revocation Revocation
}

// String describes the violation for a test's report.
func (v Violation) String() string {
	return fmt.Sprintf("card %d granted at door %s by %s (%v, presented %s) %v after %q was acknowledged at site %s",
		v.Tap.Card, v.Tap.Door, v.Tap.Node, v.Tap.Mode, v.Tap.At.Format(time.RFC3339Nano),
		v.Tap.At.Sub(v.Revocation.Acked), v.Revocation.What, v.Revocation.Site)
}

// Check checks the safety invariant of DESIGN.md §5 over a history: once
// a revocation of a card is acknowledged at a site, no door of that site
// grants that card afterwards — except a door controller that is itself
// cut off and decides from its offline cache, within the cache entry's
// validity window. A grant by a node under the offline rule (a fenced
// node) is no exception: the site acknowledges a revocation only once
// every node applied it or fenced itself, so such a grant is a violation.
//
// It returns one Violation per offending tap (against the earliest
// revocation it breaks), in the order of the taps; none for a safe
// history. It is a pure function of its arguments.
func Check(taps []Tap, revs []Revocation) []Violation {
	type key struct {
		site string
		card access.CardNumber
	}
	earliest := map[key]Revocation{}
	for _, r := range revs {
		k := key{r.Site, r.Card}
		if e, ok := earliest[k]; !ok || r.Acked.Before(e.Acked) {
			earliest[k] = r
		}
	}
	var out []Violation
	for _, t := range taps {
		if !t.Grant {
			continue
		}
		r, ok := earliest[key{t.Site, t.Card}]
		if !ok || !t.At.After(r.Acked) {
			continue
		}
		if !t.CacheUntil.IsZero() && t.Mode == access.Offline && t.At.Before(t.CacheUntil) {
			continue // a cut-off controller within its cache entry's window
		}
		out = append(out, Violation{Tap: t, Revocation: r})
	}
	return out
}

// AckWatch records, when the hub sees site acknowledge a hub-made
// revocation, one Revocation per card it concerns.
type AckWatch struct {
	done chan struct{}
	err  error
	at   time.Time
}

// WatchAck records the moment a hub-made revocation d counts as
// acknowledged at site s: one Revocation per card in cards, in hist. It
// polls every millisecond and takes the first moment at which either
// every live node of the site has applied d (the site acknowledges only
// after that, or after fencing the nodes that have not) or the hub has
// recorded the site's acknowledgement of it (after the site's own). Both
// are correct moments from which no door of the site may grant; the first
// is earlier, so the check is stricter.
func WatchAck(ctx context.Context, h *Hub, s *Site, d replication.Delta, cards []access.CardNumber, what string, hist *History) *AckWatch {
	w := &AckWatch{done: make(chan struct{})}
	src := d.Source()
	go func() {
		defer close(w.done)
		w.err = Wait(ctx, WaitTimeout, "the site's acknowledgement of "+what, func() bool {
			applied := true
			for _, n := range s.Nodes() {
				if n.Machine().Vector()[src] < d.Seq {
					applied = false
					break
				}
			}
			if applied {
				return true
			}
			v, err := h.Acked(ctx, s.ID())
			return err == nil && v[src] >= d.Seq
		})
		if w.err != nil {
			return
		}
		w.at = time.Now()
		for _, c := range cards {
			hist.RecordRevocation(Revocation{Site: s.ID(), Card: c, Acked: w.at, What: what})
		}
	}()
	return w
}

// Wait waits for the acknowledgement and returns when it was seen, or the
// error that ended the watch.
func (w *AckWatch) Wait() (time.Time, error) {
	<-w.done
	return w.at, w.err
}
