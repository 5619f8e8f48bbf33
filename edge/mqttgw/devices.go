package mqttgw

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Results of state and event messages, the "result" label of messages_total.
const (
	msgOK        = "ok"
	msgRefused   = "refused"
	msgMalformed = "malformed"
)

// handleState records a device's state message: its retained state, or
// the offline state its last will published.
func (g *Gateway) handleState(t mqttproto.Topic, payload []byte, received time.Time) {
	log := g.log.With("device", t.Device, "kind", string(t.Kind))
	dev, reason := g.checkDevice(t)
	if reason != "" {
		g.m.messages.WithLabelValues(string(t.Channel), msgRefused).Inc()
		log.Warn("state refused", "reason", reason)
		return
	}
	st, err := mqttproto.DecodeState(t.Kind, payload)
	if err != nil {
		g.m.messages.WithLabelValues(string(t.Channel), msgMalformed).Inc()
		log.Warn("state refused: malformed payload", "err", redactErr(err))
		return
	}
	g.m.messages.WithLabelValues(string(t.Channel), msgOK).Inc()
	g.seen(dev, received)
	if changed := g.status.setState(dev.ID, dev.Kind, st); changed {
		log.Info("device state", "online", st.Online, "firmware", st.Firmware)
	}
	if dev.Kind == access.DeviceDoor && g.cfg.Doors != nil {
		g.cfg.Doors.State(dev, st, g.doorSender(t.Dev()))
	}
}

// handleEvent decodes a device event, counts it by kind and type and logs
// it (alarms at warn level). A door controller's event goes on to the
// DoorManager, which records it in the replicated log once per (device,
// seq) and acknowledges it (docs/protocol-mqtt.md §6.3); without one it is
// only logged. Kiosk and dispenser events are only logged (yet).
func (g *Gateway) handleEvent(t mqttproto.Topic, payload []byte, received time.Time) {
	log := g.log.With("device", t.Device, "kind", string(t.Kind))
	dev, reason := g.checkDevice(t)
	if reason != "" {
		g.m.messages.WithLabelValues(string(t.Channel), msgRefused).Inc()
		log.Warn("event refused", "reason", reason)
		return
	}
	msg, err := mqttproto.Decode(t, payload)
	if err != nil {
		g.m.messages.WithLabelValues(string(t.Channel), msgMalformed).Inc()
		log.Warn("event refused: malformed payload", "err", redactErr(err))
		return
	}
	g.m.messages.WithLabelValues(string(t.Channel), msgOK).Inc()
	g.seen(dev, received)

	var (
		typ   string
		seq   uint64
		alarm bool
		attrs []any
	)
	switch e := msg.(type) {
	case mqttproto.DoorEvent:
		typ, seq = string(e.Type), e.Seq
		switch e.Type {
		case mqttproto.DoorForcedOpen, mqttproto.DoorHeldOpen, mqttproto.DoorTamper, mqttproto.DoorFailSecure, mqttproto.DoorCmdRejected:
			alarm = true
		}
		if e.Door != "" {
			attrs = append(attrs, "door", string(e.Door))
		}
		if e.Type == mqttproto.DoorOfflineDecision {
			attrs = append(attrs, "card", e.Card.Redacted(), "grant", e.Grant, "reason", e.Reason.String(), "request_id", e.RequestID)
		}
		if e.Error != "" {
			attrs = append(attrs, "error", e.Error)
		}
		if g.cfg.Doors != nil {
			g.cfg.Doors.Event(dev, e, g.doorSender(t.Dev()))
		}
	case mqttproto.KioskEvent:
		typ, seq = string(e.Type), e.Seq
		alarm = e.Type == mqttproto.KioskCmdRejected
	case mqttproto.DispenserEvent:
		typ, seq = string(e.Type), e.Seq
		switch e.Type {
		case mqttproto.DispenserJam, mqttproto.DispenserEmpty, mqttproto.DispenserEncodeFailed, mqttproto.DispenserCmdRejected:
			alarm = true
		}
	}
	g.m.deviceEvents.WithLabelValues(string(t.Kind), typ).Inc()
	attrs = append(attrs, "type", typ, "seq", seq)
	if alarm {
		log.Warn("device event", attrs...)
	} else {
		log.Debug("device event", attrs...)
	}
}

// statusTable holds the DeviceStatus of every device heard from. It is
// safe for concurrent use.
type statusTable struct {
	mu sync.Mutex
	m  map[access.ID]*DeviceStatus
}

func (s *statusTable) init() { s.m = make(map[access.ID]*DeviceStatus) }

// entry returns id's status, made if missing; s.mu is held.
func (s *statusTable) entry(id access.ID, kind access.DeviceKind) *DeviceStatus {
	st, ok := s.m[id]
	if !ok {
		st = &DeviceStatus{ID: id}
		s.m[id] = st
	}
	st.Kind = kind
	return st
}

// touch records that the device was heard from at at.
func (s *statusTable) touch(id access.ID, kind access.DeviceKind, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.entry(id, kind); at.After(st.LastSeen) {
		st.LastSeen = at
	}
}

// setState records a state message and reports whether it changed what is
// known (online or firmware).
func (s *statusTable) setState(id access.ID, kind access.DeviceKind, m mqttproto.State) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.entry(id, kind)
	firmware := st.Firmware
	if m.Online {
		firmware = m.Firmware
	}
	changed := st.Online != m.Online || st.Firmware != firmware
	st.Online, st.Firmware = m.Online, firmware
	return changed
}

// list returns a copy of every status whose device keep accepts, sorted by
// ID, and forgets the others.
func (s *statusTable) list(keep func(access.ID) bool) []DeviceStatus {
	s.mu.Lock()
	ids := make([]access.ID, 0, len(s.m))
	for id := range s.m {
		ids = append(ids, id)
	}
	s.mu.Unlock()

	// keep calls into the site; do it without holding s.mu.
	gone := make(map[access.ID]bool)
	for _, id := range ids {
		if !keep(id) {
			gone[id] = true
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DeviceStatus, 0, len(s.m))
	for id, st := range s.m {
		if gone[id] {
			delete(s.m, id)
			continue
		}
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b DeviceStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
