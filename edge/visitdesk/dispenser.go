package visitdesk

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// dispDevice returns the MQTT identity of dispenser id.
func (d *Desk) dispDevice(id access.ID) mqttproto.Device {
	return mqttproto.Device{Site: string(d.cfg.SiteID), Kind: mqttproto.KindDispenser, ID: string(id)}
}

// dispense sends cmd to dispenser dd and waits for the event answering it
// (its result or a fault), at most cfg.DispenserTimeout. A repeated
// request ID is answered by the dispenser with its first result, without
// acting again (docs/protocol-mqtt.md §11.1).
func (d *Desk) dispense(ctx context.Context, dd mqttproto.Device, cmd mqttproto.DispenserCmd) (mqttproto.DispenserEvent, error) {
	ch := make(chan mqttproto.DispenserEvent, 1)
	d.mu.Lock()
	d.waiters[cmd.RequestID] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiters, cmd.RequestID)
		d.mu.Unlock()
	}()
	b, err := cmd.Marshal()
	if err != nil {
		return mqttproto.DispenserEvent{}, access.Errorf(access.Invalid, "visit desk: dispenser command: %v", err)
	}
	if err := d.site.Publish(ctx, dd, b); err != nil {
		return mqttproto.DispenserEvent{}, access.Errorf(access.Unavailable, "visit desk: dispenser %s: %v", dd.ID, err)
	}
	t := time.NewTimer(d.cfg.DispenserTimeout)
	defer t.Stop()
	select {
	case ev := <-ch:
		return ev, nil
	case <-t.C:
		return mqttproto.DispenserEvent{}, access.Errorf(access.Unavailable, "visit desk: dispenser %s did not answer %s within %v: %w",
			dd.ID, cmd.Type, d.cfg.DispenserTimeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return mqttproto.DispenserEvent{}, ctx.Err()
	}
}

// capture takes the card in the encoder or the return slot into the
// capture bin (best effort; a failure is logged).
func (d *Desk) capture(ctx context.Context, dd mqttproto.Device, rid string) {
	ev, err := d.dispense(ctx, dd, mqttproto.DispenserCmd{Type: mqttproto.DispenserCapture, RequestID: rid})
	if err != nil || ev.Type != mqttproto.DispenserCaptured {
		d.log.Warn("dispenser did not capture the card", "device", dd.ID, "event", string(ev.Type), "err", err)
	}
}

// DispenserEvent takes a dispenser's event (mqttgw.VisitorDevices): it
// acks it, hands an answer to the request waiting for it, and checks out
// the visit of a card inserted into the return slot.
func (d *Desk) DispenserEvent(dev access.Device, e mqttproto.DispenserEvent) {
	d.seen(dev)
	dd := d.dispDevice(dev.ID)
	d.goRun(func() {
		b, err := mqttproto.DispenserCmd{Type: mqttproto.DispenserAck, RequestID: d.reqID("a"), Seq: e.Seq}.Marshal()
		if err == nil {
			ctx, cancel := context.WithTimeout(d.ctx, 5*time.Second)
			defer cancel()
			_ = d.site.Publish(ctx, dd, b)
		}
	})
	switch e.Type {
	case mqttproto.DispenserCardInserted:
		d.goRun(func() { d.returned(dd, e) })
		return
	case mqttproto.DispenserJam, mqttproto.DispenserEmpty, mqttproto.DispenserEncodeFailed, mqttproto.DispenserCmdRejected:
		d.log.Warn("dispenser fault", "device", string(dev.ID), "type", string(e.Type), "request_id", e.RequestID, "error", e.Error)
	}
	if e.RequestID == "" {
		return
	}
	d.mu.Lock()
	ch := d.waiters[e.RequestID]
	d.mu.Unlock()
	if ch != nil {
		select {
		case ch <- e:
		default:
		}
	}
}

// returned handles a card inserted into the return slot: a visitor card
// is checked out and captured; any other card is handed back.
func (d *Desk) returned(dd mqttproto.Device, e mqttproto.DispenserEvent) {
	ctx, cancel := context.WithTimeout(d.ctx, requestTimeout)
	defer cancel()
	var visitor bool
	if e.Card != 0 {
		d.site.View(func(st *access.State) {
			c, ok := st.CardByNumber(e.Card)
			visitor = ok && !c.VisitID.IsZero()
		})
	}
	rid := "ret." + dd.ID + "." + e.Time.UTC().Format("20060102T150405.000") + "." + e.Card.String()
	if !visitor {
		d.log.Info("card in the return slot is not a visitor card: handing it back", "device", dd.ID, "card", e.Card.Redacted())
		if _, err := d.dispense(ctx, dd, mqttproto.DispenserCmd{Type: mqttproto.DispenserDispense, RequestID: "back." + rid}); err != nil {
			d.log.Warn("card not handed back", "device", dd.ID, "err", err)
		}
		return
	}
	visit, err := d.CheckOut(ctx, requestKey("return", access.ID(dd.ID), rid), "", e.Card)
	if err != nil {
		d.log.Warn("returned card: checkout failed; capturing the card anyway", "device", dd.ID, "visit", string(visit),
			"card", e.Card.Redacted(), "err", err)
	}
	d.capture(ctx, dd, "cap."+rid)
}
