package mqttgw_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// dialExternal connects a device to Mosquitto (anonymous: the broker, not
// the gateway, authenticates devices in this mode), subscribed to its own
// topics again after every reconnect.
func dialExternal(t *testing.T, m *mosquitto, d mqttproto.Device) *client {
	t.Helper()
	c, err := dial(t, d, clientOpts{addr: m.addr(), subscribe: true, reconnect: true})
	if err != nil {
		t.Fatalf("connect %s to mosquitto: %v", d, err)
	}
	return c
}

// decisionWithin returns the client's next decision for rid, or false if
// none came within wait. Other decisions (late answers to earlier tries)
// are skipped.
func (c *client) decisionWithin(rid string, wait time.Duration) (mqttproto.Decision, []byte, bool) {
	c.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-c.msgs:
			d, err := mqttproto.DecodeDecision(m.payload)
			if err == nil && d.RequestID == rid {
				return d, m.payload, true
			}
		case <-timer.C:
			return mqttproto.Decision{}, nil, false
		}
	}
}

func TestExternalBroker(t *testing.T) {
	m := startMosquitto(t)
	s := newTestSite(t)
	g, reg := startGateway(t, s, s.siteID, m.external("edge-1"))
	if g.Addr() != "" {
		t.Errorf("Addr = %q with an external broker, want none", g.Addr())
	}
	reader := dialExternal(t, m, s.reader.proto())
	door := dialExternal(t, m, s.door.proto())
	// The controller's retained state is how the gateway learns it drives
	// the main door.
	door.state(true)
	waitFor(t, "door controller seen online", func() bool {
		for _, d := range g.Devices() {
			if d.ID == s.door.dev.ID && d.Online {
				return true
			}
		}
		return false
	})

	t.Run("Granted", func(t *testing.T) {
		reader.tap("x:1", s.main, cardAlice)
		d, _ := reader.decision("x:1")
		if !d.Grant || d.Node != "edge-1" {
			t.Fatalf("decision = %+v, want a grant by edge-1", d)
		}
		if cmd := door.cmd(); cmd.Type != mqttproto.DoorUnlock || cmd.RequestID != "x:1" {
			t.Errorf("door command = %+v, want unlock for x:1", cmd)
		}
		eventFor(t, s, "x:1")
	})

	t.Run("Denied", func(t *testing.T) {
		reader.tap("x:2", s.main, cardSchedule)
		if d, _ := reader.decision("x:2"); d.Grant || d.Reason != access.ReasonOutsideSchedule {
			t.Fatalf("decision = %v %v, want outside_schedule", d.Grant, d.Reason)
		}
		eventFor(t, s, "x:2")
	})

	t.Run("Duplicate", func(t *testing.T) {
		reader.tap("x:3", s.main, cardAlice)
		_, first := reader.decision("x:3")
		door.cmd()
		reader.tap("x:3", s.main, cardAlice)
		if _, again := reader.decision("x:3"); !bytes.Equal(first, again) {
			t.Errorf("repeated tap got\n%s\nwant\n%s", again, first)
		}
		door.cmd()
		waitFor(t, "duplicate counted", func() bool { return taps(t, reg, "duplicate") == 1 })
		// Events are recorded in batches after a linger, so wait for the
		// first tap's; eventFor fails on a second.
		eventFor(t, s, "x:3")
	})

	t.Run("UnregisteredDevice", func(t *testing.T) {
		// The broker lets anyone in; the gateway refuses the tap.
		stranger := dialExternal(t, m, mqttproto.Device{Site: string(s.siteID), Kind: mqttproto.KindReader, ID: string(access.MustNewID())})
		stranger.tap("x:4", s.main, cardAlice)
		disabled := dialExternal(t, m, s.disabledReader.proto())
		disabled.tap("x:5", s.main, cardAlice)
		waitFor(t, "taps refused", func() bool { return taps(t, reg, "refused") == 2 })
		stranger.none()
		disabled.none()
		if n := countEvents(s, "x:4") + countEvents(s, "x:5"); n != 0 {
			t.Errorf("%d events for refused taps", n)
		}
	})

	t.Run("BrokerRestart", func(t *testing.T) {
		if raceEnabled {
			// paho.mqtt.golang v1.5.1 races with itself when a publish made
			// while it reconnects is resent from its store (it sets the DUP
			// bit while its writer reads the packet; upstream issue
			// eclipse-paho/paho.mqtt.golang#703, open). The race is in the
			// library; this subtest runs without the race detector.
			t.Skip("paho.mqtt.golang#703: data race inside paho when it resumes a session")
		}
		m.restart()
		// Mosquitto forgot every session (persistence is off): the
		// gateway must reconnect and subscribe again. The reader retries
		// its tap, with the same request ID, until it is answered, as a
		// device that got no decision does.
		waitFor(t, "reader reconnected", reader.c.IsConnectionOpen)
		end := time.Now().Add(deadline)
		for {
			reader.tap("x:6", s.main, cardAlice)
			if d, _, ok := reader.decisionWithin("x:6", 500*time.Millisecond); ok {
				if !d.Grant {
					t.Fatalf("decision after restart = %v, want a grant", d.Reason)
				}
				break
			}
			if time.Now().After(end) {
				t.Fatal("no decision after the broker restarted")
			}
		}
		// However many tries it took, one event.
		eventFor(t, s, "x:6")
	})
}

func TestExternalBrokerSharesTaps(t *testing.T) {
	m := startMosquitto(t)
	s := newTestSite(t)
	_, reg1 := startGateway(t, s, s.siteID, m.external("edge-1"))
	_, reg2 := startGateway(t, s, s.siteID, m.external("edge-2"))
	reader := dialExternal(t, m, s.reader.proto())
	const n = 20
	for i := range n {
		rid := fmt.Sprintf("share:%d", i)
		reader.tap(rid, s.main, cardAlice)
		reader.decision(rid)
	}
	waitFor(t, "every tap recorded", func() bool { return len(s.recorded()) == n })
	answered := taps(t, reg1, "granted") + taps(t, reg2, "granted")
	if answered != n {
		t.Errorf("the two nodes answered %v taps of %d, want each once", answered, n)
	}
	reader.none()
	t.Logf("edge-1 answered %v, edge-2 %v", taps(t, reg1, "granted"), taps(t, reg2, "granted"))
}
