package visitdesk

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Codes of show_result (docs/protocol-mqtt.md §10.2).
const (
	CodeInvitationValid   = "invitation_valid"
	CodeInvitationInvalid = "invitation_invalid"
	CodeInvitationExpired = "invitation_expired"
	CodeDocumentRequired  = "document_required"
	CodeDocumentOK        = "document_ok"
	CodeDocumentMismatch  = "document_mismatch"
	CodeCheckedIn         = "checked_in"
	CodeCheckedOut        = "checked_out"
	CodeVisitNotFound     = "visit_not_found"
	CodeDenied            = "denied"
	CodeTryAgain          = "try_again"
)

// requestTimeout bounds the handling of one kiosk request.
const requestTimeout = 60 * time.Second

// seeReception is the neutral refusal: a watchlist hit, a held visit.
const seeReception = "Please see reception."

// answer is a kiosk outcome.
type answer struct {
	ok      bool
	code    string
	message string
	visit   access.ID
}

func refuse(code, message string) answer { return answer{code: code, message: message} }

// KioskEvent takes a kiosk's event (mqttgw.VisitorDevices): it acks it and
// handles a request in its own goroutine. A request ID seen before is
// answered again with its first answer (or not at all while it is still in
// progress).
func (d *Desk) KioskEvent(dev access.Device, e mqttproto.KioskEvent) {
	d.seen(dev)
	kd := mqttproto.Device{Site: string(d.cfg.SiteID), Kind: mqttproto.KindKiosk, ID: string(dev.ID)}
	d.goRun(func() {
		d.sendKiosk(kd, mqttproto.KioskCmd{Type: mqttproto.KioskAck, RequestID: d.reqID("a"), Seq: e.Seq})
	})
	switch e.Type {
	case mqttproto.KioskQRScanned, mqttproto.KioskIDScanned, mqttproto.KioskCheckIn, mqttproto.KioskCheckOut:
	case mqttproto.KioskCmdRejected:
		d.log.Warn("kiosk rejected a command", "device", string(dev.ID), "request_id", e.RequestID, "error", e.Error)
		return
	default:
		return
	}
	key := string(dev.ID) + "/" + e.RequestID
	d.mu.Lock()
	if prev, ok := d.answers[key]; ok {
		d.repeats++
		d.mu.Unlock()
		d.goRun(func() { d.sendKiosk(kd, prev) })
		return
	}
	if d.busy[key] {
		d.mu.Unlock()
		return
	}
	d.busy[key] = true
	d.mu.Unlock()
	d.goRun(func() {
		ctx, cancel := context.WithTimeout(d.ctx, requestTimeout)
		defer cancel()
		a := d.handle(ctx, dev, e)
		cmd := mqttproto.KioskCmd{Type: mqttproto.KioskShowResult, RequestID: e.RequestID, OK: a.ok, Code: a.code,
			Message: a.message, Visit: a.visit}
		d.mu.Lock()
		d.answered++
		delete(d.busy, key)
		if ctx.Err() == nil || a.code != CodeTryAgain {
			d.answers[key] = cmd
			d.order = append(d.order, key)
			if len(d.order) > rememberedAnswers {
				delete(d.answers, d.order[0])
				d.order = d.order[1:]
			}
		}
		d.mu.Unlock()
		d.log.Info("kiosk answered", "device", string(dev.ID), "request_id", e.RequestID, "type", string(e.Type),
			"ok", a.ok, "code", a.code, "visit", string(a.visit))
		d.sendKiosk(kd, cmd)
	})
}

// sendKiosk publishes cmd to kiosk k.
func (d *Desk) sendKiosk(k mqttproto.Device, cmd mqttproto.KioskCmd) {
	b, err := cmd.Marshal()
	if err != nil {
		d.log.Error("kiosk command not encodable", "type", string(cmd.Type), "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
	defer cancel()
	if err := d.site.Publish(ctx, k, b); err != nil && d.ctx.Err() == nil {
		d.log.Warn("kiosk command not sent", "device", k.ID, "type", string(cmd.Type), "err", err)
	}
}

// handle answers one kiosk request.
func (d *Desk) handle(ctx context.Context, dev access.Device, e mqttproto.KioskEvent) answer {
	switch e.Type {
	case mqttproto.KioskQRScanned:
		return d.scanQR(dev.ID, e.Token)
	case mqttproto.KioskIDScanned:
		return d.scanID(ctx, dev.ID, e)
	case mqttproto.KioskCheckIn:
		return d.checkIn(ctx, dev.ID, e.RequestID, e.Visit)
	case mqttproto.KioskCheckOut:
		return d.kioskCheckOut(ctx, dev.ID, e)
	}
	return refuse(CodeTryAgain, "Unknown request.")
}

// scanQR verifies an invitation token and the visit it names.
func (d *Desk) scanQR(kiosk access.ID, token string) answer {
	now := d.cfg.Now()
	d.mu.Lock()
	keys := d.hub.keys
	d.mu.Unlock()
	if keys == nil {
		return refuse(CodeTryAgain, "Invitations cannot be checked right now. "+seeReception)
	}
	c, err := keys.Verify(token, now)
	switch {
	case errors.Is(err, access.ErrTokenExpired):
		return refuse(CodeInvitationExpired, "This invitation has expired.")
	case errors.Is(err, access.ErrTokenNotYetValid):
		return refuse(CodeInvitationInvalid, "This invitation is not valid yet.")
	case errors.Is(err, access.ErrTokenKeyRetired):
		return refuse(CodeInvitationInvalid, "This invitation is no longer valid. Please ask your host for a new one.")
	case err != nil:
		return refuse(CodeInvitationInvalid, "This code is not a valid invitation.")
	case c.Site != d.cfg.SiteID:
		return refuse(CodeInvitationInvalid, "This invitation is for another site.")
	}
	v, guest, a := d.checkVisit(c.Visit, now)
	if a != nil {
		return *a
	}
	if v.VisitorID != c.Guest {
		return refuse(CodeInvitationInvalid, "This code is not a guest's invitation.")
	}
	if docs := d.requiredDocs(v); len(docs) > 0 && v.State != access.VisitPreRegistered {
		// The hub moves a visit to pre_registered only once every required
		// document was uploaded (visitors.md §6).
		return answer{code: CodeDocumentRequired, visit: v.ID,
			message: "Your visit needs documents you have not provided yet (" + strings.Join(docs, ", ") + "). Please complete your online check-in or see reception."}
	}
	d.mu.Lock()
	d.sessions[kiosk] = &session{visit: v.ID, guest: v.VisitorID, tokenAt: now}
	d.mu.Unlock()
	given, family := access.SplitVisitorName(guest.Name)
	name := given
	if name == "" {
		name = family
	}
	return answer{ok: true, code: CodeInvitationValid, message: "Welcome, " + name + ". Please scan your ID document.", visit: v.ID}
}

// requiredDocs returns the documents v's visitor type requires, as the
// site last got the types from the hub (none when unknown).
func (d *Desk) requiredDocs(v access.Visit) []string {
	if v.TypeID.IsZero() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hub.required[v.TypeID]
}

// checkVisit looks visit up and checks that it may check in now; a non-nil
// answer is the refusal.
func (d *Desk) checkVisit(id access.ID, now time.Time) (access.Visit, access.Person, *answer) {
	var (
		v      access.Visit
		guest  access.Person
		ok, gk bool
	)
	d.site.View(func(st *access.State) {
		if v, ok = st.Visit(id); ok {
			guest, gk = st.Person(v.VisitorID)
		}
	})
	fail := func(code, msg string) (access.Visit, access.Person, *answer) {
		a := refuse(code, msg)
		a.visit = id
		return v, guest, &a
	}
	switch {
	case !ok || v.SiteID != d.cfg.SiteID:
		return fail(CodeVisitNotFound, "This visit is not known here. "+seeReception)
	case !gk || guest.Deleted:
		return fail(CodeVisitNotFound, "Your invitation is not known here yet. "+seeReception)
	case v.State == access.VisitRequested:
		return fail(CodeDenied, seeReception)
	case v.State == access.VisitCheckedIn || v.State == access.VisitPickedUp:
		return fail(CodeDenied, "You are already checked in.")
	case v.State.Final():
		return fail(CodeInvitationExpired, "This visit is over.")
	case !now.Before(v.Until):
		return fail(CodeInvitationExpired, "This visit is over.")
	case now.Before(v.From.Add(-d.cfg.EarlyArrival)):
		return fail(CodeDenied, "Your visit starts at "+v.From.Local().Format("15:04")+". Please come back then.")
	}
	return v, guest, nil
}

// session returns kiosk's session for visit (any visit when zero), if
// still fresh.
func (d *Desk) session(kiosk, visit access.ID, now time.Time) *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[kiosk]
	if s == nil || now.Sub(s.tokenAt) > sessionTTL || (visit != "" && s.visit != visit) {
		return nil
	}
	c := *s
	return &c
}

// scanID checks an identity document for the kiosk's visit.
func (d *Desk) scanID(ctx context.Context, kiosk access.ID, e mqttproto.KioskEvent) answer {
	now := d.cfg.Now()
	s := d.session(kiosk, e.Visit, now)
	if s == nil {
		return refuse(CodeVisitNotFound, "Please scan your invitation first.")
	}
	v, guest, a := d.checkVisit(s.visit, now)
	if a != nil {
		return *a
	}
	m, err := access.ParseMRZ(strings.Join(e.MRZ, "\n"), now)
	if err != nil {
		return answer{code: CodeDocumentMismatch, message: "This document could not be read. Please try again or see reception.", visit: v.ID}
	}
	d.mu.Lock()
	list, have := d.hub.watch, d.hub.watchSeen
	d.mu.Unlock()
	if !have {
		d.log.Warn("no watchlist held: the document is not checked against it", "visit", string(v.ID))
	}
	if hits := access.CheckWatchlist(list, access.SubjectOf(m)); len(hits) > 0 {
		h := hits[0]
		d.log.Warn("watchlist hit at check-in: refused", "visit", string(v.ID), "device", string(kiosk),
			"entry", string(h.Entry.ID), "action", h.Entry.Action.String(), "certain", h.Certain)
		d.recordWatchHit(ctx, kiosk, v.ID, h, now)
		d.mu.Lock()
		delete(d.sessions, kiosk)
		d.mu.Unlock()
		return answer{code: CodeDenied, message: seeReception, visit: v.ID}
	}
	given, family := access.SplitVisitorName(guest.Name)
	if err := m.Verify(now, given, family); err != nil {
		msg := "This document does not match your invitation. " + seeReception
		if errors.Is(err, access.ErrDocumentExpired) {
			msg = "This document has expired. Please use a valid document or see reception."
		}
		return answer{code: CodeDocumentMismatch, message: msg, visit: v.ID}
	}
	d.mu.Lock()
	if cur := d.sessions[kiosk]; cur != nil && cur.visit == v.ID {
		cur.docAt = now
	}
	d.mu.Unlock()
	return answer{ok: true, code: CodeDocumentOK, message: "Thank you. Please confirm your check-in.", visit: v.ID}
}

// checkIn checks the kiosk's visit in and hands out a card.
func (d *Desk) checkIn(ctx context.Context, kiosk access.ID, req string, visit access.ID) answer {
	now := d.cfg.Now()
	rid := requestKey("checkin", kiosk, req)
	var v access.Visit
	var ok bool
	d.site.View(func(st *access.State) { v, ok = st.Visit(visit) })
	if ok && (v.State == access.VisitCheckedIn || v.State == access.VisitPickedUp) {
		// A repeat reaching this node after another handled it, or after a
		// restart: the log answers with the recorded outcome.
		return d.repeatCheckIn(ctx, kiosk, req, rid, visit)
	}
	s := d.session(kiosk, visit, now)
	switch {
	case s == nil:
		return refuse(CodeVisitNotFound, "Please scan your invitation first.")
	case s.docAt.IsZero():
		return answer{code: CodeDocumentRequired, message: "Please scan your ID document first.", visit: visit}
	}
	if _, _, a := d.checkVisit(visit, now); a != nil {
		return *a
	}
	disp, ok := d.dispenserFor(kiosk)
	if !ok {
		return answer{code: CodeTryAgain, message: "No card can be issued right now. " + seeReception, visit: visit}
	}
	n, release, err := d.pickCard()
	if err != nil {
		d.log.Error("visitor card range exhausted", "visit", string(visit))
		return answer{code: CodeTryAgain, message: "No card can be issued right now. " + seeReception, visit: visit}
	}
	defer release()
	dd := d.dispDevice(disp)
	// 1. Encode: nothing is committed yet, so a fault changes nothing.
	ev, err := d.dispense(ctx, dd, mqttproto.DispenserCmd{Type: mqttproto.DispenserEncode, RequestID: "enc." + req, Card: n})
	if err != nil || ev.Type != mqttproto.DispenserEncoded || ev.Card != n {
		d.dispenserFault(kiosk, disp, visit, "encode", ev, err)
		if err == nil && ev.Type == mqttproto.DispenserEncoded {
			d.capture(ctx, dd, "cap."+req)
		} else if errors.Is(err, context.DeadlineExceeded) {
			d.capture(ctx, dd, "cap."+req)
		}
		return answer{code: CodeTryAgain, message: "Your card could not be prepared. " + seeReception, visit: visit}
	}
	// 2. Commit the check-in with the encoded number.
	_, err = d.propose(ctx, &raftv1.Command{RequestId: rid,
		Op: &raftv1.Command_CheckInVisit{CheckInVisit: &raftv1.CheckInVisit{VisitId: string(visit), CardNumber: uint64(n)}}})
	if err != nil {
		d.log.Warn("check-in refused", "visit", string(visit), "device", string(kiosk), "err", err)
		d.capture(ctx, dd, "cap."+req)
		if errCode(err) == access.Unavailable {
			return answer{code: CodeTryAgain, message: "Check-in is not possible right now. " + seeReception, visit: visit}
		}
		return answer{code: CodeDenied, message: "You cannot be checked in. " + seeReception, visit: visit}
	}
	d.mu.Lock()
	delete(d.sessions, kiosk)
	d.mu.Unlock()
	return d.handOut(ctx, kiosk, req, visit, dd, n)
}

// repeatCheckIn answers a check-in of a visit already checked in: with the
// recorded outcome of this very request (its card handed out, again
// idempotently at the dispenser), or a refusal for another request.
func (d *Desk) repeatCheckIn(ctx context.Context, kiosk access.ID, req, rid string, visit access.ID) answer {
	var card access.Card
	var found bool
	d.site.View(func(st *access.State) {
		for c := range st.Cards() {
			if c.VisitID == visit {
				card, found = c, true
			}
		}
	})
	if !found {
		return answer{code: CodeDenied, message: "You are already checked in.", visit: visit}
	}
	// Same request ID: the log returns the first result (success); another
	// request: the visit is checked in, refused.
	_, err := d.propose(ctx, &raftv1.Command{RequestId: rid,
		Op: &raftv1.Command_CheckInVisit{CheckInVisit: &raftv1.CheckInVisit{VisitId: string(visit), CardNumber: uint64(card.Number)}}})
	if err != nil {
		return answer{code: CodeDenied, message: "You are already checked in.", visit: visit}
	}
	disp, ok := d.dispenserFor(kiosk)
	if !ok {
		return answer{code: CodeTryAgain, message: "No card can be issued right now. " + seeReception, visit: visit}
	}
	return d.handOut(ctx, kiosk, req, visit, d.dispDevice(disp), card.Number)
}

// handOut dispenses the card of a committed check-in.
func (d *Desk) handOut(ctx context.Context, kiosk access.ID, req string, visit access.ID, dd mqttproto.Device, n access.CardNumber) answer {
	ev, err := d.dispense(ctx, dd, mqttproto.DispenserCmd{Type: mqttproto.DispenserDispense, RequestID: "disp." + req})
	if err != nil || ev.Type != mqttproto.DispenserDispensed {
		d.dispenserFault(kiosk, access.ID(dd.ID), visit, "dispense", ev, err)
		// Checked in, but the card did not reach the guest: suspend it.
		_, serr := d.propose(ctx, &raftv1.Command{RequestId: requestKey("suspend", kiosk, req),
			Op: &raftv1.Command_SetCardStatus{SetCardStatus: &raftv1.SetCardStatus{Number: uint64(n), Status: accessv1.CardStatus_CARD_STATUS_SUSPENDED}}})
		if serr != nil {
			d.log.Error("card not handed out and not suspended", "visit", string(visit), "card", n.Redacted(), "err", serr)
		}
		return answer{code: CodeTryAgain, message: "You are checked in, but your card could not be handed out. " + seeReception, visit: visit}
	}
	kd := mqttproto.Device{Site: string(d.cfg.SiteID), Kind: mqttproto.KindKiosk, ID: string(kiosk)}
	d.sendKiosk(kd, mqttproto.KioskCmd{Type: mqttproto.KioskDispensing, RequestID: req, Dispenser: dd.ID})
	host := ""
	d.site.View(func(st *access.State) {
		if v, ok := st.Visit(visit); ok {
			if p, ok := st.Person(v.HostID); ok {
				g, f := access.SplitVisitorName(p.Name)
				host = strings.TrimSpace(g + " " + f)
			}
		}
	})
	msg := "You are checked in. Please take your card."
	if host != "" {
		msg += " " + host + " has been told you are here."
	}
	d.log.Info("guest checked in", "visit", string(visit), "device", string(kiosk), "card", n.Redacted())
	return answer{ok: true, code: CodeCheckedIn, message: msg, visit: visit}
}

// dispenserFault logs a dispenser failure.
func (d *Desk) dispenserFault(kiosk, disp, visit access.ID, step string, ev mqttproto.DispenserEvent, err error) {
	what := string(ev.Type)
	if err != nil {
		what = err.Error()
	}
	d.log.Warn("dispenser fault at check-in", "step", step, "device", string(disp), "kiosk", string(kiosk),
		"visit", string(visit), "fault", what, "error", ev.Error)
}

// kioskCheckOut checks a guest out by visit or card.
func (d *Desk) kioskCheckOut(ctx context.Context, kiosk access.ID, e mqttproto.KioskEvent) answer {
	visit, err := d.CheckOut(ctx, requestKey("checkout", kiosk, e.RequestID), e.Visit, e.Card)
	switch errCode(err) {
	case "":
		return answer{ok: true, code: CodeCheckedOut, message: "You are checked out. Thank you for your visit.", visit: visit}
	case access.NotFound, access.Invalid:
		return answer{code: CodeVisitNotFound, message: "This visit or card is not known here. " + seeReception, visit: e.Visit}
	case access.Conflict:
		return answer{code: CodeDenied, message: "This visit is already over.", visit: visit}
	}
	return answer{code: CodeTryAgain, message: "Check-out is not possible right now. " + seeReception, visit: e.Visit}
}

// CheckOut ends a visit, by visit or by card, through Raft (CheckOutVisit
// with request ID rid, optional): the visit moves to checked_out and its
// cards are unbound. It returns the visit, or the command's domain error
// (NotFound, Invalid, Conflict for a visit already final) or Unavailable.
func (d *Desk) CheckOut(ctx context.Context, rid string, visit access.ID, card access.CardNumber) (access.ID, error) {
	if visit == "" && card != 0 {
		d.site.View(func(st *access.State) {
			if c, ok := st.CardByNumber(card); ok {
				visit = c.VisitID
			}
		})
	}
	if visit == "" {
		return "", access.Errorf(access.NotFound, "check out: card %s is not a visitor card known here", card.Redacted())
	}
	_, err := d.propose(ctx, &raftv1.Command{RequestId: rid,
		Op: &raftv1.Command_CheckOutVisit{CheckOutVisit: &raftv1.CheckOutVisit{VisitId: string(visit),
			State: accessv1.VisitState_VISIT_STATE_CHECKED_OUT}}})
	if err == nil {
		d.log.Info("guest checked out", "visit", string(visit))
	}
	return visit, err
}
