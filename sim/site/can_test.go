package site

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

const canSite = `
site hq
heartbeat 1m
door vault high-security max-offline 30m
device door c1 can 11 door vault
card 100 grant
card 200 deny no_group
cache vault 100 until +1h
`

// canController plays a door controller on the site's CAN hub with
// canbus.Controller over the stream bridge.
type canController struct {
	tb   testing.TB
	ctl  *canbus.Controller
	cmds chan mqttproto.DoorCmd
}

func mustCANController(tb testing.TB, s *Site, addr canbus.Addr) *canController {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	bus, err := canbus.Open(ctx, canbus.Config{Transport: canbus.TransportTCP, Address: s.CANAddr()})
	if err != nil {
		tb.Fatalf("open CAN bus: %v", err)
	}
	c := &canController{tb: tb, cmds: make(chan mqttproto.DoorCmd, 256)}
	c.ctl, err = canbus.NewController(bus, canbus.NodeConfig{Addr: addr}, func(cmd mqttproto.DoorCmd) {
		select {
		case c.cmds <- cmd:
		default:
			tb.Errorf("controller command queue full")
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.ctl.Close(); bus.Close() })
	return c
}

func (c *canController) send(m mqttproto.Message) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.ctl.Send(ctx, m); err != nil {
		c.tb.Fatalf("send %T: %v", m, err)
	}
}

func (c *canController) nextCmd(typ mqttproto.DoorCmdType) mqttproto.DoorCmd {
	c.tb.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case cmd := <-c.cmds:
			if cmd.Type == typ {
				return cmd
			}
		case <-timer.C:
			c.tb.Fatalf("no %s command arrived", typ)
			return mqttproto.DoorCmd{}
		}
	}
}

// TestCANController plays a well-behaved CAN door controller: it gets a
// heartbeat and its cache on coming online, decisions and acks, and the
// report is clean.
func TestCANController(t *testing.T) {
	s := MustSite(t, canSite, true)
	vault := DoorID("vault")
	c := mustCANController(t, s, 0x11)

	c.send(online(mqttproto.DoorState{Door: vault, Mode: mqttproto.DoorNormal}))
	c.nextCmd(mqttproto.DoorHeartbeat)
	cache := c.nextCmd(mqttproto.DoorOfflineCache)
	if cache.Door != vault || !cache.HighSecurity || cache.MaxOffline != 30*time.Minute || len(cache.Entries) != 1 {
		t.Errorf("cache = %+v", cache)
	}
	c.send(online(mqttproto.DoorState{Door: vault, Mode: mqttproto.DoorNormal, CacheVersion: cache.Version}))

	for _, tc := range []struct {
		id     string
		card   access.CardNumber
		reason access.Reason
	}{{"c1:1", 100, access.ReasonGranted}, {"c1:2", 200, access.ReasonNoGroup}, {"c1:3", 7, access.ReasonUnknownCard}} {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		dec, err := c.ctl.Tap(ctx, mqttproto.Tap{RequestID: tc.id, Door: vault, Card: tc.card})
		cancel()
		if err != nil {
			t.Fatalf("tap %s: %v", tc.id, err)
		}
		if dec.Reason != tc.reason {
			t.Errorf("tap %s: reason %s, want %s", tc.id, dec.Reason, tc.reason)
		}
	}

	c.send(mqttproto.DoorEvent{Type: mqttproto.DoorOpened, Seq: 1, Time: time.Now(), Door: vault})
	if ack := c.nextCmd(mqttproto.DoorAck); ack.Seq != 1 {
		t.Errorf("ack = %+v", ack)
	}
	cmd, err := ParseCommand(s.f, "set_mode door vault locked")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Do(cmd); err != nil {
		t.Fatal(err)
	}
	if m := c.nextCmd(mqttproto.DoorSetMode); m.Mode != mqttproto.DoorLocked {
		t.Errorf("set_mode = %+v", m)
	}
	c.send(online(mqttproto.DoorState{Door: vault, Mode: mqttproto.DoorLocked, CacheVersion: cache.Version}))
	await(t, s, "the locked state", func(r *Report) bool { return len(r.Find("door/c1", "state", "vault locked")) > 0 })
	s.Close()
	r := s.Report()
	if !r.OK() {
		t.Fatalf("violations:\n%s", violations(r))
	}
	if d := r.Devices[0]; d.Transport != "can" || d.Taps != 3 || d.Events != 1 || d.Connects != 1 {
		t.Errorf("summary = %+v", d)
	}
}

// TestCANMisbehaving plays a controller at an address the site file does
// not name and one that skips an event sequence number.
func TestCANMisbehaving(t *testing.T) {
	s := MustSite(t, canSite, true)
	vault := DoorID("vault")
	stranger := mustCANController(t, s, 0x22)
	stranger.send(online())
	c := mustCANController(t, s, 0x11)
	c.send(online(mqttproto.DoorState{Door: vault, Mode: mqttproto.DoorNormal, CacheVersion: 1}))
	c.send(mqttproto.DoorEvent{Type: mqttproto.DoorOpened, Seq: 1, Time: time.Now(), Door: vault})
	c.send(mqttproto.DoorEvent{Type: mqttproto.DoorClosed, Seq: 3, Time: time.Now(), Door: vault})
	if ack := c.nextCmd(mqttproto.DoorAck); ack.Seq != 1 {
		t.Errorf("ack = %+v", ack)
	}
	if ack := c.nextCmd(mqttproto.DoorAck); ack.Seq != 1 || !ack.Resend {
		t.Errorf("ack = %+v, want a resend after 1", ack)
	}
	await(t, s, "both violations", func(r *Report) bool {
		return r.Has("can/22", RuleUnknownDevice) && r.Has("door/c1", RuleSeqGap)
	})
	s.Close()
	if r := s.Report(); r.OK() || !r.Has("door/c1", RuleGapUnfilled) {
		t.Fatalf("violations:\n%s", violations(r))
	}
}
