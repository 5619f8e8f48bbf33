package mqttgw

import (
	"context"
	"errors"
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// VisitorDevices takes what the site's kiosks and card dispensers send
// (edge/visitdesk.Desk implements it). Its methods are called from the
// embedded broker's delivery goroutines, concurrently for different
// devices, and must not block for long.
type VisitorDevices interface {
	// KioskEvent takes a kiosk's event (decoded and validated; the device
	// is registered at this site, enabled and a kiosk).
	KioskEvent(dev access.Device, e mqttproto.KioskEvent)
	// DispenserEvent takes a dispenser's event, likewise.
	DispenserEvent(dev access.Device, e mqttproto.DispenserEvent)
	// DeviceState takes a kiosk's or dispenser's state (online, or its
	// offline will).
	DeviceState(dev access.Device, st mqttproto.State)
}

// ErrNoVisitorHook is returned by HookVisitorDevices in external broker
// mode, which does not deliver kiosk and dispenser messages to the site's
// visitor desk yet.
var ErrNoVisitorHook = errors.New("mqttgw: kiosks and dispensers are served with the embedded broker only")

// Inline subscription IDs of the visitor hook (the gateway's own use 1 to 3).
const (
	visitorSubEvents = 100
	visitorSubStates = 101
)

// HookVisitorDevices subscribes h to the events and states of the site's
// kiosks and dispensers; messages of other kinds, of unknown or disabled
// devices and malformed payloads are not passed on (the gateway logs and
// counts them itself). Retained states are handed to h before it returns.
// Call it after Open. It returns ErrNoVisitorHook with an external broker,
// ErrClosed before Open or after Close.
func (g *Gateway) HookVisitorDevices(h VisitorDevices) error {
	g.mu.Lock()
	state := g.state
	g.mu.Unlock()
	if state != stateOpen {
		return ErrClosed
	}
	b, ok := g.tr.(*embedded)
	if !ok {
		return ErrNoVisitorHook
	}
	deliver := func(topic string, payload []byte) {
		if !g.gate.enter() {
			return
		}
		defer g.gate.leave()
		t, err := mqttproto.ParseTopic(topic)
		if err != nil || t.Site != g.cfg.SiteID || (t.Kind != mqttproto.KindKiosk && t.Kind != mqttproto.KindDispenser) {
			return
		}
		dev, reason := g.checkDevice(t)
		if reason != "" {
			return
		}
		if t.Channel == mqttproto.ChannelState {
			st, err := mqttproto.DecodeState(t.Kind, payload)
			if err == nil {
				h.DeviceState(dev, st)
			}
			return
		}
		msg, err := mqttproto.Decode(t, payload)
		if err != nil {
			return
		}
		switch e := msg.(type) {
		case mqttproto.KioskEvent:
			h.KioskEvent(dev, e)
		case mqttproto.DispenserEvent:
			h.DispenserEvent(dev, e)
		}
	}
	for _, s := range []struct {
		c  mqttproto.Channel
		id int
	}{{mqttproto.ChannelEvent, visitorSubEvents}, {mqttproto.ChannelState, visitorSubStates}} {
		f, err := mqttproto.SiteFilter(g.cfg.SiteID, s.c)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadConfig, err)
		}
		err = b.srv.Subscribe(f, s.id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			deliver(pk.TopicName, pk.Payload)
		})
		if err != nil {
			return fmt.Errorf("%w: subscribe %s: %v", ErrBroker, f, err)
		}
	}
	return nil
}

// PublishCmd publishes a command payload to device d's cmd topic with QoS
// 1 (not retained). It returns an error when the transport refuses it.
func (g *Gateway) PublishCmd(_ context.Context, d mqttproto.Device, payload []byte) error {
	if g.tr == nil {
		return ErrClosed
	}
	wait, err := g.tr.publish(d.Topic(mqttproto.ChannelCmd).String(), payload)
	if err != nil || wait == nil {
		return err
	}
	return wait()
}
