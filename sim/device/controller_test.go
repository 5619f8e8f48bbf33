package device

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

const (
	doorA = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6A")
	doorB = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6B")
)

// fakeLink is a controller's link at the transport seam: up or down as the
// test says, recording what the controller sends, answering taps with
// answer (nil: no decision).
type fakeLink struct {
	isUp   atomic.Bool
	answer func(mqttproto.Tap) *mqttproto.Decision

	mu   sync.Mutex
	sent []mqttproto.Message
}

func (l *fakeLink) tap(ctx context.Context, t mqttproto.Tap) (mqttproto.Decision, error) {
	if l.answer != nil {
		if d := l.answer(t); d != nil {
			return *d, nil
		}
	}
	<-ctx.Done()
	return mqttproto.Decision{}, ErrNoDecision
}

func (l *fakeLink) send(_ context.Context, m mqttproto.Message) error {
	if !l.isUp.Load() {
		return errors.New("down")
	}
	l.mu.Lock()
	l.sent = append(l.sent, m)
	l.mu.Unlock()
	return nil
}

func (l *fakeLink) up() bool     { return l.isUp.Load() }
func (l *fakeLink) close() error { return nil }

func (l *fakeLink) events() []mqttproto.DoorEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []mqttproto.DoorEvent
	for _, m := range l.sent {
		if e, ok := m.(mqttproto.DoorEvent); ok {
			out = append(out, e)
		}
	}
	return out
}

// fakeClock is a controller clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func ctlConfig(t *testing.T, dir string, clock *fakeClock) ControllerConfig {
	cfg := ControllerConfig{
		Config:    Config{Device: mqttproto.Device{Site: testSite, Kind: mqttproto.KindDoor, ID: "d1"}, Secret: "s", Log: testLog(t)},
		Doors:     []access.ID{doorA, doorB},
		StateDir:  dir,
		Heartbeat: time.Hour, // silence never cuts these off; the link does
	}
	if clock != nil {
		cfg.Now = clock.now
	}
	return cfg
}

// mustOpenFake starts a controller on dir with a fake link that is up.
func mustOpenFake(t *testing.T, dir string, clock *fakeClock) (*Controller, *fakeLink) {
	t.Helper()
	c, err := newController(ctlConfig(t, dir, clock))
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeLink{}
	l.isUp.Store(true)
	c.start(l)
	c.onUp()
	t.Cleanup(func() { c.Close() })
	return c, l
}

func cachePart(version, base uint64, part, parts int, entries []mqttproto.CacheEntry, remove ...access.CardNumber) mqttproto.DoorCmd {
	return mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, RequestID: "c" + itoa(version) + "." + itoa(uint64(part)),
		Door: doorA, Version: version, Base: base, Part: part, Parts: parts, Entries: entries, Remove: remove}
}

func itoa(n uint64) string { return access.CardNumber(n).String() }

func entry(card access.CardNumber, until time.Time) mqttproto.CacheEntry {
	return mqttproto.CacheEntry{Card: card, Until: until}
}

func cards(es []mqttproto.CacheEntry) []access.CardNumber {
	var out []access.CardNumber
	for _, e := range es {
		out = append(out, e.Card)
	}
	return out
}

func TestControllerCache(t *testing.T) {
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Run("PartsOutOfOrder", func(t *testing.T) {
		c, _ := mustOpenFake(t, t.TempDir(), nil)
		c.receive(cachePart(5, 0, 3, 3, []mqttproto.CacheEntry{entry(30, until)}))
		c.receive(cachePart(5, 0, 1, 3, []mqttproto.CacheEntry{entry(10, until)}))
		if v, _ := c.Cache(doorA); v != 0 {
			t.Fatalf("version %d applied before every part came", v)
		}
		c.receive(cachePart(5, 0, 2, 3, []mqttproto.CacheEntry{entry(20, until)}))
		v, es := c.Cache(doorA)
		if got, want := cards(es), []access.CardNumber{10, 20, 30}; v != 5 || !slices.Equal(got, want) {
			t.Fatalf("cache v%d %v, want v5 %v", v, got, want)
		}
	})
	t.Run("StaleVersionDropped", func(t *testing.T) {
		c, _ := mustOpenFake(t, t.TempDir(), nil)
		c.receive(cachePart(7, 0, 1, 2, []mqttproto.CacheEntry{entry(71, until)}))
		c.receive(cachePart(6, 0, 1, 1, []mqttproto.CacheEntry{entry(61, until)})) // older than the one collected
		if v, _ := c.Cache(doorA); v != 0 {
			t.Fatalf("stale version applied: v%d", v)
		}
		// A newer version discards the incomplete older one.
		c.receive(cachePart(8, 0, 1, 1, []mqttproto.CacheEntry{entry(81, until)}))
		c.receive(cachePart(7, 0, 2, 2, []mqttproto.CacheEntry{entry(72, until)}))
		v, es := c.Cache(doorA)
		if got := cards(es); v != 8 || !slices.Equal(got, []access.CardNumber{81}) {
			t.Fatalf("cache v%d %v, want v8 [81]", v, got)
		}
	})
	t.Run("Delta", func(t *testing.T) {
		c, l := mustOpenFake(t, t.TempDir(), nil)
		c.receive(cachePart(1, 0, 1, 1, []mqttproto.CacheEntry{entry(1, until), entry(2, until)}))
		c.receive(cachePart(2, 1, 1, 1, []mqttproto.CacheEntry{entry(3, until)}, 1))
		v, es := c.Cache(doorA)
		if got := cards(es); v != 2 || !slices.Equal(got, []access.CardNumber{2, 3}) {
			t.Fatalf("cache v%d %v, want v2 [2 3]", v, got)
		}
		// A delta on a version not held is rejected; the cache stays.
		c.receive(cachePart(4, 3, 1, 1, []mqttproto.CacheEntry{entry(4, until)}))
		if v, _ := c.Cache(doorA); v != 2 {
			t.Fatalf("version %d after a delta on the wrong base", v)
		}
		waitFor(t, "cmd_rejected sent", func() bool {
			for _, e := range l.events() {
				if e.Type == mqttproto.DoorCmdRejected && e.RequestID == "c4.1" && e.Error == "base version 3 does not match held version 2" {
					return true
				}
			}
			return false
		})
		// A full cache of any version is always accepted.
		full := cachePart(1, 0, 1, 1, nil)
		full.RequestID = "restore-1.1"
		c.receive(full)
		if v, es := c.Cache(doorA); v != 1 || len(es) != 0 {
			t.Fatalf("full cache v1 not applied: v%d %v", v, es)
		}
	})
	t.Run("ErrMismatchedParts", func(t *testing.T) {
		c, _ := mustOpenFake(t, t.TempDir(), nil)
		c.receive(cachePart(3, 0, 1, 2, nil))
		p := cachePart(3, 0, 2, 2, nil)
		p.HighSecurity = true
		c.receive(p)
		if v, _ := c.Cache(doorA); v != 0 {
			t.Fatalf("inconsistent version applied")
		}
		if r := c.Status().Rejected; len(r) != 1 {
			t.Fatalf("rejected %v", r)
		}
	})
	t.Run("PersistsAcrossRestart", func(t *testing.T) {
		dir := t.TempDir()
		c, l := mustOpenFake(t, dir, nil)
		c.receive(cachePart(9, 0, 1, 1, []mqttproto.CacheEntry{entry(99, until)}))
		c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorSetMode, RequestID: "m1", Door: doorB, Mode: mqttproto.DoorLocked})
		l.isUp.Store(false)
		c.onDown()
		waitFor(t, "cut off", func() bool { return c.Status().Offline })
		if _, err := c.DoorEvent(doorA, mqttproto.DoorOpened); err != nil {
			t.Fatal(err)
		}
		before := c.Status()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c2, _ := mustOpenFake(t, dir, nil)
		after := c2.Status()
		if v, es := c2.Cache(doorA); v != 9 || len(es) != 1 || es[0].Card != 99 || !es[0].Until.Equal(until) {
			t.Errorf("cache after restart: v%d %v", v, es)
		}
		if after.Doors[1].Mode != mqttproto.DoorLocked {
			t.Errorf("mode of door B after restart: %s", after.Doors[1].Mode)
		}
		if after.LastSeq != before.LastSeq || after.Buffered != before.Buffered || after.Buffered != 2 {
			t.Errorf("events after restart: seq %d buffered %d; before seq %d buffered %d", after.LastSeq, after.Buffered, before.LastSeq, before.Buffered)
		}
		// The cut-off outlived the restart: no second offline_started;
		// hearing the site ends it.
		c2.receive(mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: "hb1", Time: time.Now()})
		waitFor(t, "back online", func() bool { return !c2.Status().Offline })
		var types []mqttproto.DoorEventType
		for _, e := range c2.Buffered() {
			types = append(types, e.Type)
		}
		if want := []mqttproto.DoorEventType{mqttproto.DoorOfflineStarted, mqttproto.DoorOpened, mqttproto.DoorOfflineEnded}; !slices.Equal(types, want) {
			t.Errorf("buffered %v, want %v", types, want)
		}
	})
}

func TestControllerDecidesAlone(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	now := clock.now()
	c, l := mustOpenFake(t, t.TempDir(), clock)
	c.cfg.DecisionTimeout = 50 * time.Millisecond
	// The site answers taps of card 1 only.
	l.answer = func(tp mqttproto.Tap) *mqttproto.Decision {
		if tp.Card != 1 {
			return nil
		}
		return &mqttproto.Decision{RequestID: tp.RequestID, Door: tp.Door, Grant: true, Reason: access.ReasonGranted,
			Unlock: time.Second, Mode: access.Online, Node: "n1", Time: now}
	}
	c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, RequestID: "a.1", Door: doorA, Version: 3, Part: 1, Parts: 1,
		Entries: []mqttproto.CacheEntry{
			{Card: 7, Until: now.Add(time.Hour)},
			{Card: 8, From: now.Add(time.Hour), Until: now.Add(2 * time.Hour)},
		}})
	c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, RequestID: "b.1", Door: doorB, Version: 1, Part: 1, Parts: 1,
		HighSecurity: true, MaxOffline: 10 * time.Minute, Entries: []mqttproto.CacheEntry{{Card: 7, Until: now.Add(time.Hour)}}})
	tap := func(door access.ID, card access.CardNumber) TapResult {
		t.Helper()
		res, err := c.Tap(context.Background(), door, card, 0)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	check := func(res TapResult, alone, grant bool, reason access.Reason) {
		t.Helper()
		d := res.Decision
		if res.Alone != alone || d.Grant != grant || d.Reason != reason {
			t.Errorf("tap: alone %v grant %v %s; want alone %v grant %v %s", res.Alone, d.Grant, d.Reason, alone, grant, reason)
		}
		if alone && (res.Event.Type != mqttproto.DoorOfflineDecision || res.Event.Grant != grant || res.Event.Reason != reason || res.Event.CacheVersion == 0) {
			t.Errorf("event %+v", res.Event)
		}
	}

	t.Run("Online", func(t *testing.T) {
		check(tap(doorA, 1), false, true, access.ReasonGranted)
	})
	t.Run("NoDecisionInTime", func(t *testing.T) {
		res := tap(doorA, 7) // the site does not answer card 7
		check(res, true, true, access.ReasonGranted)
		if res.Event.RequestID != res.RequestID {
			t.Errorf("offline decision of a tap sent to the site has request ID %q, want %q", res.Event.RequestID, res.RequestID)
		}
		if c.Status().Offline {
			t.Error("one missing decision made the controller cut off")
		}
	})
	l.isUp.Store(false)
	c.onDown()
	waitFor(t, "cut off", func() bool { return c.Status().Offline })
	t.Run("CutOff", func(t *testing.T) {
		res := tap(doorA, 1) // not sent to the site
		check(res, true, false, access.ReasonUnknownCard)
		if res.Event.RequestID != "" {
			t.Errorf("request ID %q on a tap never sent", res.Event.RequestID)
		}
		check(tap(doorA, 7), true, true, access.ReasonGranted)
		check(tap(doorA, 8), true, false, access.ReasonCardOutsideValidity) // from is in an hour
		check(tap(doorB, 7), true, true, access.ReasonGranted)
	})
	t.Run("Modes", func(t *testing.T) {
		c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorSetMode, RequestID: "m1", Door: doorA, Mode: mqttproto.DoorLocked})
		check(tap(doorA, 7), true, false, access.ReasonNoOfflineAccess)
		c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorSetMode, RequestID: "m2", Door: doorA, Mode: mqttproto.DoorUnlocked})
		check(tap(doorA, 424242), true, true, access.ReasonGranted)
		c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorSetMode, RequestID: "m3", Door: doorA, Mode: mqttproto.DoorNormal})
	})
	t.Run("FailSecure", func(t *testing.T) {
		clock.add(10 * time.Minute) // door B's maximum offline time
		check(tap(doorB, 7), true, false, access.ReasonNoOfflineAccess)
		check(tap(doorB, 7), true, false, access.ReasonNoOfflineAccess)
		check(tap(doorA, 7), true, true, access.ReasonGranted) // not high-security
		n := 0
		for _, e := range c.Events() {
			if e.Type == mqttproto.DoorFailSecure {
				n++
				if e.Door != doorB {
					t.Errorf("fail_secure for door %s", e.Door)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d fail_secure events, want 1", n)
		}
		if st := c.Status(); !st.Doors[1].FailSecure || st.Doors[0].FailSecure {
			t.Errorf("door states %+v", st.Doors)
		}
	})
	t.Run("Reconnect", func(t *testing.T) {
		l.isUp.Store(true)
		c.onUp()
		c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: "hb", Time: now})
		waitFor(t, "back online", func() bool { return !c.Status().Offline })
		if st := c.Status(); st.Doors[1].FailSecure {
			t.Error("still failing secure with the site back")
		}
		check(tap(doorB, 1), false, true, access.ReasonGranted)
	})
}

func TestControllerReplay(t *testing.T) {
	c, l := mustOpenFake(t, t.TempDir(), nil)
	l.isUp.Store(false)
	c.onDown()
	waitFor(t, "cut off", func() bool { return c.Status().Offline })
	for range 5 {
		if _, err := c.DoorEvent(doorA, mqttproto.DoorRequestToExit); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.events()); n != 0 {
		t.Fatalf("%d events sent while down", n)
	}
	seqs := func() []uint64 {
		var out []uint64
		for _, e := range l.events() {
			out = append(out, e.Seq)
		}
		return out
	}
	l.isUp.Store(true)
	c.onUp()
	waitFor(t, "replayed", func() bool { return len(l.events()) == 6 })
	if got, want := seqs(), []uint64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
	// The site is heard again: offline_ended.
	c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: "hb", Time: time.Now()})
	waitFor(t, "offline_ended", func() bool { return len(l.events()) == 7 })
	// The site saw a gap after 3: it acks 3 and asks for the rest again.
	c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "ack1", Seq: 3, Resend: true})
	waitFor(t, "resent", func() bool { return len(l.events()) == 11 })
	if got, want := seqs()[7:], []uint64{4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("resent %v, want %v", got, want)
	}
	if st := c.Status(); st.Acked != 3 || st.Buffered != 4 {
		t.Fatalf("acked %d buffered %d", st.Acked, st.Buffered)
	}
	// A repeated ack (same request ID) is not acted on twice.
	c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "ack1", Seq: 3, Resend: true})
	c.receive(mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "ack2", Seq: 7})
	if st := c.Status(); st.Acked != 7 || st.Buffered != 0 || len(l.events()) != 11 {
		t.Fatalf("acked %d buffered %d sent %d", st.Acked, st.Buffered, len(l.events()))
	}
	for _, e := range c.Events() {
		if !e.Acked {
			t.Errorf("event %d not marked acked", e.Seq)
		}
	}
	t.Run("BufferFull", func(t *testing.T) {
		cfg := ctlConfig(t, t.TempDir(), nil)
		cfg.MaxEvents = 3
		c, err := newController(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.start(&fakeLink{})
		for range 5 {
			c.DoorEvent(doorA, mqttproto.DoorOpened)
		}
		c.Close()
		c2, _ := mustOpenFake(t, cfg.StateDir, nil)
		var got []uint64
		for _, e := range c2.Buffered() {
			got = append(got, e.Seq)
		}
		if want := []uint64{3, 4, 5}; !slices.Equal(got, want) {
			t.Errorf("kept %v, want the newest 3 %v", got, want)
		}
	})
}

// doorSite is a broker whose inline client plays the site for door
// controllers with real protocol messages: it records events once per
// seq in order (asking for a resend on a gap) and acks them, answers taps
// when answering is on, and sends commands.
type doorSite struct {
	t    *testing.T
	srv  *mqtt.Server
	addr string
	once sync.Once

	answer atomic.Bool
	ack    atomic.Bool

	*ledger
}

// ledger is what a door site has recorded; it outlives a broker restart.
type ledger struct {
	mu       sync.Mutex
	recorded []mqttproto.DoorEvent // in seq order, each once
	received []uint64              // every seq as it arrived
	states   []mqttproto.State
}

func startDoorSite(t *testing.T, addr string, l *ledger) *doorSite {
	t.Helper()
	if l == nil {
		l = &ledger{}
	}
	s := &doorSite{t: t, ledger: l}
	s.answer.Store(true)
	s.ack.Store(true)
	s.srv = mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.srv.AddHook(&strictHook{t: t}, nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: addr})
	if err := s.srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	sub := func(ch mqttproto.Channel, id int, f func(mqttproto.Topic, []byte)) {
		err := s.srv.Subscribe("gh/"+testSite+"/door/+/"+string(ch), id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			tp, err := mqttproto.ParseTopic(pk.TopicName)
			if err != nil {
				t.Errorf("topic: %v", err)
				return
			}
			f(tp, pk.Payload)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sub(mqttproto.ChannelTap, 1, func(tp mqttproto.Topic, b []byte) {
		tap, err := mqttproto.DecodeTap(b)
		if err != nil {
			t.Errorf("tap: %v", err)
			return
		}
		if !s.answer.Load() {
			return
		}
		d := mqttproto.Decision{RequestID: tap.RequestID, Door: tap.Door, Reason: access.ReasonNoGroup,
			Mode: access.Online, Node: "site", Time: time.Now()}
		if tap.Card < 100 {
			d.Grant, d.Reason, d.Unlock = true, access.ReasonGranted, 5*time.Second
		}
		s.publish(tp.Device, mqttproto.ChannelDecision, d)
	})
	sub(mqttproto.ChannelEvent, 2, func(tp mqttproto.Topic, b []byte) {
		e, err := mqttproto.DecodeDoorEvent(b)
		if err != nil {
			t.Errorf("event: %v", err)
			return
		}
		s.mu.Lock()
		s.received = append(s.received, e.Seq)
		last := uint64(len(s.recorded))
		var ack *mqttproto.DoorCmd
		switch {
		case e.Seq == last+1:
			s.recorded = append(s.recorded, e)
			ack = &mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "ack-" + itoa(e.Seq), Seq: e.Seq}
		case e.Seq > last+1 && last > 0:
			ack = &mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "gap-" + itoa(e.Seq), Seq: last, Resend: true}
		}
		s.mu.Unlock()
		if ack != nil && s.ack.Load() {
			s.publish(tp.Device, mqttproto.ChannelCmd, *ack)
		}
	})
	sub(mqttproto.ChannelState, 3, func(tp mqttproto.Topic, b []byte) {
		st, err := mqttproto.DecodeState(tp.Kind, b)
		if err != nil {
			t.Errorf("state: %v", err)
			return
		}
		s.mu.Lock()
		s.states = append(s.states, st)
		s.mu.Unlock()
	})
	// Serve after subscribing: a controller that reconnects at once
	// must not publish before the site listens.
	if err := s.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Address()
	t.Cleanup(s.close)
	return s
}

func (s *doorSite) close() { s.once.Do(func() { _ = s.srv.Close() }) }

func (s *doorSite) publish(dev string, ch mqttproto.Channel, m mqttproto.Message) {
	b, err := m.Marshal()
	if err != nil {
		s.t.Errorf("marshal: %v", err)
		return
	}
	d := mqttproto.Device{Site: testSite, Kind: mqttproto.KindDoor, ID: dev}
	if err := s.srv.Publish(d.Topic(ch).String(), b, false, 1); err != nil {
		s.t.Errorf("publish: %v", err)
	}
}

func (s *doorSite) snapshot() (rec []mqttproto.DoorEvent, received []uint64, last mqttproto.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.states) > 0 {
		last = s.states[len(s.states)-1]
	}
	return slices.Clone(s.recorded), slices.Clone(s.received), last
}

// TestControllerMQTT runs a controller against a broker where the test
// plays the site: the cache arrives in parts and is reported in the state;
// taps are decided by the site; with the broker gone the controller decides
// alone and buffers; with the broker back it replays in order and the site
// acks everything; silence from the site cuts it off too.
func TestControllerMQTT(t *testing.T) {
	site := startDoorSite(t, "127.0.0.1:0", nil)
	addr := site.addr
	cfg := ctlConfig(t, t.TempDir(), nil)
	cfg.Broker = addr
	cfg.Heartbeat = 300 * time.Millisecond
	cfg.DecisionTimeout = 2 * time.Second
	ctx := context.Background()
	c, err := DialController(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "connected", func() bool { return c.Status().LinkUp })
	// The site keeps talking: a heartbeat every 50 ms.
	stopHB := make(chan struct{})
	var hbWG sync.WaitGroup
	hbWG.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := uint64(1); ; n++ {
			select {
			case <-stopHB:
				return
			case <-tick.C:
				site.publish("d1", mqttproto.ChannelCmd, mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: "hb-" + itoa(n), Time: time.Now()})
			}
		}
	})
	stopHeartbeats := func() {
		close(stopHB)
		hbWG.Wait()
	}

	// A cache of 400 entries travels in several parts, sent last to first.
	until := time.Now().Add(time.Hour)
	oc := mqttproto.OfflineCache{Door: doorA, Version: 12}
	for i := range 400 {
		oc.Entries = append(oc.Entries, mqttproto.CacheEntry{Card: access.CardNumber(1000 + i), Until: until})
	}
	cmds, err := oc.Cmds("cache-12")
	if err != nil || len(cmds) < 2 {
		t.Fatalf("%d parts, %v", len(cmds), err)
	}
	for i := len(cmds) - 1; i >= 0; i-- {
		site.publish("d1", mqttproto.ChannelCmd, cmds[i])
	}
	waitFor(t, "cache version in the state", func() bool {
		_, _, st := site.snapshot()
		return st.Door != nil && len(st.Door.Doors) == 2 && st.Door.Doors[0].CacheVersion == 12
	})

	res, err := c.Tap(ctx, doorA, 5, 0)
	if err != nil || res.Alone || !res.Decision.Grant || res.Decision.Node != "site" {
		t.Fatalf("online tap: %+v %v", res, err)
	}

	// The broker goes away: cut off. (Events before this one, if a loaded
	// machine made the controller miss heartbeats, are not looked at.)
	base := c.Status().LastSeq
	site.close()
	waitFor(t, "cut off", func() bool { return c.Status().Offline })
	stopHeartbeats()
	res1, _ := c.Tap(ctx, doorA, 1000, 0)
	res2, _ := c.Tap(ctx, doorA, 5, 0)
	if !res1.Alone || !res1.Decision.Grant || !res2.Alone || res2.Decision.Grant || res2.Decision.Reason != access.ReasonUnknownCard {
		t.Fatalf("offline taps: %+v / %+v", res1.Decision, res2.Decision)
	}
	c.DoorEvent(doorA, mqttproto.DoorForcedOpen)
	c.DoorEvent(doorA, mqttproto.DoorClosed)

	// The broker is back: the site records every event once, in order,
	// and acks them; hearing the site (its acks) ends the cut-off, and
	// with no heartbeat after that, silence starts the next one.
	site2 := startDoorSite(t, addr, site.ledger)
	want := []mqttproto.DoorEventType{mqttproto.DoorOfflineStarted, mqttproto.DoorOfflineDecision,
		mqttproto.DoorOfflineDecision, mqttproto.DoorForcedOpen, mqttproto.DoorClosed,
		mqttproto.DoorOfflineEnded, mqttproto.DoorOfflineStarted}
	waitFor(t, "replayed, acked, back and cut off by silence", func() bool {
		rec, _, _ := site2.snapshot()
		return len(rec) >= int(base)+len(want)
	})
	rec, received, _ := site2.snapshot()
	for i, e := range rec {
		if e.Seq != uint64(i+1) {
			t.Fatalf("recorded out of order: arrivals %v", received)
		}
	}
	rec = rec[base:]
	var types []mqttproto.DoorEventType
	for _, e := range rec[:len(want)] {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, want) {
		t.Errorf("recorded types %v, want %v", types, want)
	}
	if rec[1].Card != 1000 || !rec[1].Grant || rec[2].Card != 5 || rec[2].Reason != access.ReasonUnknownCard {
		t.Errorf("offline decisions %+v %+v", rec[1], rec[2])
	}
	waitFor(t, "acked", func() bool { st := c.Status(); return st.Acked >= base+7 && st.Offline })
}

// canSite is the site's end of a CAN bus for TestControllerCAN: it answers
// taps and records and acks events unless deaf.
type canSite struct {
	gw      *canbus.Gateway
	deaf    atomic.Bool
	resends atomic.Uint64

	mu       sync.Mutex
	recorded []mqttproto.DoorEvent
	state    mqttproto.State
}

func (s *canSite) HandleTap(_ context.Context, _ canbus.Addr, t mqttproto.Tap) mqttproto.Decision {
	if s.deaf.Load() {
		return mqttproto.Decision{} // invalid: not sent
	}
	return mqttproto.Decision{RequestID: t.RequestID, Door: t.Door, Grant: true, Reason: access.ReasonGranted,
		Unlock: time.Second, Mode: access.Online, Node: "can-site", Time: time.Now()}
}

func (s *canSite) HandleEvent(ctx context.Context, from canbus.Addr, e mqttproto.DoorEvent) error {
	if s.deaf.Load() {
		return errors.New("deaf")
	}
	s.mu.Lock()
	if e.Seq == uint64(len(s.recorded))+1 {
		s.recorded = append(s.recorded, e)
	}
	last := uint64(len(s.recorded))
	s.mu.Unlock()
	if e.Seq > last+1 {
		// A gap (events sent while deaf were lost): ask for a resend
		// from the last recorded, as the site's door manager does.
		return s.gw.Send(ctx, from, mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "resend-" + itoa(s.resends.Add(1)),
			Seq: last, Resend: true})
	}
	if last == 0 {
		return nil
	}
	return s.gw.Send(ctx, from, mqttproto.DoorCmd{Type: mqttproto.DoorAck, RequestID: "ack-" + itoa(last), Seq: last})
}

func (s *canSite) HandleState(_ context.Context, _ canbus.Addr, st mqttproto.State) error {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
	return nil
}

func (s *canSite) snapshot() ([]mqttproto.DoorEvent, mqttproto.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recorded), s.state
}

// TestControllerCAN runs a controller over the CAN stream bridge, on a hub
// shared with a canbus.Gateway playing the site: the cache arrives, taps
// are decided by the site; when the site goes quiet the controller is cut
// off by silence, decides alone, and when the site speaks again it
// replays what the site did not record, in order.
func TestControllerCAN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := canbus.NewHub(ln, nil)
	go hub.Serve()
	t.Cleanup(func() { hub.Close() })
	ctx := context.Background()
	busCfg := canbus.Config{Transport: canbus.TransportTCP, Address: hub.Addr().String()}
	gbus, err := canbus.Open(ctx, busCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gbus.Close() })
	site := &canSite{}
	site.gw = canbus.NewGateway(gbus, site, canbus.GatewayConfig{})
	if err := site.gw.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { site.gw.Close() })

	cfg := ctlConfig(t, t.TempDir(), nil)
	cfg.Heartbeat = 100 * time.Millisecond
	cfg.DecisionTimeout = 2 * time.Second
	c, err := OpenCANController(cfg, CANConfig{Bus: busCfg, Addr: 0x11})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	wg.Go(func() { // the site's heartbeats, while it is not deaf
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := uint64(1); ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if !site.deaf.Load() {
				_ = site.gw.Send(ctx, 0x11, mqttproto.DoorCmd{Type: mqttproto.DoorHeartbeat, RequestID: "hb-" + itoa(n), Time: time.Now()})
			}
		}
	})
	waitFor(t, "state over CAN", func() bool { _, st := site.snapshot(); return st.Online && st.Door != nil })
	err = site.gw.Send(ctx, 0x11, mqttproto.DoorCmd{Type: mqttproto.DoorOfflineCache, RequestID: "cache-3.1", Door: doorA,
		Version: 3, Part: 1, Parts: 1, Entries: []mqttproto.CacheEntry{{Card: 77, Until: time.Now().Add(time.Hour)}}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cache held", func() bool { v, _ := c.Cache(doorA); return v == 3 })
	res, err := c.Tap(ctx, doorA, 5, 0)
	if err != nil || res.Alone || res.Decision.Node != "can-site" {
		t.Fatalf("online tap over CAN: %+v %v", res, err)
	}

	site.deaf.Store(true)
	waitFor(t, "cut off by silence", func() bool { return c.Status().Offline })
	r1, _ := c.Tap(ctx, doorA, 77, 0)
	r2, _ := c.Tap(ctx, doorA, 5, 0)
	if !r1.Alone || !r1.Decision.Grant || !r2.Alone || r2.Decision.Reason != access.ReasonUnknownCard {
		t.Fatalf("offline taps %+v / %+v", r1.Decision, r2.Decision)
	}
	site.deaf.Store(false)
	want := []mqttproto.DoorEventType{mqttproto.DoorOfflineStarted, mqttproto.DoorOfflineDecision, mqttproto.DoorOfflineDecision, mqttproto.DoorOfflineEnded}
	waitFor(t, "replayed and acked", func() bool {
		rec, _ := site.snapshot()
		return len(rec) >= len(want) && c.Status().Acked >= uint64(len(want))
	})
	rec, _ := site.snapshot()
	for i, w := range want {
		if rec[i].Type != w || rec[i].Seq != uint64(i+1) {
			t.Fatalf("recorded %+v, want types %v", rec, want)
		}
	}
}
