package visitdesk

import (
	"context"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/access"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// sweepTimeout bounds the ending of one visit by the sweeper.
const sweepTimeout = 10 * time.Second

// sweepLoop ends visits past their window every cfg.Sweep while this node
// leads.
func (d *Desk) sweepLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.Sweep)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-d.ctx.Done():
			return
		}
		if d.cfg.Leader != nil && !d.cfg.Leader() {
			continue
		}
		if n, err := d.SweepOnce(d.ctx); err != nil && d.ctx.Err() == nil {
			d.log.Warn("visit sweep incomplete", "ended", n, "err", err)
		}
	}
}

// SweepOnce ends every visit of the site whose window is over at the
// desk's clock: a guest checked in or picked up is checked out, an invited
// or pre-registered one who never came expires; each through Raft
// (CheckOutVisit), which also unbinds the visit's cards. It returns how
// many visits it ended and the first error. It is safe for concurrent use.
func (d *Desk) SweepOnce(ctx context.Context) (int, error) {
	now := d.cfg.Now()
	var due []access.ID
	d.site.View(func(st *access.State) {
		for v := range st.Visits() {
			if v.SiteID != d.cfg.SiteID || now.Before(v.Until) {
				continue
			}
			switch v.State {
			case access.VisitInvited, access.VisitPreRegistered, access.VisitCheckedIn, access.VisitPickedUp:
				due = append(due, v.ID)
			}
		}
	})
	slices.Sort(due)
	var first error
	n := 0
	for _, id := range due {
		pctx, cancel := context.WithTimeout(ctx, sweepTimeout)
		_, err := d.propose(pctx, &raftv1.Command{RequestId: "sweep/" + string(id),
			Op: &raftv1.Command_CheckOutVisit{CheckOutVisit: &raftv1.CheckOutVisit{VisitId: string(id)}}})
		cancel()
		switch {
		case err == nil:
			n++
			d.log.Info("visit window over: visit ended", "visit", string(id))
		case errCode(err) == access.Conflict:
			// Ended meanwhile (a checkout raced the sweep).
		case first == nil:
			first = err
		}
	}
	return n, first
}
