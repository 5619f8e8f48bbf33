package site

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// canSendTimeout bounds sending one command over CAN.
const canSendTimeout = 5 * time.Second

// out is one message for a device.
type out struct {
	d     *devState
	msg   mqttproto.Message
	delay time.Duration
}

// batch collects what a handler sends; the sends happen after s.mu is
// released.
type batch struct{ outs []out }

// add queues msg for d; s.mu is held.
func (b *batch) add(d *devState, msg mqttproto.Message) {
	b.outs = append(b.outs, out{d: d, msg: msg})
	d.lastSent = time.Now()
}

// heartbeat queues a heartbeat for door controller d; s.mu is held.
func (b *batch) heartbeat(s *Site, d *devState) {
	b.add(d, mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: s.reqID("hb"), Time: time.Now()})
}

// pushCache queues door's current cache version for controller d and
// expects d to report it; s.mu is held.
func (b *batch) pushCache(s *Site, d *devState, door *doorState) {
	oc := mqttproto.OfflineCache{Door: door.ID, Version: door.version, HighSecurity: door.HighSecurity,
		MaxOffline: door.MaxOffline, Entries: door.entries}
	cmds, err := oc.Cmds(s.reqID("cache"))
	if err != nil {
		s.noteLocked("site", "--", "cmd", fmt.Sprintf("cannot build the offline cache of door %s: %v", door.Name, err))
		return
	}
	e := &expectation{rule: RuleCacheReport, door: door.ID, version: door.version, full: true, sentAt: s.since(),
		text: fmt.Sprintf("offline cache version %d of door %s", door.version, door.Name)}
	for _, c := range cmds {
		e.reqIDs = append(e.reqIDs, c.RequestID)
		b.add(d, c)
	}
	d.expect = append(d.expect, e)
}

// dispenserCmd queues a dispenser command and expects its answer; s.mu is
// held.
func (b *batch) dispenserCmd(s *Site, d *devState, t mqttproto.DispenserCmdType, card access.CardNumber) {
	c := mqttproto.DispenserCmd{Type: t, RequestID: s.reqID(string(t)), Card: card}
	d.sentReqs[c.RequestID] = card
	d.expect = append(d.expect, &expectation{rule: RuleNoAnswer, reqIDs: []string{c.RequestID}, card: card, sentAt: s.since(),
		text: fmt.Sprintf("%s command %s", t, c.RequestID)})
	b.add(d, c)
}

// ack queues the acknowledgement of d's events up to d.last; s.mu is held.
func (b *batch) ack(s *Site, d *devState, resend bool) {
	if d.last == 0 {
		return // an ack carries seq >= 1; there is nothing to acknowledge
	}
	id := s.reqID("ack")
	switch d.d.Kind {
	case mqttproto.KindDoor:
		b.add(d, mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: id, Seq: d.last, Resend: resend})
	case mqttproto.KindKiosk:
		b.add(d, mqttproto.KioskCmd{Type: mqttproto.KioskAck, RequestID: id, Seq: d.last, Resend: resend})
	case mqttproto.KindDispenser:
		b.add(d, mqttproto.DispenserCmd{Type: mqttproto.DispenserAck, RequestID: id, Seq: d.last, Resend: resend})
	}
}

// send sends the batch: at once, or after a delay in its own goroutine.
func (s *Site) send(b *batch) {
	for _, o := range b.outs {
		if o.delay <= 0 {
			s.sendOne(o)
			continue
		}
		s.pubMu.RLock()
		closed := s.pubClosed
		if !closed {
			s.delayed.Add(1)
		}
		s.pubMu.RUnlock()
		if closed {
			continue
		}
		go func(o out) {
			defer s.delayed.Done()
			t := time.NewTimer(o.delay)
			defer t.Stop()
			select {
			case <-t.C:
				s.sendOne(o)
			case <-s.ctx.Done():
			}
		}(o)
	}
}

// sendOne sends one message over the device's transport and notes it.
func (s *Site) sendOne(o out) {
	payload, err := o.msg.Marshal()
	if err == nil {
		if o.d.d.CAN != 0 {
			err = s.sendCAN(o.d, o.msg)
		} else {
			ch := mqttproto.ChannelCmd
			if _, ok := o.msg.(mqttproto.Decision); ok {
				ch = mqttproto.ChannelDecision
			}
			err = s.publish(o.d.dev.Topic(ch).String(), payload)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, sum := s.summary(o.msg)
	if err != nil {
		s.noteLocked(o.d.name, "->", ch, sum+" NOT SENT: "+err.Error())
		return
	}
	o.d.sum.Out++
	s.noteLocked(o.d.name, "->", ch, sum)
}

// sendCAN sends a door command to a CAN controller.
func (s *Site) sendCAN(d *devState, m mqttproto.Message) error {
	c, ok := m.(mqttproto.DoorCmd)
	if !ok || s.gw == nil {
		return fmt.Errorf("%T cannot be sent over CAN by the site", m)
	}
	ctx, cancel := context.WithTimeout(s.ctx, canSendTimeout)
	defer cancel()
	return s.gw.Send(ctx, d.d.CAN, c)
}

// received counts and notes a decoded message from d; s.mu is held.
func (s *Site) received(d *devState, m mqttproto.Message) {
	d.sum.In++
	ch, sum := s.summary(m)
	s.noteLocked(d.name, "<-", ch, sum)
}

// handle acts on a decoded message m from d (not a tap); s.mu is held.
func (s *Site) handle(d *devState, m mqttproto.Message, b *batch) {
	switch m := m.(type) {
	case mqttproto.State:
		s.state(d, m, b)
	case mqttproto.DoorEvent:
		s.event(d, m.Seq, m, b, func(b *batch) { s.doorEvent(d, m, b) })
	case mqttproto.KioskEvent:
		s.event(d, m.Seq, m, b, func(b *batch) { s.kioskEvent(d, m, b) })
	case mqttproto.DispenserEvent:
		s.event(d, m.Seq, m, b, func(b *batch) { s.dispenserEvent(d, m, b) })
	}
}

// tap decides tap t from d and returns the decision and how long to hold
// it back; a repeated request ID gets the first decision again. The
// decision also goes to the other MQTT controllers of the door (queued on
// b, with the same delay). s.mu is held.
func (s *Site) tap(d *devState, t mqttproto.Tap, b *batch) (mqttproto.Decision, time.Duration) {
	d.sum.Taps++
	canon := canonical(t)
	card := s.cards[t.Card]
	if prev, ok := d.taps[t.RequestID]; ok {
		if prev.canon != canon {
			s.violateLocked(d, "", RuleRequestReused, "request ID %s was already used for another tap (request IDs are unique per tap)", t.RequestID)
		} else {
			s.noteLocked(d.name, "--", "tap", "repeated tap "+t.RequestID+": the same decision again")
		}
		return prev.d, card.Delay
	}
	dec := mqttproto.Decision{RequestID: t.RequestID, Door: t.Door, Mode: access.Online, Node: s.node, Time: time.Now()}
	door := s.doors[t.Door]
	switch {
	case door == nil:
		dec.Reason = access.ReasonUnknownDoor
	case card.Number == 0:
		dec.Reason = access.ReasonUnknownCard
	default:
		dec.Reason = card.Reason
	}
	if door != nil {
		dec.CacheVersion = door.version
		if !slices.Contains(d.d.Doors, door.Name) {
			s.violateLocked(d, "", RuleDoorNotServed, "tap %s names door %s, which the site file does not give this device", t.RequestID, door.Name)
		}
	} else {
		s.noteLocked(d.name, "--", "tap", fmt.Sprintf("door %s is not a door of this site: deny unknown_door", t.Door))
	}
	if dec.Reason == access.ReasonGranted {
		dec.Grant, dec.Unlock = true, s.f.Unlock
	}
	d.taps[t.RequestID] = tapRecord{canon: canon, d: dec}
	if card.Delay > 0 {
		s.noteLocked(d.name, "--", "tap", fmt.Sprintf("holding the decision on %s back for %s (site file)", t.RequestID, card.Delay))
		if card.Delay >= mqttproto.DecisionTimeout && d.d.Kind == mqttproto.KindDoor {
			d.expect = append(d.expect, &expectation{rule: RuleOfflineDecision, reqIDs: []string{t.RequestID}, door: t.Door,
				card: t.Card, tapAt: time.Now(), sentAt: s.since(),
				text: fmt.Sprintf("an offline_decision for tap %s, whose decision came after the %s timeout", t.RequestID, mqttproto.DecisionTimeout)})
		}
	}
	if door != nil {
		for _, c := range door.ctrls {
			if c != d && c.d.CAN == 0 && c.online {
				b.outs = append(b.outs, out{d: c, msg: dec, delay: card.Delay})
				c.lastSent = time.Now()
			}
		}
	}
	return dec, card.Delay
}

// state takes d's state; s.mu is held.
func (s *Site) state(d *devState, st mqttproto.State, b *batch) {
	if !st.Online {
		d.online = false
		return
	}
	d.gotState = true
	d.lastHeard, d.refreshed = time.Now(), false
	if d.d.CAN == 0 {
		var missing []string
		subs, _ := d.dev.Subscriptions()
		for _, t := range subs {
			if _, ok := d.subs[t]; !ok {
				missing = append(missing, t)
			}
		}
		if len(missing) > 0 {
			s.violateLocked(d, "", RuleStateOrder, "online state published before subscribing to %s (subscribe first, then publish the state)", strings.Join(missing, ", "))
		}
	}
	switch {
	case st.LastSeq == 0:
		// Not reported.
	case st.LastSeq < d.stateSeq:
		s.violateLocked(d, "", RuleSeqReplay, "state last_seq %d is below the %d it reported before (the event counter never goes back)", st.LastSeq, d.stateSeq)
	case st.LastSeq < d.last && d.last > d.d.Acked:
		s.violateLocked(d, "", RuleSeqReplay, "state last_seq %d is below seq %d already received (the event counter never goes back)", st.LastSeq, d.last)
	}
	d.stateSeq = max(d.stateSeq, st.LastSeq)
	if st.Door != nil {
		for _, ds := range st.Door.Doors {
			door := s.doors[ds.Door]
			if door == nil || !slices.Contains(d.d.Doors, door.Name) {
				s.violateLocked(d, "", RuleDoorNotServed, "state reports door %s, which the site file does not give this controller", s.doorName(ds.Door))
				continue
			}
			d.versions[ds.Door], d.modes[ds.Door] = ds.CacheVersion, ds.Mode
			for _, e := range d.expect {
				switch {
				case e.done || e.door != ds.Door:
				case e.rule == RuleCacheReport && ds.CacheVersion == e.version:
					e.done = true
				case e.rule == RuleModeReport && ds.Mode == e.mode:
					e.done = true
				}
			}
		}
	}
	was := d.online
	d.online = true
	if was {
		return
	}
	d.sum.Connects += btoi(d.d.CAN != 0)
	if d.d.Kind != mqttproto.KindDoor {
		return
	}
	// A door controller came online: a heartbeat, then each door's cache
	// whose version it does not hold (docs/protocol-mqtt.md §12.2).
	b.heartbeat(s, d)
	for _, n := range d.d.Doors {
		door := s.doorByName[n]
		if d.versions[door.ID] != door.version {
			b.pushCache(s, d, door)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// event records event seq of d once, in order: act runs for each event
// recorded, then the site acknowledges; a gap is held and asked for again.
// s.mu is held.
func (s *Site) event(d *devState, seq uint64, m mqttproto.Message, b *batch, act func(*batch)) {
	canon := canonical(m)
	switch {
	case seq <= d.last:
		if prev, ok := d.recorded[seq]; ok && prev != canon {
			s.violateLocked(d, "", RuleSeqReplay, "seq %d replayed with different content (a replay repeats the event exactly)", seq)
		} else {
			s.noteLocked(d.name, "--", "event", fmt.Sprintf("seq %d again: already recorded, acknowledged again", seq))
		}
		b.ack(s, d, false)
	case seq == d.last+1:
		s.record(d, seq, canon, act, b)
		for {
			h, ok := d.held[d.last+1]
			if !ok {
				break
			}
			delete(d.held, d.last+1)
			s.record(d, d.last+1, h.canon, h.act, b)
		}
		if d.gapAsked && len(d.held) == 0 {
			d.gapAsked = false
			s.noteLocked(d.name, "--", "event", fmt.Sprintf("gap filled: recorded up to seq %d", d.last))
		}
		b.ack(s, d, false)
	default:
		if h, ok := d.held[seq]; ok && h.canon != canon {
			s.violateLocked(d, "", RuleSeqReplay, "seq %d sent twice with different content", seq)
		}
		d.held[seq] = heldEvent{canon: canon, act: act}
		if d.gapAsked {
			s.noteLocked(d.name, "--", "event", fmt.Sprintf("seq %d held: waiting for seq %d", seq, d.last+1))
			return
		}
		d.gapAsked = true
		s.violateLocked(d, "", RuleSeqGap, "seq %d arrived when seq %d was due (events are sent in seq order without gaps)", seq, d.last+1)
		if d.last == 0 {
			s.noteLocked(d.name, "--", "event", "cannot ask for a resend from seq 1 (an ack needs seq >= 1); if the device has older events, give it \"acked N\" in the site file")
			return
		}
		b.ack(s, d, true)
	}
}

// record records one event and acts on it; s.mu is held.
func (s *Site) record(d *devState, seq uint64, canon string, act func(*batch), b *batch) {
	d.recorded[seq] = canon
	d.last = seq
	d.sum.Events++
	act(b)
}

// resolve marks the expectations of d waiting for request id done and
// returns them; s.mu is held.
func (d *devState) resolve(id string) []*expectation {
	var out []*expectation
	for _, e := range d.expect {
		if !e.done && slices.Contains(e.reqIDs, id) {
			e.done = true
			out = append(out, e)
		}
	}
	return out
}

// doorEvent acts on a recorded door event; s.mu is held.
func (s *Site) doorEvent(d *devState, e mqttproto.DoorEvent, b *batch) {
	switch e.Type {
	case mqttproto.DoorCmdRejected:
		for _, x := range d.resolve(e.RequestID) {
			if x.rule == RuleCacheReport && x.full {
				s.violateLocked(d, "", RuleCacheRejected, "%s refused (%s); a controller always accepts a complete full cache", x.text, e.Error)
			}
		}
	case mqttproto.DoorOfflineDecision:
		if e.RequestID == "" {
			return
		}
		for _, x := range d.resolve(e.RequestID) {
			if x.rule != RuleOfflineDecision {
				continue
			}
			door := s.doors[x.door]
			if door == nil || d.versions[x.door] != door.version {
				s.noteLocked(d.name, "--", "event", fmt.Sprintf("offline decision on %s not checked: the controller did not report holding cache version %d", e.RequestID, s.versionOf(x.door)))
				continue
			}
			want, why := s.offlineRule(d, door, e.Card, e.Time)
			if e.Grant != want {
				s.violateLocked(d, "", RuleOfflineDecision, "offline decision on %s: grant=%v, but its cache says grant=%v (%s)", e.RequestID, e.Grant, want, why)
			}
		}
	}
}

func (s *Site) versionOf(id access.ID) uint64 {
	if d := s.doors[id]; d != nil {
		return d.version
	}
	return 0
}

// offlineRule returns what a controller deciding alone from door's cache
// should answer for card at time at (docs/protocol-mqtt.md §9.4, without
// fail-secure, which a short run does not reach).
func (s *Site) offlineRule(d *devState, door *doorState, card access.CardNumber, at time.Time) (bool, string) {
	if d.modes[door.ID] == mqttproto.DoorLocked {
		return false, "the door is locked"
	}
	for _, e := range door.entries {
		if e.Card != card {
			continue
		}
		if (e.From.IsZero() || !at.Before(e.From)) && at.Before(e.Until) {
			return true, "the card's entry covers the time"
		}
		return false, "the card's entry does not cover the time"
	}
	return false, "the card is not in the cache"
}

// kioskEvent acts on a recorded kiosk event; s.mu is held.
func (s *Site) kioskEvent(d *devState, e mqttproto.KioskEvent, b *batch) {
	switch e.Type {
	case mqttproto.KioskQRScanned, mqttproto.KioskIDScanned, mqttproto.KioskCheckIn, mqttproto.KioskCheckOut:
		d.sum.NotSimulated++
		s.noteLocked(d.name, "--", "event", fmt.Sprintf("%s %s: not simulated (the simulated site has no visitor system); answering try_again", e.Type, e.RequestID))
		b.add(d, mqttproto.KioskCmd{Type: mqttproto.KioskShowResult, RequestID: e.RequestID, OK: false, Code: "try_again",
			Message: "Not simulated: this test site has no visitor system."})
	}
}

// dispenserEvent acts on a recorded dispenser event; s.mu is held.
func (s *Site) dispenserEvent(d *devState, e mqttproto.DispenserEvent, b *batch) {
	if e.Type == mqttproto.DispenserCardInserted {
		// docs/protocol-mqtt.md §12.4: the site takes the card back.
		b.dispenserCmd(s, d, mqttproto.DispenserCapture, 0)
		return
	}
	if e.RequestID == "" {
		return
	}
	card, known := d.sentReqs[e.RequestID]
	if !known {
		s.violateLocked(d, "", RuleAnswer, "%s answers request %s, which the site never sent", e.Type, e.RequestID)
		return
	}
	d.resolve(e.RequestID)
	if e.Type == mqttproto.DispenserEncoded && e.Card != card {
		s.violateLocked(d, "", RuleAnswer, "encoded card %s, but %s asked for card %s", e.Card, e.RequestID, card)
	}
}

// finish adds the violations only the end of the run shows; s.mu is
// held.
func (s *Site) finish() {
	for _, d := range s.devs {
		for _, e := range d.expect {
			if e.done {
				continue
			}
			switch e.rule {
			case RuleCacheReport:
				s.violateLocked(d, "", e.rule, "%s sent at %.3fs, but no state ever reported holding it", e.text, e.sentAt.Seconds())
			case RuleModeReport:
				s.violateLocked(d, "", e.rule, "%s sent at %.3fs, but no state ever showed the mode and no cmd_rejected came", e.text, e.sentAt.Seconds())
			case RuleNoAnswer:
				s.violateLocked(d, "", e.rule, "%s sent at %.3fs was never answered (result, fault or cmd_rejected)", e.text, e.sentAt.Seconds())
			case RuleOfflineDecision:
				s.violateLocked(d, "", e.rule, "expected %s (tap at %.3fs), none came", e.text, e.sentAt.Seconds())
			}
		}
		if len(d.held) > 0 {
			var seqs []uint64
			for q := range d.held {
				seqs = append(seqs, q)
			}
			slices.Sort(seqs)
			s.violateLocked(d, "", RuleGapUnfilled, "events %v held at the end: seq %d never arrived", seqs, d.last+1)
		}
		if d.online && d.stateSeq > d.last {
			s.violateLocked(d, "", RuleGapUnfilled, "state reported last_seq %d but events only up to %d arrived", d.stateSeq, d.last)
		}
	}
}

// canonical returns a comparable form of a decoded message.
func canonical(m mqttproto.Message) string {
	b, err := m.Marshal()
	if err != nil {
		return fmt.Sprintf("%#v", m)
	}
	return string(b)
}

// summary returns the channel and a one-line summary of m; s.mu is held.
func (s *Site) summary(m mqttproto.Message) (string, string) {
	var w strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&w, " %s=%v", k, v) }
	switch m := m.(type) {
	case mqttproto.Tap:
		w.WriteString("tap")
		kv("req", m.RequestID)
		kv("card", m.Card)
		kv("door", s.doorName(m.Door))
		if !m.Wiegand.IsZero() {
			kv("wiegand_bits", m.Wiegand.Bits)
		}
		if m.PIN {
			w.WriteString(" pin")
		}
		return "tap", w.String()
	case mqttproto.Decision:
		if m.Grant {
			w.WriteString("grant")
		} else {
			w.WriteString("deny " + m.Reason.String())
		}
		kv("req", m.RequestID)
		kv("door", s.doorName(m.Door))
		if m.Unlock > 0 {
			kv("unlock", m.Unlock)
		}
		return "decision", w.String()
	case mqttproto.State:
		if !m.Online {
			return "state", "offline"
		}
		w.WriteString("online")
		kv("firmware", m.Firmware)
		if m.LastSeq > 0 {
			kv("last_seq", m.LastSeq)
		}
		if m.Door != nil {
			for _, d := range m.Door.Doors {
				fmt.Fprintf(&w, " [%s %s cache=%d open=%v]", s.doorName(d.Door), d.Mode, d.CacheVersion, d.Open)
			}
			if m.Door.Offline {
				w.WriteString(" cut-off")
			}
		}
		if m.Dispenser != nil {
			kv("stack", m.Dispenser.Stack)
		}
		return "state", w.String()
	case mqttproto.DoorEvent:
		w.WriteString(string(m.Type))
		kv("seq", m.Seq)
		if m.Door != "" {
			kv("door", s.doorName(m.Door))
		}
		if m.Type == mqttproto.DoorOfflineDecision {
			kv("card", m.Card)
			kv("grant", m.Grant)
			kv("reason", m.Reason)
		}
		if m.RequestID != "" {
			kv("req", m.RequestID)
		}
		if m.Error != "" {
			kv("error", fmt.Sprintf("%q", m.Error))
		}
		return "event", w.String()
	case mqttproto.DoorCmd:
		w.WriteString(string(m.Type))
		kv("req", m.RequestID)
		switch m.Type {
		case mqttproto.DoorUnlock:
			kv("door", s.doorName(m.Door))
			kv("for", m.Unlock)
		case mqttproto.DoorSetMode:
			kv("door", s.doorName(m.Door))
			kv("mode", m.Mode)
		case mqttproto.DoorOfflineCache:
			kv("door", s.doorName(m.Door))
			kv("version", m.Version)
			fmt.Fprintf(&w, " part=%d/%d entries=%d", m.Part, m.Parts, len(m.Entries))
		case mqttproto.DoorAck:
			kv("seq", m.Seq)
			if m.Resend {
				w.WriteString(" resend")
			}
		}
		return "cmd", w.String()
	case mqttproto.KioskEvent:
		w.WriteString(string(m.Type))
		kv("seq", m.Seq)
		kv("req", m.RequestID)
		if m.Error != "" {
			kv("error", fmt.Sprintf("%q", m.Error))
		}
		return "event", w.String()
	case mqttproto.KioskCmd:
		w.WriteString(string(m.Type))
		kv("req", m.RequestID)
		if m.Type == mqttproto.KioskAck {
			kv("seq", m.Seq)
			if m.Resend {
				w.WriteString(" resend")
			}
		} else if m.Type == mqttproto.KioskShowResult {
			kv("ok", m.OK)
			kv("code", m.Code)
		}
		return "cmd", w.String()
	case mqttproto.DispenserEvent:
		w.WriteString(string(m.Type))
		kv("seq", m.Seq)
		if m.RequestID != "" {
			kv("req", m.RequestID)
		}
		if m.Card != 0 {
			kv("card", m.Card)
		}
		if m.Error != "" {
			kv("error", fmt.Sprintf("%q", m.Error))
		}
		return "event", w.String()
	case mqttproto.DispenserCmd:
		w.WriteString(string(m.Type))
		kv("req", m.RequestID)
		if m.Card != 0 {
			kv("card", m.Card)
		}
		if m.Type == mqttproto.DispenserAck {
			kv("seq", m.Seq)
			if m.Resend {
				w.WriteString(" resend")
			}
		}
		return "cmd", w.String()
	}
	return "?", fmt.Sprintf("%T", m)
}
