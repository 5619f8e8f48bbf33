package device

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

const (
	testSite = "site-1"
	testDoor = access.ID("01JD8X5Q4K3M2N1P0R9S8T7V6W")
)

// strictHook accepts a device only as a site's broker would
// (docs/protocol-mqtt.md §2, §4): client ID equal to the user name, which
// names a device of the test site; password "s"; a clean session; the will
// on its own state topic, retained, QoS 1, offline; and then only its own
// topics.
type strictHook struct {
	mqtt.HookBase
	t *testing.T
}

func (h *strictHook) ID() string { return "strict" }

func (h *strictHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *strictHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	dev, err := mqttproto.ParseUsername(string(pk.Connect.Username))
	if err != nil || cl.ID != string(pk.Connect.Username) || dev.Site != testSite || string(pk.Connect.Password) != "s" || !pk.Connect.Clean {
		h.t.Errorf("connect refused: user %q client %q clean %v", pk.Connect.Username, cl.ID, pk.Connect.Clean)
		return false
	}
	topic, payload, _ := mqttproto.Will(dev)
	if !pk.Connect.WillFlag || pk.Connect.WillTopic != topic || string(pk.Connect.WillPayload) != string(payload) ||
		!pk.Connect.WillRetain || pk.Connect.WillQos != mqttproto.QoS {
		h.t.Errorf("device %s: bad last will %q %q", dev, pk.Connect.WillTopic, pk.Connect.WillPayload)
		return false
	}
	return true
}

func (h *strictHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	dev, err := mqttproto.ParseUsername(string(cl.Properties.Username))
	ok := err == nil && (write && mqttproto.DeviceMayPublish(dev, topic) || !write && mqttproto.DeviceMaySubscribe(dev, topic))
	if !ok {
		h.t.Errorf("device %s: refused %s on %s", cl.ID, map[bool]string{true: "publish", false: "subscribe"}[write], topic)
	}
	return ok
}

// fakeSite is a broker with an inline client answering taps like a site:
// card 13 gets no answer, card 14 an answer after a delay, any other a
// grant. It records the states it sees.
type fakeSite struct {
	t    *testing.T
	srv  *mqtt.Server
	addr string
	once sync.Once

	mu     sync.Mutex
	states map[string][]mqttproto.State
}

func startSite(t *testing.T, addr string) *fakeSite {
	t.Helper()
	s := &fakeSite{t: t, states: map[string][]mqttproto.State{}}
	s.srv = mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.srv.AddHook(&strictHook{t: t}, nil); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "t", Address: addr})
	if err := s.srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := s.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Address()
	err := s.srv.Subscribe("gh/"+testSite+"/+/+/tap", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		tp, err := mqttproto.ParseTopic(pk.TopicName)
		if err != nil {
			t.Errorf("tap topic: %v", err)
			return
		}
		tap, err := mqttproto.DecodeTap(pk.Payload)
		if err != nil {
			t.Errorf("tap: %v", err)
			return
		}
		d := mqttproto.Decision{RequestID: tap.RequestID, Door: tap.Door, Grant: true, Reason: access.ReasonGranted,
			Unlock: 5 * time.Second, Mode: access.Online, Node: "fake", Time: time.Now()}
		b, _ := d.Marshal()
		topic := tp.Dev().Topic(mqttproto.ChannelDecision).String()
		switch tap.Card {
		case 13:
			return
		case 14:
			time.AfterFunc(150*time.Millisecond, func() { _ = s.srv.Publish(topic, b, false, 1) })
			return
		}
		// A stray decision first: readers must match by request ID.
		other := d
		other.RequestID = "someone-else"
		ob, _ := other.Marshal()
		_ = s.srv.Publish(topic, ob, false, 1)
		_ = s.srv.Publish(topic, b, false, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.srv.Subscribe("gh/"+testSite+"/+/+/state", 2, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		tp, err := mqttproto.ParseTopic(pk.TopicName)
		if err != nil {
			t.Errorf("state topic: %v", err)
			return
		}
		st, err := mqttproto.DecodeState(tp.Kind, pk.Payload)
		if err != nil {
			t.Errorf("state: %v", err)
			return
		}
		s.mu.Lock()
		s.states[tp.Device] = append(s.states[tp.Device], st)
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// close stops the broker; it is idempotent.
func (s *fakeSite) close() { s.once.Do(func() { _ = s.srv.Close() }) }

func (s *fakeSite) lastState(dev string) (mqttproto.State, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sts := s.states[dev]
	if len(sts) == 0 {
		return mqttproto.State{}, 0
	}
	return sts[len(sts)-1], len(sts)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dialReader(t *testing.T, addr, id string) *Reader {
	t.Helper()
	return dialReaderTimeout(t, addr, id, 0)
}

// dialReaderTimeout dials with connectTimeout bounding each connection
// attempt (the default when zero).
func dialReaderTimeout(t *testing.T, addr, id string, connectTimeout time.Duration) *Reader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := DialReader(ctx, ReaderConfig{
		Config: Config{Broker: addr, Device: mqttproto.Device{Site: testSite, Kind: mqttproto.KindReader, ID: id}, Secret: "s",
			ConnectTimeout: connectTimeout},
		Door: testDoor,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestReaderTap(t *testing.T) {
	site := startSite(t, "127.0.0.1:0")
	r := dialReader(t, site.addr, "r1")
	waitFor(t, "online state", func() bool { st, _ := site.lastState("r1"); return st.Online && st.Reader != nil })

	t.Run("OK", func(t *testing.T) {
		res, err := r.Tap(context.Background(), 1234, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Decision.Grant || res.Decision.RequestID != res.RequestID || res.Latency <= 0 {
			t.Fatalf("result %+v", res)
		}
		if !strings.HasPrefix(res.RequestID, "sim.") {
			t.Errorf("request ID %q", res.RequestID)
		}
		// Taps at once: each gets its own decision.
		var wg sync.WaitGroup
		ids := make(chan string, 20)
		for range 20 {
			wg.Go(func() {
				res, err := r.Tap(context.Background(), 99, time.Second)
				if err != nil || res.Decision.RequestID != res.RequestID {
					t.Errorf("concurrent tap: %+v, %v", res, err)
				}
				ids <- res.RequestID
			})
		}
		wg.Wait()
		close(ids)
		seen := map[string]bool{}
		for id := range ids {
			if seen[id] {
				t.Errorf("request ID %s used twice", id)
			}
			seen[id] = true
		}
	})
	t.Run("ErrNoDecision", func(t *testing.T) {
		_, err := r.Tap(context.Background(), 13, 100*time.Millisecond)
		if !errors.Is(err, ErrNoDecision) {
			t.Fatalf("err = %v, want ErrNoDecision", err)
		}
	})
	t.Run("LateDecisionIgnored", func(t *testing.T) {
		before := r.Unmatched()
		_, err := r.Tap(context.Background(), 14, 50*time.Millisecond)
		if !errors.Is(err, ErrNoDecision) {
			t.Fatalf("err = %v, want ErrNoDecision", err)
		}
		waitFor(t, "late decision counted", func() bool { return r.Unmatched() > before })
	})
	t.Run("ErrCanceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := r.Tap(ctx, 13, time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("CloseGoesOffline", func(t *testing.T) {
		r2 := dialReader(t, site.addr, "r2")
		waitFor(t, "r2 online", func() bool { st, _ := site.lastState("r2"); return st.Online })
		if err := r2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := r2.Close(); err != nil {
			t.Fatal("second Close:", err)
		}
		waitFor(t, "r2 offline", func() bool { st, n := site.lastState("r2"); return n > 1 && !st.Online })
		if _, err := r2.Tap(context.Background(), 1, time.Second); !errors.Is(err, ErrClosed) {
			t.Fatalf("tap after close: %v", err)
		}
	})
}

// TestReaderReconnects restarts the broker on the same address: the
// reader reconnects by itself, subscribes again, republishes its state and
// gets decisions again.
func TestReaderReconnects(t *testing.T) {
	site := startSite(t, "127.0.0.1:0")
	addr := site.addr
	// A reconnection attempt can reach the old broker while it shuts down
	// and hang there until its connect timeout: keep that short so the
	// next attempt finds the new broker.
	r := dialReaderTimeout(t, addr, "r1", time.Second)
	if _, err := r.Tap(context.Background(), 1, time.Second); err != nil {
		t.Fatal(err)
	}
	site.close()
	waitFor(t, "connection lost", func() bool { return r.Conn().Stats().Lost == 1 })
	site2 := startSite(t, addr)
	waitFor(t, "reconnected", func() bool { return r.Conn().Stats().Connects == 2 })
	waitFor(t, "online again", func() bool { st, _ := site2.lastState("r1"); return st.Online })
	res, err := r.Tap(context.Background(), 1, 2*time.Second)
	if err != nil || !res.Decision.Grant {
		t.Fatalf("tap after reconnect: %+v, %v", res, err)
	}
}

func TestDialErrors(t *testing.T) {
	site := startSite(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		cfg  ReaderConfig
	}{
		{"ErrBadDevice", ReaderConfig{Config: Config{Broker: site.addr, Device: mqttproto.Device{Site: testSite, Kind: mqttproto.KindReader, ID: "bad/id"}}, Door: testDoor}},
		{"ErrNotReader", ReaderConfig{Config: Config{Broker: site.addr, Device: mqttproto.Device{Site: testSite, Kind: mqttproto.KindKiosk, ID: "k"}}, Door: testDoor}},
		{"ErrBadDoor", ReaderConfig{Config: Config{Broker: site.addr, Device: mqttproto.Device{Site: testSite, Kind: mqttproto.KindReader, ID: "r"}}, Door: "nope"}},
		{"ErrNoBroker", ReaderConfig{Config: Config{Broker: "127.0.0.1:1", Device: mqttproto.Device{Site: testSite, Kind: mqttproto.KindReader, ID: "r"}, ConnectTimeout: time.Second}, Door: testDoor}},
		{"ErrScheme", ReaderConfig{Config: Config{Broker: "http://x", Device: mqttproto.Device{Site: testSite, Kind: mqttproto.KindReader, ID: "r"}}, Door: testDoor}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DialReader(ctx, tc.cfg)
			if !errors.Is(err, ErrConnect) {
				if r != nil {
					r.Close()
				}
				t.Fatalf("err = %v, want ErrConnect", err)
			}
		})
	}
}

func TestBrokerURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		tls  bool
		want string
		err  bool
	}{
		{"127.0.0.1:1883", false, "tcp://127.0.0.1:1883", false},
		{"127.0.0.1:8883", true, "tls://127.0.0.1:8883", false},
		{"ssl://h:8883", false, "ssl://h:8883", false},
		{" tcp://h:1 ", false, "tcp://h:1", false},
		{"", false, "", true},
		{"ws://h", false, "", true},
		{"tcp://", false, "", true},
	} {
		got, err := BrokerURL(tc.in, tc.tls)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("BrokerURL(%q, %v) = %q, %v; want %q (error %v)", tc.in, tc.tls, got, err, tc.want, tc.err)
		}
	}
}
