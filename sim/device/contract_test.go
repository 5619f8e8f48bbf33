package device

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// broker is the site's side of a broker in the contract tests: where
// devices connect, and how the test, playing the site, publishes and
// subscribes.
type broker interface {
	addr() string
	publish(t testing.TB, topic string, payload []byte)
	subscribe(t testing.TB, filter string, fn func(topic string, payload []byte))
}

// mochiBroker is the embedded broker with the strict access rules of a
// site (startSite), its inline client playing the site.
type mochiBroker struct {
	s    *fakeSite
	subs atomic.Int32
}

func (b *mochiBroker) addr() string { return b.s.addr }

func (b *mochiBroker) publish(t testing.TB, topic string, payload []byte) {
	if err := b.s.srv.Publish(topic, payload, false, mqttproto.QoS); err != nil {
		t.Fatal(err)
	}
}

func (b *mochiBroker) subscribe(t testing.TB, filter string, fn func(string, []byte)) {
	err := b.s.srv.Subscribe(filter, int(100+b.subs.Add(1)), func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mosquittoBroker is a Mosquitto broker run for the test, a paho client
// playing the site.
type mosquittoBroker struct {
	port int
	site paho.Client
}

func (b *mosquittoBroker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

func (b *mosquittoBroker) publish(t testing.TB, topic string, payload []byte) {
	tok := b.site.Publish(topic, mqttproto.QoS, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (b *mosquittoBroker) subscribe(t testing.TB, filter string, fn func(string, []byte)) {
	tok := b.site.Subscribe(filter, mqttproto.QoS, func(_ paho.Client, m paho.Message) { fn(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

// startMosquitto runs Mosquitto on a free loopback port until the test
// ends (anonymous, no persistence), or skips the test when it is not
// installed.
func startMosquitto(t *testing.T) *mosquittoBroker {
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
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n", port), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
		}
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	b := &mosquittoBroker{port: port}
	waitFor(t, "mosquitto to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", b.addr(), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	b.site = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.addr()).SetClientID("site-under-test").
		SetCleanSession(true).SetOrderMatters(true))
	if tok := b.site.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("site client: %v", tok.Error())
	}
	t.Cleanup(func() { b.site.Disconnect(0) })
	return b
}

// siteDriver plays the site for one device: it records the device's
// events and states, decoded strictly, and sends it commands.
type siteDriver struct {
	t   *testing.T
	b   broker
	dev mqttproto.Device

	mu     sync.Mutex
	events []mqttproto.Message
	states []mqttproto.State
	bad    []string
}

func newSiteDriver(t *testing.T, b broker, dev mqttproto.Device) *siteDriver {
	s := &siteDriver{t: t, b: b, dev: dev}
	b.subscribe(t, dev.Topic(mqttproto.ChannelEvent).String(), func(topic string, payload []byte) {
		tp, _ := mqttproto.ParseTopic(topic)
		m, err := mqttproto.Decode(tp, payload)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.bad = append(s.bad, err.Error())
			return
		}
		s.events = append(s.events, m)
	})
	b.subscribe(t, dev.Topic(mqttproto.ChannelState).String(), func(_ string, payload []byte) {
		st, err := mqttproto.DecodeState(dev.Kind, payload)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.bad = append(s.bad, err.Error())
			return
		}
		s.states = append(s.states, st)
	})
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.bad) > 0 {
			t.Errorf("the device sent payloads that do not decode: %v", s.bad)
		}
	})
	return s
}

// cmd sends the device a command.
func (s *siteDriver) cmd(m mqttproto.Message) {
	s.t.Helper()
	b, err := m.Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	s.raw(string(b))
}

// raw sends the device's command topic any payload.
func (s *siteDriver) raw(payload string) {
	s.b.publish(s.t, s.dev.Topic(mqttproto.ChannelCmd).String(), []byte(payload))
}

// event waits for an event matching pred and returns the first.
func (s *siteDriver) event(what string, pred func(mqttproto.Message) bool) mqttproto.Message {
	s.t.Helper()
	var got mqttproto.Message
	waitFor(s.t, what, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, m := range s.events {
			if pred(m) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

// count returns how many events match pred.
func (s *siteDriver) count(pred func(mqttproto.Message) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.events {
		if pred(m) {
			n++
		}
	}
	return n
}

// state waits for a state matching pred.
func (s *siteDriver) state(what string, pred func(mqttproto.State) bool) {
	s.t.Helper()
	waitFor(s.t, what, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.states) > 0 && pred(s.states[len(s.states)-1])
	})
}

func kioskEv(typ mqttproto.KioskEventType, id string) func(mqttproto.Message) bool {
	return func(m mqttproto.Message) bool {
		e, ok := m.(mqttproto.KioskEvent)
		return ok && e.Type == typ && (id == "" || e.RequestID == id)
	}
}

func dispEv(typ mqttproto.DispenserEventType, id string) func(mqttproto.Message) bool {
	return func(m mqttproto.Message) bool {
		e, ok := m.(mqttproto.DispenserEvent)
		return ok && e.Type == typ && e.RequestID == id
	}
}

// brokers returns the brokers every contract test runs against.
func brokers() map[string]func(*testing.T) broker {
	return map[string]func(*testing.T) broker{
		"Embedded":  func(t *testing.T) broker { return &mochiBroker{s: startSite(t, "127.0.0.1:0")} },
		"Mosquitto": func(t *testing.T) broker { return startMosquitto(t) },
	}
}

const testVisit = access.ID("01JD8X9ZZZ0000000000000001")

// TestKioskContract round-trips every kiosk message over each broker: the
// online state, each request and its answers, acks and a resend, a fault,
// and commands the kiosk must refuse without changing anything.
func TestKioskContract(t *testing.T) {
	for name, mk := range brokers() {
		t.Run(name, func(t *testing.T) {
			b := mk(t)
			dev := mqttproto.Device{Site: testSite, Kind: mqttproto.KindKiosk, ID: "kiosk-1"}
			site := newSiteDriver(t, b, dev)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			k, err := DialKiosk(ctx, KioskConfig{Config: Config{Broker: b.addr(), Device: dev, Secret: "s", Log: testLog(t)}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { k.Close() })
			site.state("online state", func(st mqttproto.State) bool { return st.Online && st.Kiosk != nil && len(st.Kiosk.Faults) == 0 })

			// A QR scan, answered with the visit.
			qr, err := k.ScanQR(ctx, "GH1.eyJ2IjoxfQ.c2ln")
			if err != nil {
				t.Fatal(err)
			}
			e := site.event("qr_scanned", kioskEv(mqttproto.KioskQRScanned, qr)).(mqttproto.KioskEvent)
			if e.Seq != 1 || e.Token != "GH1.eyJ2IjoxfQ.c2ln" {
				t.Fatalf("qr_scanned %+v", e)
			}
			site.cmd(mqttproto.KioskCmd{Type: mqttproto.KioskShowResult, RequestID: qr, OK: true, Code: "invitation_valid", Message: "Welcome", Visit: testVisit})
			r, err := k.Answer(ctx, qr, 10*time.Second)
			if err != nil || !r.Answer.OK || r.Answer.Code != "invitation_valid" {
				t.Fatalf("answer %+v, %v", r, err)
			}
			// A repeat with another answer changes nothing (acted on once).
			site.cmd(mqttproto.KioskCmd{Type: mqttproto.KioskShowResult, RequestID: qr, OK: false, Code: "denied"})

			// A passport for the visit, a card being dispensed, check-in and
			// check-out.
			lines, _ := Document{GivenNames: "Anna", Surname: "Eriksson", Number: "L898902C3", Expiry: date("2031-01-01")}.MRZ()
			doc, err := k.ScanDocument(ctx, lines, k.Status().Visit)
			if err != nil {
				t.Fatal(err)
			}
			e = site.event("id_scanned", kioskEv(mqttproto.KioskIDScanned, doc)).(mqttproto.KioskEvent)
			if e.DocType != mqttproto.DocPassport || !slices.Equal(e.MRZ, lines) || e.Visit != testVisit || e.Seq != 2 {
				t.Fatalf("id_scanned %+v", e)
			}
			in, err := k.CheckIn(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if e := site.event("check_in", kioskEv(mqttproto.KioskCheckIn, in)).(mqttproto.KioskEvent); e.Visit != testVisit {
				t.Fatalf("check_in %+v", e)
			}
			site.cmd(mqttproto.KioskCmd{Type: mqttproto.KioskDispensing, RequestID: in, Dispenser: "disp-1"})
			site.cmd(mqttproto.KioskCmd{Type: mqttproto.KioskShowResult, RequestID: in, OK: true, Code: "checked_in"})
			if r, err := k.Answer(ctx, in, 10*time.Second); err != nil || r.Answer.Code != "checked_in" || r.Dispenser != "disp-1" {
				t.Fatalf("check-in answer %+v, %v", r, err)
			}
			out, err := k.CheckOut(ctx, "", 1234567)
			if err != nil {
				t.Fatal(err)
			}
			if e := site.event("check_out", kioskEv(mqttproto.KioskCheckOut, out)).(mqttproto.KioskEvent); e.Card != 1234567 || e.Visit != "" {
				t.Fatalf("check_out %+v", e)
			}
			if _, err := k.Answer(ctx, out, 50*time.Millisecond); !errors.Is(err, ErrNoAnswer) {
				t.Fatalf("unanswered check-out: %v, want ErrNoAnswer", err)
			}

			// A resend after seq 2 (the check-in, seq 3, comes again), then
			// an ack of everything.
			site.cmd(mqttproto.KioskCmd{Type: mqttproto.KioskAck, RequestID: "ack-1", Seq: 2, Resend: true})
			waitFor(t, "resent check_in", func() bool { return site.count(kioskEv(mqttproto.KioskCheckIn, in)) == 2 })
			site.cmd(mqttproto.KioskCmd{Type: mqttproto.KioskAck, RequestID: "ack-2", Seq: 4})
			if err := k.Await(ctx, func(s KioskStatus) bool { return s.Acked == 4 && s.Buffered == 0 }); err != nil {
				t.Fatal(err)
			}

			// Commands the kiosk refuses; nothing else changes.
			before := k.Status()
			site.raw(`{not json`)
			site.raw(`{"v":1,"type":"show_result","request_id":"bad-1","ok":true}`)                                                                              // no code
			site.raw(`{"v":2,"type":"show_result","request_id":"bad-2","ok":true,"code":"checked_in"}`)                                                          // version 2
			site.raw(`{"v":1,"type":"explode","request_id":"bad-3"}`)                                                                                            // unknown type
			site.cmd(mqttproto.KioskCmd{Type: mqttproto.KioskShowResult, RequestID: "bad-4", OK: true, Code: "checked_in", Visit: "01JD8X9ZZZ0000000000000009"}) // never asked
			for _, id := range []string{"bad-1", "bad-2", "bad-3", "bad-4"} {
				site.event("cmd_rejected "+id, kioskEv(mqttproto.KioskCmdRejected, id))
			}
			if err := k.Await(ctx, func(s KioskStatus) bool { return len(s.Refused) == len(before.Refused)+5 }); err != nil {
				t.Fatalf("refusals: %v (%v)", err, k.Status().Refused)
			}
			after := k.Status()
			if after.Visit != testVisit || len(after.Requests) != len(before.Requests) || after.Requests[0].Answer.Code != "invitation_valid" {
				t.Fatalf("a refused command changed the kiosk: %+v", after)
			}
			t.Logf("refused: %q", after.Refused)

			// A faulty scanner: the state says so and scans are refused.
			if err := k.SetFault("qr_scanner", true); err != nil {
				t.Fatal(err)
			}
			site.state("fault in the state", func(st mqttproto.State) bool {
				return st.Kiosk != nil && slices.Equal(st.Kiosk.Faults, []string{"qr_scanner"})
			})
			if _, err := k.ScanQR(ctx, "GH1.x"); !errors.Is(err, ErrFault) {
				t.Fatalf("scan with a faulty scanner: %v", err)
			}
			k.ClearFaults()
			site.state("fault cleared", func(st mqttproto.State) bool { return st.Kiosk != nil && len(st.Kiosk.Faults) == 0 })

			if err := k.Close(); err != nil {
				t.Fatal(err)
			}
			site.state("offline state", func(st mqttproto.State) bool { return !st.Online })
		})
	}
}

// TestDispenserContract round-trips every dispenser message over each
// broker: encode, dispense, capture of a returned card, a repeated command
// answered again without acting, jam and empty faults, acks, and commands
// the dispenser must refuse without changing anything.
func TestDispenserContract(t *testing.T) {
	for name, mk := range brokers() {
		t.Run(name, func(t *testing.T) {
			b := mk(t)
			dev := mqttproto.Device{Site: testSite, Kind: mqttproto.KindDispenser, ID: "disp-1"}
			site := newSiteDriver(t, b, dev)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d, err := DialDispenser(ctx, DispenserConfig{Config: Config{Broker: b.addr(), Device: dev, Secret: "s", Log: testLog(t)}, Stack: 3, LowAt: 1, CaptureCapacity: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			site.state("online state", func(st mqttproto.State) bool {
				return st.Online && st.Dispenser != nil && st.Dispenser.Stack == mqttproto.StackOK && !st.Dispenser.CardHeld
			})

			// Encode, then hand the card out.
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserEncode, RequestID: "issue-1.1", Card: 1234567})
			if e := site.event("encoded", dispEv(mqttproto.DispenserEncoded, "issue-1.1")).(mqttproto.DispenserEvent); e.Card != 1234567 || e.Seq != 1 {
				t.Fatalf("encoded %+v", e)
			}
			site.state("card held", func(st mqttproto.State) bool { return st.Dispenser.CardHeld })
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserDispense, RequestID: "issue-1.2"})
			if e := site.event("dispensed", dispEv(mqttproto.DispenserDispensed, "issue-1.2")).(mqttproto.DispenserEvent); e.Card != 1234567 {
				t.Fatalf("dispensed %+v", e)
			}
			site.state("no card held, stack low", func(st mqttproto.State) bool {
				return !st.Dispenser.CardHeld && st.Dispenser.Stack == mqttproto.StackOK
			})
			// A repeated encode is answered with the original event again,
			// without taking another card.
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserEncode, RequestID: "issue-1.1", Card: 1234567})
			waitFor(t, "encoded again", func() bool { return site.count(dispEv(mqttproto.DispenserEncoded, "issue-1.1")) == 2 })
			if s := d.Status(); s.Stack != 2 || len(s.Encoded) != 1 || s.CardHeld || s.LastSeq != 2 {
				t.Fatalf("the repeat acted: %+v", s)
			}

			// Nothing to capture; then a returned card, captured.
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserCapture, RequestID: "cap-0"})
			site.event("capture refused", dispEv(mqttproto.DispenserCmdRejected, "cap-0"))
			if err := d.InsertCard(1234567); err != nil {
				t.Fatal(err)
			}
			site.event("card_inserted", func(m mqttproto.Message) bool {
				e, ok := m.(mqttproto.DispenserEvent)
				return ok && e.Type == mqttproto.DispenserCardInserted && e.Card == 1234567
			})
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserCapture, RequestID: "return-1"})
			if e := site.event("captured", dispEv(mqttproto.DispenserCaptured, "return-1")).(mqttproto.DispenserEvent); e.Card != 1234567 {
				t.Fatalf("captured %+v", e)
			}

			// A jam: reported, in the state, and every command answered jam.
			d.Jam()
			site.event("jam", dispEv(mqttproto.DispenserJam, ""))
			site.state("jam in the state", func(st mqttproto.State) bool { return slices.Equal(st.Dispenser.Faults, []string{"jam"}) })
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserDispense, RequestID: "issue-2.2"})
			site.event("dispense answered jam", dispEv(mqttproto.DispenserJam, "issue-2.2"))
			d.Clear()
			site.state("jam cleared", func(st mqttproto.State) bool { return len(st.Dispenser.Faults) == 0 })

			// Empty: reported, in the state, encode answered empty; a
			// refill cures it.
			d.Empty()
			site.event("empty", dispEv(mqttproto.DispenserEmpty, ""))
			site.state("stack empty", func(st mqttproto.State) bool { return st.Dispenser.Stack == mqttproto.StackEmpty })
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserEncode, RequestID: "issue-3.1", Card: 99})
			site.event("encode answered empty", dispEv(mqttproto.DispenserEmpty, "issue-3.1"))

			// Commands the dispenser refuses; nothing else changes.
			before := d.Status()
			site.raw(`{"v":1,"type":"encode","request_id":"bad-1"}`)              // no card
			site.raw(`{"v":1,"type":"encode","request_id":"bad-2","card":"007"}`) // leading zeros
			site.raw(`{"v":1,"type":"dispense","request_id":"bad-3","card":"1"}`) // a field dispense has not
			site.raw(`{"v":1,"type":"dispense","request_id":"bad-4","x":null}`)   // null
			site.raw(`garbage`)
			for _, id := range []string{"bad-1", "bad-2", "bad-3", "bad-4"} {
				site.event("cmd_rejected "+id, dispEv(mqttproto.DispenserCmdRejected, id))
			}
			if err := d.Await(ctx, func(s DispenserStatus) bool { return len(s.Refused) == len(before.Refused)+5 }); err != nil {
				t.Fatalf("refusals: %v (%v)", err, d.Status().Refused)
			}
			after := d.Status()
			if after.Stack != before.Stack || after.CardHeld || len(after.Encoded) != len(before.Encoded) || len(after.Dispensed) != 1 {
				t.Fatalf("a refused command changed the dispenser: %+v", after)
			}

			// Acks drop what is buffered.
			last := after.LastSeq
			site.cmd(mqttproto.DispenserCmd{Type: mqttproto.DispenserAck, RequestID: "ack-1", Seq: last})
			if err := d.Await(ctx, func(s DispenserStatus) bool { return s.Acked == last && s.Buffered == 0 }); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			site.state("offline state", func(st mqttproto.State) bool { return !st.Online })
		})
	}
}
