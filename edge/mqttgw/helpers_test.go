package mqttgw_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/edge/mqttgw"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
)

// deadline bounds every wait of these tests. Nothing is timed: a wait that
// reaches it fails the test.
const deadline = 15 * time.Second

// testLogger returns a logger that writes to t.Log until the test ends
// (later lines, from goroutines still stopping, are dropped).
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs after every other cleanup
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// testWriter passes lines to t.Log while the test runs.
type testWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// waitFor polls cond until it holds, failing t at the deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Card numbers of the fixture.
const (
	cardAlice       access.CardNumber = 1001 // granted at main and lab
	cardSuspended   access.CardNumber = 1002
	cardExpired     access.CardNumber = 1003
	cardInactive    access.CardNumber = 1004
	cardNoGroup     access.CardNumber = 1005
	cardSchedule    access.CardNumber = 1006 // grant whose schedule never allows today
	cardNotIn       access.CardNumber = 1007 // visitor, invited only
	cardEscort      access.CardNumber = 1008 // visitor, escorted, checked in only
	cardCheckedOut  access.CardNumber = 1009 // visitor, checked out
	cardPassback    access.CardNumber = 1010 // entered the lab, never left
	cardBob         access.CardNumber = 1011 // offline access
	cardUnknown     access.CardNumber = 9999
	fixtureSiteName                   = "HQ"
)

// testDevice is a device registered in the fixture, with its secret.
type testDevice struct {
	dev    access.Device
	secret string
}

// proto returns the device's identity in the MQTT protocol.
func (d testDevice) proto() mqttproto.Device {
	return mqttproto.Device{Site: string(d.dev.SiteID), Kind: mqttproto.Kind(d.dev.Kind.String()), ID: string(d.dev.ID)}
}

// testSite is a Site over a real access.State, with a RecordEvents that
// records into memory and can be made to fail or to block.
type testSite struct {
	siteID                                 access.ID
	main, lab, ghost                       access.ID
	reader, labReader, ghostReader, door   testDevice
	disabledReader, kiosk, otherSiteReader testDevice

	mu      sync.RWMutex
	st      *access.State
	offline atomic.Bool // decide under the offline rule

	recMu    sync.Mutex
	events   []*accessv1.AccessEvent
	calls    int
	failures int           // RecordEvents calls still to fail
	block    chan struct{} // when not nil, RecordEvents waits for it to close
}

// newTestSite builds the fixture: one site with doors, groups, people,
// cards, visits and devices, covering every reason a tap can get.
func newTestSite(t testing.TB) *testSite {
	t.Helper()
	s := &testSite{st: access.NewState()}
	st := s.st
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	id := access.MustNewID
	s.siteID, s.main, s.lab, s.ghost = id(), id(), id(), id()
	now := time.Now().UTC()
	day := 24 * time.Hour
	must(st.PutSite(access.Site{ID: s.siteID, Name: fixtureSiteName, TimeZone: "UTC"}))
	zone := id()
	must(st.PutZone(access.Zone{ID: zone, SiteID: s.siteID, Name: "Lab", AntiPassback: true}))
	must(st.PutDoor(access.Door{ID: s.main, SiteID: s.siteID, Name: "Main"}))
	must(st.PutDoor(access.Door{ID: s.lab, SiteID: s.siteID, ZoneID: zone, Name: "Lab in", Direction: access.DirIn}))
	// s.ghost is a door a reader is registered at but the state lacks.

	never := id()
	// A window three days from today: never today or tomorrow, whatever
	// the time of day the test runs at.
	must(st.PutSchedule(access.Schedule{ID: never, SiteID: s.siteID, Name: "Never today",
		Windows: []access.Window{{Day: (now.Weekday() + 3) % 7, Start: 0, End: access.MinutesPerDay}}}))
	all, visitors, scheduled := id(), id(), id()
	must(st.PutGroup(access.Group{ID: all, SiteID: s.siteID, Name: "All", Doors: []access.ID{s.main, s.lab}, Kind: access.GroupAccess}))
	must(st.PutGroup(access.Group{ID: visitors, SiteID: s.siteID, Name: "Visitors", Doors: []access.ID{s.main}, Kind: access.GroupVisitorProfile}))
	must(st.PutGroup(access.Group{ID: scheduled, SiteID: s.siteID, Name: "Scheduled", Doors: []access.ID{s.main}, ScheduleID: never, Kind: access.GroupAccess}))

	alice, bob, carol, frank, gina, paul, host := id(), id(), id(), id(), id(), id(), id()
	vic, xena, zoe := id(), id(), id()
	for _, p := range []access.Person{
		{ID: alice, Kind: access.AccessUser, Name: "Alice", Active: true},
		{ID: bob, Kind: access.AccessUser, Name: "Bob", Active: true, OfflineAccess: true},
		{ID: carol, Kind: access.AccessUser, Name: "Carol", Active: false},
		{ID: frank, Kind: access.AccessUser, Name: "Frank", Active: true},
		{ID: gina, Kind: access.AccessUser, Name: "Gina", Active: true},
		{ID: paul, Kind: access.AccessUser, Name: "Paul", Active: true},
		{ID: host, Kind: access.AccessUser, Name: "Host", Active: true},
		{ID: vic, Kind: access.Visitor, Name: "Vic", Active: true},
		{ID: xena, Kind: access.Visitor, Name: "Xena", Active: true},
		{ID: zoe, Kind: access.Visitor, Name: "Zoe", Active: true},
	} {
		must(st.PutPerson(p))
	}
	vicVisit, xenaVisit, zoeVisit := id(), id(), id()
	visit := func(v, guest access.ID, escort bool, state access.VisitState) access.Visit {
		return access.Visit{ID: v, SiteID: s.siteID, HostID: host, VisitorID: guest,
			From: now.Add(-day), Until: now.Add(day), Escort: escort, State: state}
	}
	must(st.PutVisit(visit(vicVisit, vic, false, access.VisitInvited)))
	must(st.PutVisit(visit(xenaVisit, xena, true, access.VisitCheckedIn)))
	must(st.PutVisit(visit(zoeVisit, zoe, false, access.VisitCheckedOut)))

	active := access.CardActive
	for _, c := range []access.Card{
		{Number: cardAlice, PersonID: alice, Status: active},
		{Number: cardSuspended, PersonID: alice, Status: access.CardSuspended},
		{Number: cardExpired, PersonID: alice, Status: active, ValidUntil: now.Add(-time.Hour)},
		{Number: cardInactive, PersonID: carol, Status: active},
		{Number: cardNoGroup, PersonID: frank, Status: active},
		{Number: cardSchedule, PersonID: gina, Status: active},
		{Number: cardNotIn, PersonID: vic, VisitID: vicVisit, Status: active},
		{Number: cardEscort, PersonID: xena, VisitID: xenaVisit, Status: active},
		{Number: cardCheckedOut, PersonID: zoe, VisitID: zoeVisit, Status: active},
		{Number: cardPassback, PersonID: paul, Status: active},
		{Number: cardBob, PersonID: bob, Status: active},
	} {
		must(st.PutCard(c))
	}
	for _, g := range []access.Grant{
		{ID: id(), HolderID: alice, GroupID: all},
		{ID: id(), HolderID: bob, GroupID: all},
		{ID: id(), HolderID: carol, GroupID: all},
		{ID: id(), HolderID: gina, GroupID: scheduled},
		{ID: id(), HolderID: paul, GroupID: all},
		{ID: id(), HolderID: vicVisit, GroupID: visitors},
		{ID: id(), HolderID: xenaVisit, GroupID: visitors},
		{ID: id(), HolderID: zoeVisit, GroupID: visitors},
	} {
		must(st.PutGrant(g))
	}
	// Paul went into the lab and never came out.
	st.RecordPassage(access.Passage{CardNumber: cardPassback, DoorID: s.lab, ZoneID: zone, Direction: access.DirIn, At: now.Add(-time.Hour)})

	device := func(kind access.DeviceKind, door access.ID, disabled bool, site access.ID) testDevice {
		d := testDevice{secret: "secret-" + string(id())}
		d.dev = access.Device{ID: id(), SiteID: site, Kind: kind, Name: kind.String(), DoorID: door,
			SecretHash: access.HashSecret([]byte(d.secret)), Disabled: disabled}
		must(st.PutDevice(d.dev))
		return d
	}
	s.reader = device(access.DeviceReader, s.main, false, s.siteID)
	s.labReader = device(access.DeviceReader, s.lab, false, s.siteID)
	s.ghostReader = device(access.DeviceReader, s.ghost, false, s.siteID)
	s.door = device(access.DeviceDoor, s.main, false, s.siteID)
	s.disabledReader = device(access.DeviceReader, s.main, true, s.siteID)
	s.kiosk = device(access.DeviceKiosk, "", false, s.siteID)
	s.otherSiteReader = device(access.DeviceReader, s.main, false, id())
	return s
}

// Decide implements mqttgw.Site.
func (s *testSite) Decide(card access.CardNumber, door access.ID, at time.Time) access.Decision {
	d, _ := s.DecideWithMode(card, door, at)
	return d
}

// DecideWithMode implements mqttgw.ModeDecider.
func (s *testSite) DecideWithMode(card access.CardNumber, door access.ID, at time.Time) (access.Decision, access.Mode) {
	mode := access.Online
	if s.offline.Load() {
		mode = access.Offline
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return access.Decide(s.st, access.Request{Card: card, Door: door, At: at, Mode: mode}), mode
}

// Device implements mqttgw.Site.
func (s *testSite) Device(id access.ID) (access.Device, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.Device(id)
}

// errNoQuorum is what RecordEvents fails with when told to.
var errNoQuorum = &access.Error{Code: access.Unavailable, Msg: "no quorum"}

// RecordEvents implements mqttgw.Site.
func (s *testSite) RecordEvents(ctx context.Context, events []*accessv1.AccessEvent) error {
	s.recMu.Lock()
	s.calls++
	block := s.block
	if s.failures > 0 {
		s.failures--
		s.recMu.Unlock()
		return errNoQuorum
	}
	s.recMu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.recMu.Lock()
	s.events = append(s.events, events...)
	s.recMu.Unlock()
	return nil
}

// recorded returns a copy of the recorded events.
func (s *testSite) recorded() []*accessv1.AccessEvent {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return append([]*accessv1.AccessEvent(nil), s.events...)
}

// failNext makes the next n RecordEvents calls fail.
func (s *testSite) failNext(n int) {
	s.recMu.Lock()
	s.failures = n
	s.recMu.Unlock()
}

// blockRecords makes RecordEvents wait until the returned func is called.
func (s *testSite) blockRecords() (release func()) {
	ch := make(chan struct{})
	s.recMu.Lock()
	s.block = ch
	s.recMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.recMu.Lock()
			s.block = nil
			s.recMu.Unlock()
			close(ch)
		})
	}
}

// put changes the state under the write lock.
func (s *testSite) put(t testing.TB, f func(st *access.State) error) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := f(s.st); err != nil {
		t.Fatal(err)
	}
}

// siteOnly hides the ModeDecider of a testSite.
type siteOnly struct{ s *testSite }

func (o siteOnly) Decide(c access.CardNumber, d access.ID, at time.Time) access.Decision {
	return o.s.Decide(c, d, at)
}
func (o siteOnly) Device(id access.ID) (access.Device, bool) { return o.s.Device(id) }
func (o siteOnly) RecordEvents(ctx context.Context, evs []*accessv1.AccessEvent) error {
	return o.s.RecordEvents(ctx, evs)
}

// gwOption adjusts a gateway config in a test.
type gwOption func(*mqttgw.Config)

// startGateway opens a gateway for s (embedded broker on a free loopback
// port unless an option sets a broker URL), closed when the test ends. It
// returns the gateway and its metrics registry.
func startGateway(t testing.TB, site mqttgw.Site, siteID access.ID, opts ...gwOption) (*mqttgw.Gateway, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := mqttgw.Config{
		SiteID:     string(siteID),
		NodeID:     "edge-1",
		ListenAddr: "127.0.0.1:0",
		Registerer: reg,
	}
	for _, o := range opts {
		o(&cfg)
	}
	g := mqttgw.New(cfg, site, testLogger(t).With("gw", cfg.NodeID))
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := g.Open(ctx); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		// Tests that close the gateway themselves check Close's result.
		if err := g.Close(); err != nil && !errors.Is(err, mqttgw.ErrEventsLost) {
			t.Errorf("Close: %v", err)
		}
	})
	return g, reg
}

// metric returns the value of the counter or gauge name (without the
// gatehouse_mqttgw_ prefix) whose labels include want, summed over the
// series that match, or of the histogram's sample count.
func metric(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "gatehouse_mqttgw_"+name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// taps returns taps_total for result.
func taps(t testing.TB, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return metric(t, reg, "taps_total", map[string]string{"result": result})
}

// received is one message a test device got.
type received struct {
	topic   string
	payload []byte
}

// client is a device (or an impostor) connected with paho, as the
// protocol asks: clean session, its state topic as last will, QoS 1.
type client struct {
	t    testing.TB
	id   mqttproto.Device
	c    paho.Client
	msgs chan received
	lost chan error
}

// clientOpts describes how a test client connects.
type clientOpts struct {
	addr      string // host:port
	username  string // default: the device's user name
	clientID  string // default: the user name
	password  string
	subscribe bool // subscribe to the device's own topics after connecting
	reconnect bool // reconnect (and subscribe again) after a lost connection
	will      string
	noWill    bool
	conn      *atomic.Pointer[net.Conn] // receives the raw connection, to cut it
	tls       *tls.Config               // connect with TLS
}

// dial connects a client for device id. It returns the connect error, so
// that tests of refused connections can check it.
func dial(t testing.TB, id mqttproto.Device, o clientOpts) (*client, error) {
	t.Helper()
	if o.username == "" {
		o.username = id.Username()
	}
	if o.clientID == "" {
		o.clientID = o.username
	}
	c := &client{t: t, id: id, msgs: make(chan received, 1000), lost: make(chan error, 1)}
	scheme := "tcp://"
	if o.tls != nil {
		scheme = "tls://"
	}
	opts := paho.NewClientOptions().
		AddBroker(scheme + o.addr).
		SetTLSConfig(o.tls).
		SetClientID(o.clientID).
		SetUsername(o.username).
		SetPassword(o.password).
		SetCleanSession(true).
		SetProtocolVersion(4). // no fallback to 3.1: one attempt per connect
		SetKeepAlive(30 * time.Second).
		SetAutoReconnect(o.reconnect).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			c.msgs <- received{m.Topic(), append([]byte(nil), m.Payload()...)}
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	if !o.noWill {
		topic, payload, err := mqttproto.Will(id)
		if err != nil {
			t.Fatal(err)
		}
		if o.will != "" {
			topic = o.will
		}
		opts.SetBinaryWill(topic, payload, mqttproto.QoS, true)
	}
	subscribe := func(pc paho.Client) error {
		subs, err := id.Subscriptions()
		if err != nil {
			return err
		}
		filters := map[string]byte{}
		for _, s := range subs {
			filters[s] = mqttproto.QoS
		}
		tok := pc.SubscribeMultiple(filters, nil)
		if !tok.WaitTimeout(deadline) {
			return errors.New("subscribe timed out")
		}
		return tok.Error()
	}
	if o.subscribe && o.reconnect {
		// Subscribe again after every reconnect, as the protocol asks.
		opts.SetOnConnectHandler(func(pc paho.Client) { _ = subscribe(pc) })
	}
	if o.conn != nil {
		opts.SetCustomOpenConnectionFn(func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			nc, err := net.DialTimeout("tcp", uri.Host, 5*time.Second)
			if err == nil {
				o.conn.Store(&nc)
			}
			return nc, err
		})
	}
	c.c = paho.NewClient(opts)
	tok := c.c.Connect()
	if !tok.WaitTimeout(deadline) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.c.Disconnect(50) })
	if o.subscribe {
		if err := subscribe(c.c); err != nil {
			t.Fatalf("%s: subscribe: %v", id, err)
		}
	}
	return c, nil
}

// mustDial connects a device with its secret, subscribes it to its own
// topics and publishes its online state.
func mustDial(t testing.TB, addr string, d testDevice) *client {
	t.Helper()
	c, err := dial(t, d.proto(), clientOpts{addr: addr, password: d.secret, subscribe: true})
	if err != nil {
		t.Fatalf("connect %s: %v", d.proto(), err)
	}
	c.state(true)
	return c
}

// publish publishes payload on topic with QoS 1 and waits for the PUBACK.
func (c *client) publish(topic string, payload []byte, retain bool) {
	c.t.Helper()
	tok := c.c.Publish(topic, mqttproto.QoS, retain, payload)
	if !tok.WaitTimeout(deadline) {
		c.t.Fatalf("publish %s: timed out", topic)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("publish %s: %v", topic, err)
	}
}

// tap publishes a tap of card at door with request ID rid.
func (c *client) tap(rid string, door access.ID, card access.CardNumber) {
	c.t.Helper()
	b, err := mqttproto.Tap{RequestID: rid, Door: door, Card: card, Time: time.Now()}.Marshal()
	if err != nil {
		c.t.Fatal(err)
	}
	c.publish(c.id.Topic(mqttproto.ChannelTap).String(), b, false)
}

// state publishes the device's online state, retained.
func (c *client) state(online bool) {
	c.t.Helper()
	st := mqttproto.State{Online: online}
	if online {
		st.Firmware = "test-1.0"
	}
	b, err := st.Marshal()
	if err != nil {
		c.t.Fatal(err)
	}
	c.publish(c.id.Topic(mqttproto.ChannelState).String(), b, true)
}

// next returns the next message the client received, failing at the
// deadline.
func (c *client) next() received {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(deadline):
		c.t.Fatalf("%s: no message within %v", c.id, deadline)
		return received{}
	}
}

// decision returns the next message, which must be a decision for rid.
func (c *client) decision(rid string) (mqttproto.Decision, []byte) {
	c.t.Helper()
	m := c.next()
	if want := c.id.Topic(mqttproto.ChannelDecision).String(); m.topic != want {
		c.t.Fatalf("got message on %s, want a decision on %s: %s", m.topic, want, m.payload)
	}
	d, err := mqttproto.DecodeDecision(m.payload)
	if err != nil {
		c.t.Fatalf("decode decision: %v", err)
	}
	if d.RequestID != rid {
		c.t.Fatalf("got decision for %q, want %q", d.RequestID, rid)
	}
	return d, m.payload
}

// cmd returns the next message, which must be a door command.
func (c *client) cmd() mqttproto.DoorCmd {
	c.t.Helper()
	m := c.next()
	if want := c.id.Topic(mqttproto.ChannelCmd).String(); m.topic != want {
		c.t.Fatalf("got message on %s, want a command on %s: %s", m.topic, want, m.payload)
	}
	cmd, err := mqttproto.DecodeDoorCmd(m.payload)
	if err != nil {
		c.t.Fatalf("decode command: %v", err)
	}
	return cmd
}

// none fails if the client has received anything not yet read.
func (c *client) none() {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		c.t.Fatalf("%s: unexpected message on %s: %s", c.id, m.topic, m.payload)
	default:
	}
}

// mosquitto is a Mosquitto broker run for a test on a loopback port.
type mosquitto struct {
	t    testing.TB
	bin  string
	conf string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	log  *slog.Logger
}

// startMosquitto runs Mosquitto on a free loopback port until the test
// ends, or skips the test when it is not installed.
func startMosquitto(t testing.TB) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Skip("mosquitto is not installed (apt-get install mosquitto); skipping the external broker tests")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	m := &mosquitto{t: t, bin: bin, port: port, conf: filepath.Join(t.TempDir(), "mosquitto.conf"), log: testLogger(t).With("broker", "mosquitto")}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n", port)
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// addr returns the broker's host:port.
func (m *mosquitto) addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }

// start runs the broker and waits until it accepts connections.
func (m *mosquitto) start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "-c", m.conf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(r io.Reader, done chan struct{}) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			m.log.Debug(sc.Text())
		}
		_ = cmd.Wait()
		close(done)
	}(out, m.done)
	waitFor(m.t, "mosquitto to accept connections", func() bool {
		select {
		case <-m.done:
			m.t.Fatal("mosquitto exited at start")
		default:
		}
		c, err := net.DialTimeout("tcp", m.addr(), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// stop stops the broker and waits for it to exit.
func (m *mosquitto) stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(deadline):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// restart stops the broker and starts it again on the same port; with
// persistence off it forgets every session and subscription.
func (m *mosquitto) restart() {
	m.t.Helper()
	m.stop()
	m.start()
}

// external returns the option that points a gateway at m.
func (m *mosquitto) external(node string) gwOption {
	return func(c *mqttgw.Config) {
		c.BrokerURL = "tcp://" + m.addr()
		c.NodeID = node
	}
}
