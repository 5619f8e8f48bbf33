package visits

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	gmail "github.com/gatehouse/gatehouse/cloud/mail"
	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// What the hub does with a visit after the site checked the guest in (or
// never did): the visit watcher follows the hub's replica — the deltas
// sites send through the sync service as well as the hub's own — and
//
//   - queues an arrival email to the host for a visit it sees on site
//     (checked_in or picked_up) that it has not announced yet: exactly
//     one per visit, by a conditional put of a KindArrival mark in the
//     same store commit as the email, so restarts and several hub
//     processes sharing a store never send two;
//   - expires no-shows: a visit still requested, invited or
//     pre_registered whose window ended NoShowGrace ago is advanced to
//     expired (ExpireNoShows), every ExpiryInterval.
//
// A visit the hub first learns of as already over (checked out, expired:
// the site was offline for the whole visit) gets no arrival email: the
// host learns nothing useful from it any more.

// mailArrival is the kind of the arrival email.
const mailArrival = "arrival"

// expireBatch is the most visits one expiry write changes.
const expireBatch = 1000

// arrivalMark is the KindArrival record of a visit.
type arrivalMark struct {
	Visit     access.ID `json:"visit"`
	CheckedIn time.Time `json:"checked_in,omitzero"` // the time in the email
	At        time.Time `json:"at"`                  // when the hub queued it
	Outbox    string    `json:"outbox,omitempty"`    // the email's outbox ID
	Skipped   string    `json:"skipped,omitempty"`   // why no email was queued
}

// follower reads the deltas the hub's replica applied since its last
// call and keeps what the watcher needs of the visits they touch. It is
// safe for concurrent use.
type follower struct {
	mu      sync.Mutex
	seen    replication.Vector
	arrived map[access.ID]time.Time // advanced to on site, not yet handled: earliest such stamp
	open    map[access.ID]time.Time // not yet on site nor final: the end of the window
}

// catchUp reads what st applied since the last call, and returns the
// visits waiting for their arrival to be handled.
func (f *follower) catchUp(st *hubstate.State) map[access.ID]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen, f.arrived, f.open = replication.Vector{}, map[access.ID]time.Time{}, map[access.ID]time.Time{}
	}
	onSite := []string{access.VisitCheckedIn.String(), access.VisitPickedUp.String()}
	touched := map[access.ID]bool{}
	for src, head := range st.Vector() {
		after := f.seen[src]
		for after < head {
			ds, _ := st.Deltas(src, after, 4096)
			if len(ds) == 0 {
				break
			}
			for _, d := range ds {
				if d.Kind != replication.KindVisit {
					continue
				}
				id := access.ID(d.ID)
				touched[id] = true
				for _, op := range d.Ops {
					if op.Type == replication.OpAdvance && slices.Contains(onSite, op.Value) {
						if cur, ok := f.arrived[id]; !ok || d.Stamp.Time().Before(cur) {
							f.arrived[id] = d.Stamp.Time()
						}
					}
				}
			}
			after = ds[len(ds)-1].Seq
		}
		f.seen[src] = after
	}
	if len(touched) > 0 {
		st.View(func(r *replication.Replica) {
			for id := range touched {
				v, ok := r.Visit(id)
				if ok && v.SiteID != "" && v.State >= access.VisitRequested && v.State < access.VisitCheckedIn {
					f.open[id] = v.Until
				} else {
					delete(f.open, id)
				}
			}
		})
	}
	out := make(map[access.ID]time.Time, len(f.arrived))
	for id, at := range f.arrived {
		out[id] = at
	}
	return out
}

// handled forgets visit id's arrival.
func (f *follower) handled(id access.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.arrived, id)
}

// due returns the visits not yet on site whose window ended by cutoff, in
// ID order.
func (f *follower) due(cutoff time.Time) []access.ID {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []access.ID
	for id, until := range f.open {
		if !until.After(cutoff) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// watch runs the visit watcher until ctx is done: arrivals on every change
// of the replica, no-shows every ExpiryInterval (and once at start).
func (s *Service) watch(ctx context.Context) {
	tick := time.NewTicker(time.Duration(s.cfg.ExpiryInterval))
	defer tick.Stop()
	expire := true
	for {
		changed := s.state.Changed()
		if s.state.Closed() {
			return
		}
		if err := s.announceArrivals(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("visits: arrival emails: will retry", "err", err)
		}
		if expire {
			if _, err := s.ExpireNoShows(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("visits: no-show expiry: will retry", "err", err)
			}
			expire = false
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			expire = true
		}
	}
}

// announceArrivals queues the arrival emails of the visits that came on
// site since the last call. A visit whose email could not be queued is
// tried again on the next call.
func (s *Service) announceArrivals(ctx context.Context) error {
	var errs []error
	for id, at := range s.follow.catchUp(s.state) {
		if err := s.announce(ctx, id, at); err != nil {
			errs = append(errs, err)
			continue
		}
		s.follow.handled(id)
	}
	return errors.Join(errs...)
}

// announce queues the arrival email of visit id, if it is on site and was
// not announced before; stamp is the earliest stamp of its advance to on
// site, the time in when the check-in's own is unknown.
func (s *Service) announce(ctx context.Context, id access.ID, stamp time.Time) error {
	var (
		v     access.Visit
		ok    bool
		guest access.Person
		mc    mailContext
	)
	s.state.View(func(r *replication.Replica) {
		if v, ok = r.Visit(id); ok {
			guest, _ = r.Person(v.VisitorID)
			mc = s.mailContext(r, v.SiteID, v.HostID)
		}
	})
	if !ok || v.SiteID == "" || (v.State != access.VisitCheckedIn && v.State != access.VisitPickedUp) {
		return nil // not on site (any more): no arrival email
	}
	timeIn := cmp.Or(s.timeIn.get(s.state, id), stamp)
	for range 4 {
		var mark arrivalMark
		if ver, err := getJSON(ctx, s.st, KindArrival, string(id), &mark); err != nil || ver > 0 {
			return err
		}
		var rec visitRecord
		rver, err := getJSON(ctx, s.st, KindVisitRecord, string(id), &rec)
		if err != nil {
			return err
		}
		now := s.now()
		mark = arrivalMark{Visit: id, CheckedIn: timeIn, At: now}
		var puts []store.Put
		if mc.hostEmail == "" {
			mark.Skipped = "the host has no email address"
		} else {
			m, err := s.arrivalMail(v, guest, rec, mc, timeIn, now)
			if err != nil {
				return err
			}
			mark.Outbox = m.ID
			rec.Emails = append(rec.Emails, m.ID)
			op, err1 := putJSON(KindOutbox, m.ID, 0, m)
			rp, err2 := putJSON(KindVisitRecord, string(id), rver, rec)
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
			puts = append(puts, op, rp)
		}
		b, err := json.Marshal(mark)
		if err != nil {
			return err
		}
		puts = append(puts, storePut(KindArrival, string(id), b))
		err = s.st.Commit(ctx, store.Batch{Puts: puts})
		if errors.Is(err, store.ErrVersionMismatch) {
			continue // announced meanwhile, or the record changed: read again
		}
		if err != nil {
			return fmt.Errorf("visits: arrival of visit %s: %w", id, err)
		}
		if mark.Outbox != "" {
			s.out.Kick()
			s.log.Info("visits: arrival email queued", "visit", id, "site", v.SiteID, "outbox", mark.Outbox)
		} else {
			s.log.Info("visits: arrival not announced", "visit", id, "site", v.SiteID, "reason", mark.Skipped)
		}
		return nil
	}
	return access.Errorf(access.Unavailable, "visits: arrival of visit %s: its record kept changing; will retry", id)
}

// arrivalMail renders the arrival email of visit v for its host.
func (s *Service) arrivalMail(v access.Visit, guest access.Person, rec visitRecord, mc mailContext, timeIn, now time.Time) (outboxMail, error) {
	given, family := access.SplitVisitorName(guest.Name)
	if family == "" {
		given, family = rec.Given, rec.Family
	}
	name := cmp.Or(strings.TrimSpace(given+" "+family), "Your guest")
	var b strings.Builder
	if timeIn.IsZero() {
		fmt.Fprintf(&b, "%s has checked in at %s.\n", name, mc.siteName)
	} else {
		fmt.Fprintf(&b, "%s checked in at %s on %s.\n", name, mc.siteName, timeIn.In(mc.loc).Format("Monday 2 January 2006 at 15:04 MST"))
		if now.Sub(timeIn) > 10*time.Minute {
			b.WriteString("This email comes late: the site reported the check-in only when its connection to the hub was back.\n")
		}
	}
	switch {
	case v.Escort && v.State == access.VisitPickedUp:
		b.WriteString("\nYour guest must be escorted; the pick-up is confirmed already.\n")
	case v.Escort:
		b.WriteString("\nYour guest must be escorted: their card opens no door until you have met them and confirmed the pick-up")
		if v.Until.After(now) {
			token, err := s.keys.Sign(access.TokenClaims{Visit: v.ID, Site: v.SiteID, Guest: v.HostID, NotBefore: now, Expires: v.Until})
			if err != nil {
				return outboxMail{}, err
			}
			fmt.Fprintf(&b, " here:\n%s/guest/%s/pickup\n", s.cfg.PublicURL, token)
		} else {
			b.WriteString(" at the reception.\n")
		}
	default:
		fmt.Fprintf(&b, "\nTheir card opens the doors of the visit until %s.\n", v.Until.In(mc.loc).Format("15:04 MST on Monday 2 January"))
	}
	id, err := s.newID()
	if err != nil {
		return outboxMail{}, err
	}
	msg := gmail.Message{To: mc.hostEmail, Subject: name + " has arrived at " + mc.siteName, Text: b.String(), ID: string(id) + "@" + s.domain}
	return outboxMail{ID: string(id), Visit: v.ID, Kind: mailArrival, Message: msg, Created: now}, nil
}

// ExpireNoShows expires, as of the service's clock, every visit whose
// guest never checked in (requested, invited or pre_registered) and whose
// window ended at least NoShowGrace ago, and returns how many it expired.
// Each is advanced to expired by a hub write (replication.AdvanceOp, a
// final state, so it travels in the priority lane); a held visit is no
// longer held. A visit the site checked in meanwhile is left alone if the
// check-in is known here; if it arrives later, the merge keeps expired
// (the larger state; docs/visitors.md). The watcher calls it every
// ExpiryInterval; it is safe to call concurrently with it. It returns the
// store's error when a write fails (what was written stays).
func (s *Service) ExpireNoShows(ctx context.Context) (int, error) {
	now := s.now()
	grace := time.Duration(s.cfg.NoShowGrace)
	s.follow.catchUp(s.state)
	due := s.follow.due(now.Add(-grace))
	total := 0
	for len(due) > 0 {
		batch := due[:min(len(due), expireBatch)]
		due = due[len(batch):]
		n, err := s.expire(ctx, batch, now.Add(-grace))
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// expire advances the visits of ids that are still no-shows with a window
// ended by cutoff to expired, in one hub write.
func (s *Service) expire(ctx context.Context, ids []access.ID, cutoff time.Time) (int, error) {
	for attempt := 0; ; attempt++ {
		type held struct {
			ver uint64
			rec visitRecord
		}
		holds := map[access.ID]held{}
		for _, id := range ids {
			var rec visitRecord
			ver, err := getJSON(ctx, s.st, KindVisitRecord, string(id), &rec)
			if err != nil {
				return 0, err
			}
			if rec.Held {
				holds[id] = held{ver, rec}
			}
		}
		var done []access.ID
		_, err := s.state.Write(ctx, func(tx *hubstate.Tx) error {
			done = done[:0]
			for _, id := range ids {
				v, ok := tx.Replica().Visit(id)
				if !ok || v.SiteID == "" || v.State < access.VisitRequested || v.State >= access.VisitCheckedIn || v.Until.After(cutoff) {
					continue
				}
				tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitExpired))
				done = append(done, id)
				if h, ok := holds[id]; ok {
					h.rec.Held = false
					put, err := putJSON(KindVisitRecord, string(id), h.ver, h.rec)
					if err != nil {
						return err
					}
					tx.Put(put)
				}
			}
			return nil
		})
		if (errors.Is(err, store.ErrVersionMismatch) || errors.Is(err, hubstate.ErrStale)) && attempt < 3 {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("visits: expire no-shows: %w", err)
		}
		for _, id := range done {
			s.log.Info("visits: no-show expired", "visit", id)
		}
		return len(done), nil
	}
}
