package site

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/brutella/can"

	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// openCAN starts the CAN side: a stream-bridge hub (a virtual bus) on
// CANListen that controllers connect to, and the site's gateway on it.
func (s *Site) openCAN() error {
	ln, err := net.Listen("tcp", s.cfg.CANListen)
	if err != nil {
		return fmt.Errorf("%w: can %s: %v", ErrListen, s.cfg.CANListen, err)
	}
	s.hub = canbus.NewHub(ln, s.log.With("component", "can-hub"))
	go func() { _ = s.hub.Serve() }() // ends when Close closes the hub
	bus, err := canbus.Open(s.ctx, canbus.Config{Transport: canbus.TransportTCP, Address: ln.Addr().String()})
	if err != nil {
		return fmt.Errorf("%w: can gateway: %v", ErrListen, err)
	}
	s.bus = bus
	bus.Subscribe(s.canFrame)
	s.gw = canbus.NewGateway(bus, canHandler{s}, canbus.GatewayConfig{Node: canbus.NodeConfig{
		Logger:  s.log.With("component", "can-gateway"),
		OnError: s.canError,
	}})
	if err := s.gw.Open(s.ctx); err != nil {
		return fmt.Errorf("%w: can gateway: %v", ErrListen, err)
	}
	s.mu.Lock()
	s.noteLocked("site", "--", "conn", "CAN stream-bridge hub listening on "+ln.Addr().String()+" (16-byte frames; the site's gateway is address 00)")
	s.mu.Unlock()
	return nil
}

// canDevice returns the controller at address a, or the summary row of an
// address the file does not name (reported once); s.mu is held.
func (s *Site) canDevice(a canbus.Addr) (*devState, bool) {
	if d := s.byCAN[a]; d != nil {
		return d, true
	}
	name := "can/" + a.String()
	o, seen := s.others[name]
	if !seen {
		o = s.other(name)
		o.sum.Transport = "can"
		s.violateLocked(o, "", RuleUnknownDevice, "a controller at CAN address %s sends, but the site file names no controller there", a)
	}
	return o, false
}

// canFrame checks each raw frame a controller puts on the bus: its
// identifier, and the priority of the first frame of each message. It runs
// on the bus's read loop.
func (s *Site) canFrame(cf can.Frame) {
	f, err := canbus.DecodeFrame(cf)
	if err != nil {
		s.mu.Lock()
		s.violateLocked(nil, "can", RuleCANFrame, "frame %08X refused: %v", cf.ID, err)
		s.mu.Unlock()
		return
	}
	if f.ID.Dst != canbus.GatewayAddr || f.Kind() == canbus.FlowControl || f.Kind() == canbus.ConsecutiveFrame {
		return
	}
	var want []uint8
	switch f.ID.Type {
	case canbus.TypeTap:
		want = []uint8{canbus.PrioTap}
	case canbus.TypeState:
		want = []uint8{canbus.PrioAck}
	case canbus.TypeEvent:
		want = []uint8{canbus.PrioAlarm, canbus.PrioCommand}
	default:
		return
	}
	for _, p := range want {
		if f.ID.Priority == p {
			return
		}
	}
	s.mu.Lock()
	d, _ := s.canDevice(f.ID.Src)
	s.violateLocked(d, "", RuleCANFrame, "%s sent with priority %d; want %v (docs/protocol-can.md §2.1)", f.ID.Type, f.ID.Priority, want)
	s.mu.Unlock()
}

// canError reports a message from a controller that did not reassemble or
// decode. It runs on the bus's read loop.
func (s *Site) canError(from canbus.Addr, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, _ := s.canDevice(from)
	d.sum.In++
	s.violateLocked(d, "", RuleMalformed, "CAN message refused: %v", err)
}

// canHandler is the site's canbus.Handler: the same site logic as MQTT.
type canHandler struct{ s *Site }

// HandleTap decides a tap from a CAN controller; a decision the site file
// holds back past ctx's end (the device's decision timeout) is not sent.
func (h canHandler) HandleTap(ctx context.Context, from canbus.Addr, t mqttproto.Tap) mqttproto.Decision {
	s := h.s
	s.mu.Lock()
	d, ok := s.canDevice(from)
	if !ok {
		s.mu.Unlock()
		return mqttproto.Decision{}
	}
	s.received(d, t)
	b := &batch{}
	dec, delay := s.tap(d, t, b)
	s.mu.Unlock()
	s.send(b)
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			s.mu.Lock()
			s.noteLocked(d.name, "--", "decision", "decision on "+t.RequestID+" held back past the controller's decision timeout: not sent")
			s.mu.Unlock()
			return mqttproto.Decision{}
		}
	}
	s.mu.Lock()
	d.sum.Out++
	d.lastSent = time.Now()
	_, sum := s.summary(dec)
	s.noteLocked(d.name, "->", "decision", sum)
	s.mu.Unlock()
	return dec
}

// HandleEvent records an event of a CAN controller; the site acknowledges
// it with an ack command.
func (h canHandler) HandleEvent(_ context.Context, from canbus.Addr, e mqttproto.DoorEvent) error {
	return h.handle(from, e)
}

// HandleState takes the state of a CAN controller.
func (h canHandler) HandleState(_ context.Context, from canbus.Addr, st mqttproto.State) error {
	return h.handle(from, st)
}

func (h canHandler) handle(from canbus.Addr, m mqttproto.Message) error {
	s := h.s
	b := &batch{}
	s.mu.Lock()
	d, ok := s.canDevice(from)
	if !ok {
		s.mu.Unlock()
		return nil
	}
	s.received(d, m)
	s.handle(d, m, b)
	s.mu.Unlock()
	s.send(b)
	return nil
}
