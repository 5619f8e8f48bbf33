package site

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// waitFor bounds every wait of a test; it is a hang guard, not a timing
// assertion.
const waitFor = 15 * time.Second

// logWriter sends the timeline to t.Log until the test ends.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// MustSite parses src and runs it on loopback ports (MQTT, and CAN when
// withCAN); the site is closed when the test ends.
func MustSite(tb testing.TB, src string, withCAN bool) *Site {
	tb.Helper()
	f, err := Parse("test.site", []byte(src))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	w := &logWriter{t: tb}
	tb.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	cfg := Config{File: f, MQTTListen: "127.0.0.1:0", Out: w}
	if withCAN {
		cfg.CANListen = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := s.Open(context.Background()); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// await waits until cond holds for the site's report.
func await(tb testing.TB, s *Site, what string, cond func(*Report) bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Await(ctx, cond); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}

// received is a message a test device received.
type received struct {
	topic mqttproto.Topic
	msg   mqttproto.Message
}

// device is the DEVICE side in tests: a paho client speaking
// hardware/mqttproto, as a vendor's hardware would.
type device struct {
	tb  testing.TB
	dev mqttproto.Device
	c   paho.Client
	in  chan received
}

// devOpts change how a test device connects.
type devOpts struct {
	password string
	noWill   bool
}

// connectDevice connects a device to the site's broker. It returns the
// connect error (a refused password) instead of failing.
func connectDevice(tb testing.TB, s *Site, kind mqttproto.Kind, id string, o devOpts) (*device, error) {
	tb.Helper()
	d := &device{tb: tb, dev: mqttproto.Device{Site: s.f.Site, Kind: kind, ID: id}, in: make(chan received, 256)}
	opts := paho.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr()).
		SetClientID(d.dev.Username()).SetUsername(d.dev.Username()).SetPassword(o.password).
		SetCleanSession(true).SetKeepAlive(30 * time.Second).SetAutoReconnect(false).
		SetConnectTimeout(waitFor).SetOrderMatters(true)
	if !o.noWill {
		topic, payload, err := mqttproto.Will(d.dev)
		if err != nil {
			tb.Fatal(err)
		}
		opts.SetBinaryWill(topic, payload, mqttproto.QoS, true)
	}
	d.c = paho.NewClient(opts)
	tok := d.c.Connect()
	if !tok.WaitTimeout(waitFor) {
		tb.Fatal("connect: no answer")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { d.c.Disconnect(0) })
	return d, nil
}

// mustDevice connects a well-behaved device: subscribed to its own
// topics, its online state published, retained.
func mustDevice(tb testing.TB, s *Site, kind mqttproto.Kind, id, password string, st mqttproto.State) *device {
	tb.Helper()
	d, err := connectDevice(tb, s, kind, id, devOpts{password: password})
	if err != nil {
		tb.Fatalf("connect %s: %v", id, err)
	}
	d.subscribe()
	d.publish(mqttproto.ChannelState, st, mqttproto.QoS, true)
	return d
}

// subscribe subscribes to the device's own topics with QoS 1.
func (d *device) subscribe() {
	d.tb.Helper()
	subs, err := d.dev.Subscriptions()
	if err != nil {
		d.tb.Fatal(err)
	}
	for _, topic := range subs {
		d.subscribeTo(topic, mqttproto.QoS)
	}
}

// subscribeTo subscribes to filter and returns the SUBACK code.
func (d *device) subscribeTo(filter string, qos byte) byte {
	d.tb.Helper()
	tok := d.c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) {
		t, err := mqttproto.ParseTopic(m.Topic())
		if err != nil {
			d.tb.Errorf("device got a message on %q: %v", m.Topic(), err)
			return
		}
		msg, err := mqttproto.Decode(t, m.Payload())
		if err != nil {
			d.tb.Errorf("device got a payload it cannot decode on %s: %v", m.Topic(), err)
			return
		}
		d.in <- received{topic: t, msg: msg}
	})
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		d.tb.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	st := tok.(*paho.SubscribeToken)
	return st.Result()[filter]
}

// publish publishes a message on the device's own channel.
func (d *device) publish(ch mqttproto.Channel, m mqttproto.Message, qos byte, retain bool) {
	d.tb.Helper()
	b, err := m.Marshal()
	if err != nil {
		d.tb.Fatal(err)
	}
	d.publishRaw(d.dev.Topic(ch).String(), b, qos, retain)
}

// publishRaw publishes any payload on any topic.
func (d *device) publishRaw(topic string, payload []byte, qos byte, retain bool) {
	d.tb.Helper()
	tok := d.c.Publish(topic, qos, retain, payload)
	if !tok.WaitTimeout(waitFor) {
		d.tb.Fatalf("publish %s: no answer", topic)
	}
}

// next returns the next received message for which match is true,
// dropping others.
func (d *device) next(what string, match func(mqttproto.Message) bool) mqttproto.Message {
	d.tb.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case r := <-d.in:
			if match(r.msg) {
				return r.msg
			}
		case <-timer.C:
			d.tb.Fatalf("%s %s: no %s arrived", d.dev.Kind, d.dev.ID, what)
			return nil
		}
	}
}

// nextCmd returns the next door command of type typ.
func (d *device) nextCmd(typ mqttproto.DoorCmdType) mqttproto.DoorCmd {
	d.tb.Helper()
	return d.next(string(typ), func(m mqttproto.Message) bool {
		c, ok := m.(mqttproto.DoorCmd)
		return ok && c.Type == typ
	}).(mqttproto.DoorCmd)
}

// nextDecision returns the decision on request id.
func (d *device) nextDecision(id string) mqttproto.Decision {
	d.tb.Helper()
	return d.next("decision on "+id, func(m mqttproto.Message) bool {
		dec, ok := m.(mqttproto.Decision)
		return ok && dec.RequestID == id
	}).(mqttproto.Decision)
}

// violations lists a report's violations for a failure message.
func violations(r *Report) string {
	var b strings.Builder
	for _, v := range r.Violations {
		fmt.Fprintln(&b, v.String())
	}
	return b.String()
}
