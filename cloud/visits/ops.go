package visits

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
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

var randRead = rand.Read

// Limits of an invitation.
const (
	// MaxGuests is the most guests one Invite takes.
	MaxGuests = 50
	// MaxKeyLen is the longest idempotency key.
	MaxKeyLen  = 128
	maxNameLen = 200
)

// GuestIn is a guest to invite.
type GuestIn struct {
	Given, Family, Email string
}

// InviteIn is an invitation: one visit per guest, sharing the rest.
type InviteIn struct {
	Site, Host, Type access.ID
	From, Until      time.Time
	Profiles         []access.ID
	Escort           bool
	Guests           []GuestIn
	// Key is the idempotency key ("" for none); Fingerprint identifies
	// the request it was first used with.
	Key, Fingerprint string
}

// Invited is what Invite made: the visits, in the order of the guests,
// and for each the host's pick-up link ("" for a held or denied visit).
type Invited struct {
	Visits     []View
	PickupURLs []string
}

// View is a visit as the API shows it.
type View struct {
	access.Visit
	Given, Family, Email string
	Profiles             []access.ID
	Held                 bool
	HoldReason           string
	Documents            []string
	NDAAt                time.Time
	CheckedIn            time.Time
	Emails               []EmailStatus
}

// EmailStatus is the state of a queued email.
type EmailStatus struct {
	MessageID, Kind string
	Sent, Failed    bool
	Attempts        int
	LastError       string
}

// prepared is one visit of an invitation, ready to write.
type prepared struct {
	visit  access.Visit
	rec    visitRecord
	mails  []outboxMail
	pickup string
}

// Invite invites the guests of in (see VisitService.Invite). It returns an
// Invalid error for malformed input, a Denied error listing every broken
// rule of the visitor type, ErrNotFound for an unknown visitor type, and
// ErrKeyReused for an idempotency key used before with another request.
func (s *Service) Invite(ctx context.Context, in InviteIn) (Invited, error) {
	now := s.now()
	if err := checkInvite(&in, now); err != nil {
		return Invited{}, err
	}
	var idemID string
	if in.Key != "" {
		sum := sha256.Sum256([]byte(in.Key))
		idemID = hex.EncodeToString(sum[:])
		if out, ok, err := s.replay(ctx, idemID, in.Fingerprint); ok || err != nil {
			return out, err
		}
	}
	vt := access.VisitorType{Name: "untyped"}
	if in.Type != "" {
		t, err := s.visitorType(ctx, in.Type)
		if err != nil {
			return Invited{}, err
		}
		vt = t.domain()
	}
	if err := access.CheckInvite(access.Invite{Type: vt, From: in.From, Until: in.Until, Escort: in.Escort, Profiles: in.Profiles}); err != nil {
		return Invited{}, err
	}
	var (
		bad []string
		mc  mailContext
	)
	s.state.View(func(r *replication.Replica) {
		for _, p := range in.Profiles {
			if g, ok := r.Group(p); ok && g.SiteID != in.Site {
				bad = append(bad, fmt.Sprintf("profile %s is a group of site %s", p, g.SiteID))
			}
		}
		if h, ok := r.Person(in.Host); ok && h.Deleted {
			bad = append(bad, "host "+string(in.Host)+" is deleted")
		}
		mc = s.mailContext(r, in.Site, in.Host)
	})
	if len(bad) > 0 {
		return Invited{}, access.Errorf(access.Invalid, "invite: %s", strings.Join(bad, "; "))
	}
	watch, err := s.watchlist(ctx)
	if err != nil {
		return Invited{}, err
	}
	preps := make([]prepared, len(in.Guests))
	for i, g := range in.Guests {
		p := &preps[i]
		vid, err1 := s.newID()
		pid, err2 := s.newID()
		if err := errors.Join(err1, err2); err != nil {
			return Invited{}, err
		}
		p.visit = access.Visit{ID: vid, SiteID: in.Site, HostID: in.Host, VisitorID: pid, TypeID: in.Type,
			From: in.From, Until: in.Until, Escort: in.Escort, State: access.VisitInvited}
		p.rec = visitRecord{Given: g.Given, Family: g.Family, Email: g.Email, Created: now}
		if hits := access.CheckWatchlist(watch, access.WatchSubject{GivenNames: g.Given, Surname: g.Family}); len(hits) > 0 {
			p.rec.HoldReason = holdReason(hits)
			if hits[0].Entry.Action == access.WatchDeny {
				p.visit.State = access.VisitDenied
			} else {
				p.visit.State, p.rec.Held = access.VisitRequested, true
			}
			s.log.Warn("visits: watchlist hit at invitation", "visit", vid, "action", hits[0].Entry.Action.String(), "entry", hits[0].Entry.ID)
			continue
		}
		if p.mails, p.pickup, err = s.invitationMails(p.visit, &p.rec, mc); err != nil {
			return Invited{}, err
		}
	}
	out := Invited{}
	for _, p := range preps {
		out.PickupURLs = append(out.PickupURLs, p.pickup)
	}
	_, err = s.state.Write(ctx, func(tx *hubstate.Tx) error {
		for i := range preps {
			if err := s.writeNewVisit(tx, &preps[i], in.Profiles); err != nil {
				return err
			}
		}
		if idemID == "" {
			return nil
		}
		rec := idemRecord{Fingerprint: in.Fingerprint, Pickup: out.PickupURLs}
		for _, p := range preps {
			rec.Visits = append(rec.Visits, p.visit.ID)
		}
		put, err := putJSON(KindIdempotency, idemID, 0, rec)
		tx.Put(put)
		return err
	})
	if idemID != "" && errors.Is(err, store.ErrVersionMismatch) {
		// The same key, concurrently: the other call won.
		if out, ok, err := s.replay(ctx, idemID, in.Fingerprint); ok || err != nil {
			return out, err
		}
	}
	if err != nil {
		return Invited{}, err
	}
	s.out.Kick()
	for _, p := range preps {
		v, err := s.View(ctx, p.visit.ID)
		if err != nil {
			return Invited{}, err
		}
		out.Visits = append(out.Visits, v)
	}
	for _, p := range preps {
		s.log.Info("visits: invited", "visit", p.visit.ID, "site", p.visit.SiteID, "state", p.visit.State.String())
	}
	return out, nil
}

// checkInvite normalises and checks the shape of in.
func checkInvite(in *InviteIn, now time.Time) error {
	for _, f := range []struct {
		what string
		id   access.ID
	}{{"site", in.Site}, {"host", in.Host}} {
		if _, err := access.ParseID(string(f.id)); err != nil {
			return access.Errorf(access.Invalid, "invite: %s id: %v", f.what, err)
		}
	}
	if in.Type != "" {
		if _, err := access.ParseID(string(in.Type)); err != nil {
			return access.Errorf(access.Invalid, "invite: visitor type id: %v", err)
		}
	}
	if len(in.Key) > MaxKeyLen {
		return access.Errorf(access.Invalid, "invite: idempotency key longer than %d bytes", MaxKeyLen)
	}
	if len(in.Guests) == 0 || len(in.Guests) > MaxGuests {
		return access.Errorf(access.Invalid, "invite: %d guests, want 1 to %d", len(in.Guests), MaxGuests)
	}
	if !in.Until.After(now) {
		return access.Errorf(access.Invalid, "invite: the visit window ended at %s", in.Until.UTC().Format(time.RFC3339))
	}
	for i := range in.Guests {
		g := &in.Guests[i]
		g.Given, g.Family = strings.TrimSpace(g.Given), strings.TrimSpace(g.Family)
		if err := checkName(g.Given, g.Family); err != nil {
			return access.Errorf(access.Invalid, "invite: guest %d: %v", i+1, err)
		}
		a, err := mail.ParseAddress(g.Email)
		if err != nil {
			return access.Errorf(access.Invalid, "invite: guest %d: email %q: %v", i+1, g.Email, err)
		}
		g.Email = a.Address
	}
	return nil
}

// checkName checks a guest's names.
func checkName(given, family string) error {
	switch {
	case family == "":
		return errors.New("the family name is required")
	case len(given) > maxNameLen || len(family) > maxNameLen:
		return fmt.Errorf("a name longer than %d bytes", maxNameLen)
	case strings.ContainsAny(given+family, ",\r\n\t<>"):
		return errors.New("names may not contain commas, angle brackets or control characters")
	}
	return nil
}

// holdReason says why the watchlist held or denied a visit.
func holdReason(hits []access.WatchHit) string {
	var b []string
	for _, h := range hits {
		certain := "likely"
		if h.Certain {
			certain = "certain"
		}
		b = append(b, fmt.Sprintf("watchlist entry %s (%s, %s): %s", h.Entry.ID, h.Entry.Action, certain, h.Entry.Reason))
	}
	return strings.Join(b, "; ")
}

// replay returns what an idempotency key made, if it was used.
func (s *Service) replay(ctx context.Context, idemID, fingerprint string) (Invited, bool, error) {
	var rec idemRecord
	ver, err := getJSON(ctx, s.st, KindIdempotency, idemID, &rec)
	if err != nil || ver == 0 {
		return Invited{}, false, err
	}
	if rec.Fingerprint != fingerprint {
		return Invited{}, true, access.Errorf(access.Conflict, "invite: %w", ErrKeyReused)
	}
	out := Invited{PickupURLs: rec.Pickup}
	for _, id := range rec.Visits {
		v, err := s.View(ctx, id)
		if err != nil {
			return Invited{}, true, err
		}
		out.Visits = append(out.Visits, v)
	}
	return out, true, nil
}

// mailContext is what an invitation says of its site and host.
type mailContext struct {
	hostName, hostEmail, siteName string
	loc                           *time.Location
}

// mailContext reads the site's name and time zone and the host's name and
// address from r (the replica, read-locked or under a write).
func (s *Service) mailContext(r *replication.Replica, site, host access.ID) mailContext {
	mc := mailContext{hostName: "Your host", siteName: "the site", loc: s.loc}
	if h, ok := r.Person(host); ok {
		mc.hostName, mc.hostEmail = cmp.Or(h.Name, mc.hostName), h.Email
	}
	if st, ok := r.Site(site); ok {
		mc.siteName = cmp.Or(st.Name, mc.siteName)
		if loc, err := time.LoadLocation(st.TimeZone); st.TimeZone != "" && err == nil {
			mc.loc = loc
		}
	}
	return mc
}

// invitationMails renders the guest's invitation and the host's pick-up
// link email (when the host has an address), records them in rec and
// returns them with the pick-up URL.
func (s *Service) invitationMails(v access.Visit, rec *visitRecord, mc mailContext) ([]outboxMail, string, error) {
	hostName, hostEmail, siteName := mc.hostName, mc.hostEmail, mc.siteName
	now := s.now()
	claims := access.TokenClaims{Visit: v.ID, Site: v.SiteID, Guest: v.VisitorID, NotBefore: now, Expires: v.Until}
	token, err := s.keys.Sign(claims)
	if err != nil {
		return nil, "", err
	}
	claims.Guest = v.HostID
	hostToken, err := s.keys.Sign(claims)
	if err != nil {
		return nil, "", err
	}
	pickup := s.cfg.PublicURL + "/guest/" + hostToken + "/pickup"
	guestName := strings.TrimSpace(rec.Given + " " + rec.Family)
	msg, err := gmail.RenderInvitation(gmail.Invitation{To: rec.Email, GuestName: guestName, HostName: hostName,
		SiteName: siteName, From: v.From, Until: v.Until, Location: mc.loc, Token: token,
		CheckInURL: s.cfg.PublicURL + "/guest/" + token, Escorted: v.Escort})
	if err != nil {
		return nil, "", err
	}
	var mails []outboxMail
	add := func(kind string, m gmail.Message) error {
		id, err := s.newID()
		if err != nil {
			return err
		}
		m.ID = string(id) + "@" + s.domain
		mails = append(mails, outboxMail{ID: string(id), Visit: v.ID, Kind: kind, Message: m, Created: now})
		rec.Emails = append(rec.Emails, string(id))
		return nil
	}
	if err := add(mailInvitation, msg); err != nil {
		return nil, "", err
	}
	if hostEmail != "" {
		when := v.From.In(mc.loc).Format("Monday 2 January 2006, 15:04 MST")
		text := fmt.Sprintf("You invited %s to %s on %s.\n\nWhen your guest has checked in and you have met them, confirm the pick-up here:\n%s\n",
			guestName, siteName, when, pickup)
		if v.Escort {
			text += "\nYour guest's card opens doors only once you have confirmed the pick-up.\n"
		}
		if err := add(mailPickup, gmail.Message{To: hostEmail, Subject: "Your guest " + guestName + " at " + siteName, Text: text}); err != nil {
			return nil, "", err
		}
	}
	return mails, pickup, nil
}

// writeNewVisit lists the deltas and puts of a new visit in tx.
func (s *Service) writeNewVisit(tx *hubstate.Tx, p *prepared, profiles []access.ID) error {
	v := p.visit
	person := string(v.VisitorID)
	tx.Change(replication.KindPerson, person, replication.SetOp("kind", access.Visitor.String()),
		replication.SetOp("name", access.VisitorName(p.rec.Given, p.rec.Family)), replication.SetOp("email", p.rec.Email),
		tx.Replica().EnableOp(replication.KindPerson, person))
	ops := []replication.Op{replication.SetOp("site", string(v.SiteID)), replication.SetOp("host", string(v.HostID)),
		replication.SetOp("visitor", person), replication.SetOp("from", replication.TimeValue(v.From)),
		replication.SetOp("until", replication.TimeValue(v.Until)), replication.SetOp("escort", replication.BoolValue(v.Escort))}
	if v.TypeID != "" {
		ops = append(ops, replication.SetOp("type", string(v.TypeID)))
	}
	tx.Change(replication.KindVisit, string(v.ID), append(ops, replication.AdvanceOp(v.State))...)
	if v.State != access.VisitDenied {
		if err := s.grant(tx, v, &p.rec, profiles); err != nil {
			return err
		}
	}
	put, err := putJSON(KindVisitRecord, string(v.ID), 0, p.rec)
	if err != nil {
		return err
	}
	tx.Put(put)
	return s.queue(tx, p.mails)
}

// grant lists in tx a grant of each profile to visit v, for its window.
func (s *Service) grant(tx *hubstate.Tx, v access.Visit, rec *visitRecord, profiles []access.ID) error {
	for _, g := range profiles {
		id, err := s.newID()
		if err != nil {
			return err
		}
		gr := access.Grant{ID: id, HolderID: v.ID, GroupID: g, ValidFrom: v.From, ValidUntil: v.Until}
		tx.Change(replication.KindGrant, string(id), tx.Replica().GrantOp(gr))
		rec.Grants = append(rec.Grants, id)
	}
	return nil
}

// queue puts mails in tx's commit.
func (s *Service) queue(tx *hubstate.Tx, mails []outboxMail) error {
	for _, m := range mails {
		put, err := putJSON(KindOutbox, m.ID, 0, m)
		if err != nil {
			return err
		}
		tx.Put(put)
	}
	return nil
}

// update runs fn on visit id and its record under one hub write; fn says
// whether it changed the record. A lost race on the record is retried.
func (s *Service) update(ctx context.Context, id access.ID, fn func(tx *hubstate.Tx, v access.Visit, rec *visitRecord) (bool, error)) (View, error) {
	if _, err := access.ParseID(string(id)); err != nil {
		return View{}, access.Errorf(access.Invalid, "visit id: %v", err)
	}
	for attempt := 0; ; attempt++ {
		var rec visitRecord
		ver, err := getJSON(ctx, s.st, KindVisitRecord, string(id), &rec)
		if err != nil {
			return View{}, err
		}
		_, err = s.state.Write(ctx, func(tx *hubstate.Tx) error {
			v, ok := tx.Replica().Visit(id)
			if !ok || v.SiteID == "" {
				return access.Errorf(access.NotFound, "visit %s: %w", id, ErrNotFound)
			}
			changed, err := fn(tx, v, &rec)
			if err != nil || !changed {
				return err
			}
			put, err := putJSON(KindVisitRecord, string(id), ver, rec)
			tx.Put(put)
			return err
		})
		if errors.Is(err, store.ErrVersionMismatch) && attempt < 3 {
			continue
		}
		if err != nil {
			return View{}, err
		}
		s.out.Kick()
		return s.View(ctx, id)
	}
}

// stateErr is the error of a change the visit's state does not allow.
func stateErr(v access.Visit, what string) error {
	return access.Errorf(access.Conflict, "visit %s is %s: cannot %s: %w", v.ID, v.State, what, ErrState)
}

// Cancel cancels a visit whose guest has not checked in.
func (s *Service) Cancel(ctx context.Context, id access.ID) (View, error) {
	return s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, rec *visitRecord) (bool, error) {
		switch {
		case v.State == access.VisitCancelled:
			return false, nil
		case v.State >= access.VisitCheckedIn:
			return false, stateErr(v, "cancel (check the guest out instead)")
		}
		tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitCancelled))
		rec.Held = false
		return true, nil
	})
}

// ConfirmPickup records that a checked-in guest was picked up.
func (s *Service) ConfirmPickup(ctx context.Context, id access.ID) (View, error) {
	return s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, _ *visitRecord) (bool, error) {
		switch v.State {
		case access.VisitPickedUp:
			return false, nil
		case access.VisitCheckedIn:
			tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitPickedUp))
			return false, nil
		}
		return false, stateErr(v, "confirm a pick-up (the guest must have checked in)")
	})
}

// CheckOut checks a guest out. Any visit not yet final may be checked out:
// it is a revocation, and the hub may not have heard of the check-in yet.
func (s *Service) CheckOut(ctx context.Context, id access.ID) (View, error) {
	return s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, rec *visitRecord) (bool, error) {
		switch {
		case v.State == access.VisitCheckedOut:
			return false, nil
		case v.State.Final():
			return false, stateErr(v, "check out")
		}
		tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitCheckedOut))
		rec.Held = false
		return true, nil
	})
}

// Release lets a visit held by the watchlist go ahead: it is invited and
// its emails queued.
func (s *Service) Release(ctx context.Context, id access.ID) (View, error) {
	return s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, rec *visitRecord) (bool, error) {
		switch {
		case !rec.Held || v.State.Final():
			return false, stateErr(v, "release (it is not held)")
		case v.State > access.VisitRequested:
			// Held after its invitation (a name changed on the guest
			// page): the invitation is out already.
			rec.Held = false
			return true, nil
		}
		mails, _, err := s.invitationMails(v, rec, s.mailContext(tx.Replica(), v.SiteID, v.HostID))
		if err != nil {
			return false, err
		}
		tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitInvited))
		rec.Held = false
		return true, s.queue(tx, mails)
	})
}

// Deny refuses a visit not yet final.
func (s *Service) Deny(ctx context.Context, id access.ID, reason string) (View, error) {
	return s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, rec *visitRecord) (bool, error) {
		switch {
		case v.State == access.VisitDenied:
			return false, nil
		case v.State.Final():
			return false, stateErr(v, "deny")
		}
		tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitDenied))
		rec.Held = false
		if reason = strings.TrimSpace(reason); reason != "" {
			rec.HoldReason = strings.TrimSpace(rec.HoldReason + "; denied: " + reason)
		}
		s.log.Info("visits: denied", "visit", id)
		return true, nil
	})
}

// AddProfiles grants a visit more profiles, checked against its visitor
// type's rules.
func (s *Service) AddProfiles(ctx context.Context, id access.ID, profiles []access.ID) (View, error) {
	if len(profiles) == 0 {
		return View{}, access.Errorf(access.Invalid, "add profiles: none given")
	}
	vt := access.VisitorType{Name: "untyped"}
	var typeID access.ID
	s.state.View(func(r *replication.Replica) {
		if v, ok := r.Visit(id); ok {
			typeID = v.TypeID
		}
	})
	if typeID != "" {
		t, err := s.visitorType(ctx, typeID)
		if err != nil {
			return View{}, err
		}
		vt = t.domain()
	}
	return s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, rec *visitRecord) (bool, error) {
		if v.State.Final() {
			return false, stateErr(v, "add profiles")
		}
		live := liveProfiles(tx.Replica().Snapshot().Grants)[id]
		var fresh []access.ID
		for _, p := range profiles {
			if !slices.Contains(live, p) && !slices.Contains(fresh, p) {
				fresh = append(fresh, p)
			}
		}
		if err := access.CheckInvite(access.Invite{Type: vt, From: v.From, Until: v.Until, Escort: v.Escort, Profiles: fresh}); err != nil {
			return false, err
		}
		for _, p := range fresh {
			if g, ok := tx.Replica().Group(p); ok && g.SiteID != v.SiteID {
				return false, access.Errorf(access.Invalid, "profile %s is a group of site %s", p, g.SiteID)
			}
		}
		if len(fresh) == 0 {
			return false, nil
		}
		return true, s.grant(tx, v, rec, fresh)
	})
}

// RemoveProfiles revokes profiles of a visit: every grant of them, made
// here or at the site, stops counting.
func (s *Service) RemoveProfiles(ctx context.Context, id access.ID, profiles []access.ID) (View, error) {
	if len(profiles) == 0 {
		return View{}, access.Errorf(access.Invalid, "remove profiles: none given")
	}
	for _, p := range profiles {
		if _, err := access.ParseID(string(p)); err != nil {
			return View{}, access.Errorf(access.Invalid, "remove profiles: %v", err)
		}
	}
	return s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, _ *visitRecord) (bool, error) {
		var ops []replication.Op
		for _, p := range profiles {
			ops = append(ops, replication.RevokeOp(p))
		}
		tx.Change(replication.KindVisit, string(id), ops...)
		return false, nil
	})
}

// liveProfiles returns, per holder, the groups of its live grants, sorted.
func liveProfiles(grants []access.Grant) map[access.ID][]access.ID {
	out := map[access.ID][]access.ID{}
	for _, g := range grants {
		if !g.Removed && !slices.Contains(out[g.HolderID], g.GroupID) {
			out[g.HolderID] = append(out[g.HolderID], g.GroupID)
		}
	}
	for _, gs := range out {
		slices.Sort(gs)
	}
	return out
}

// View returns visit id, or ErrNotFound.
func (s *Service) View(ctx context.Context, id access.ID) (View, error) {
	var (
		v      access.Visit
		ok     bool
		person access.Person
	)
	s.state.View(func(r *replication.Replica) {
		if v, ok = r.Visit(id); ok {
			person, _ = r.Person(v.VisitorID)
		}
	})
	if !ok || v.SiteID == "" {
		return View{}, access.Errorf(access.NotFound, "visit %s: %w", id, ErrNotFound)
	}
	profiles := liveProfiles(s.state.Grants())[id]
	return s.viewOf(ctx, v, person, profiles)
}

// viewOf completes a view of v from its record, outbox and check-in time.
func (s *Service) viewOf(ctx context.Context, v access.Visit, person access.Person, profiles []access.ID) (View, error) {
	var rec visitRecord
	if _, err := getJSON(ctx, s.st, KindVisitRecord, string(v.ID), &rec); err != nil {
		return View{}, err
	}
	out := View{Visit: v, Profiles: profiles, Email: person.Email, Held: rec.Held, HoldReason: rec.HoldReason, NDAAt: rec.NDAAt}
	out.Given, out.Family = access.SplitVisitorName(person.Name)
	if out.Email == "" {
		out.Email = rec.Email
	}
	for _, d := range rec.Documents {
		if !slices.Contains(out.Documents, d.Name) {
			out.Documents = append(out.Documents, d.Name)
		}
	}
	for _, mid := range rec.Emails {
		var m outboxMail
		if ver, err := getJSON(ctx, s.st, KindOutbox, mid, &m); err != nil || ver == 0 {
			continue
		}
		out.Emails = append(out.Emails, EmailStatus{MessageID: m.Message.ID, Kind: m.Kind, Sent: !m.SentAt.IsZero(),
			Failed: m.Failed, Attempts: m.Attempts, LastError: m.LastError})
	}
	out.CheckedIn = s.timeIn.get(s.state, v.ID)
	return out, nil
}

// Filter selects visits; zero fields do not filter.
type Filter struct {
	Site, Host access.ID
	States     []access.VisitState
	Day        time.Time // visits whose window overlaps [Day, Day+24h)
	OnSite     bool      // checked in or picked up
}

// List returns the visits matching f, by start time.
func (s *Service) List(ctx context.Context, f Filter) ([]View, error) {
	snap := s.state.Snapshot()
	people := map[access.ID]access.Person{}
	for _, p := range snap.People {
		people[p.ID] = p
	}
	profiles := liveProfiles(snap.Grants)
	var out []View
	for _, v := range snap.Visits {
		switch {
		case v.SiteID == "",
			f.Site != "" && v.SiteID != f.Site,
			f.Host != "" && v.HostID != f.Host,
			len(f.States) > 0 && !slices.Contains(f.States, v.State),
			!f.Day.IsZero() && (!v.Until.After(f.Day) || !v.From.Before(f.Day.Add(24*time.Hour))),
			f.OnSite && v.State != access.VisitCheckedIn && v.State != access.VisitPickedUp:
			continue
		}
		view, err := s.viewOf(ctx, v, people[v.VisitorID], profiles[v.ID])
		if err != nil {
			return nil, err
		}
		out = append(out, view)
	}
	slices.SortFunc(out, func(a, b View) int { return cmp.Or(a.From.Compare(b.From), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// timeIndex knows when each visit checked in, from the check-in deltas the
// hub has received (the earliest stamp of an advance to checked_in or, for a
// site that reports only the pick-up, picked_up); it reads only the deltas
// new since its last call.
type timeIndex struct {
	mu   sync.Mutex
	seen replication.Vector
	at   map[access.ID]time.Time
}

func (t *timeIndex) get(st *hubstate.State, id access.ID) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen, t.at = replication.Vector{}, map[access.ID]time.Time{}
	}
	onSite := []string{access.VisitCheckedIn.String(), access.VisitPickedUp.String()}
	for src, head := range st.Vector() {
		after := t.seen[src]
		for after < head {
			ds, _ := st.Deltas(src, after, 4096)
			if len(ds) == 0 {
				break
			}
			for _, d := range ds {
				if d.Kind != replication.KindVisit {
					continue
				}
				for _, op := range d.Ops {
					if op.Type == replication.OpAdvance && slices.Contains(onSite, op.Value) {
						vid, at := access.ID(d.ID), d.Stamp.Time()
						if cur, ok := t.at[vid]; !ok || at.Before(cur) {
							t.at[vid] = at
						}
					}
				}
			}
			after = ds[len(ds)-1].Seq
		}
		t.seen[src] = after
	}
	return t.at[id]
}
