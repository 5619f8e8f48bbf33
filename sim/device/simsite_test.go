package device

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	"github.com/gatehouse/gatehouse/sim/site"
)

// mustSimSite runs the simulated site (reverse mode) of src on a loopback
// port until the test ends, and returns it.
func mustSimSite(t *testing.T, src string) (*site.Site, *site.File) {
	t.Helper()
	f, err := site.Parse("test.site", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s, err := site.New(site.Config{File: f, MQTTListen: "127.0.0.1:0", Out: tWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, f
}

// do runs an operator command at the simulated site.
func do(t *testing.T, s *site.Site, f *site.File, cmd string) {
	t.Helper()
	c, err := site.ParseCommand(f, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Do(c); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
}

// TestAgainstSimSite runs a kiosk and a dispenser against the simulated
// site, which checks every message against the protocol: the kiosk's
// requests are answered (try_again: the simulated site has no visitor
// system) and its events acknowledged; the dispenser answers the
// operator's encode, dispense and capture with their request IDs, and a
// returned card is captured. The run ends without a violation.
func TestAgainstSimSite(t *testing.T) {
	s, f := mustSimSite(t, `site sim-hq
heartbeat 1s
device kiosk kiosk-1 secret k-secret
device dispenser disp-1 secret d-secret
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := DialKiosk(ctx, KioskConfig{Config: Config{Broker: s.MQTTAddr(), Secret: "k-secret", Log: testLog(t),
		Device: mqttproto.Device{Site: "sim-hq", Kind: mqttproto.KindKiosk, ID: "kiosk-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	d, err := DialDispenser(ctx, DispenserConfig{Config: Config{Broker: s.MQTTAddr(), Secret: "d-secret", Log: testLog(t),
		Device: mqttproto.Device{Site: "sim-hq", Kind: mqttproto.KindDispenser, ID: "disp-1"}}, Stack: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	qr, err := k.ScanQR(ctx, "GH1.not-a-real-token")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := k.Answer(ctx, qr, 10*time.Second); err != nil || r.Answer.OK || r.Answer.Code != "try_again" {
		t.Fatalf("answer %+v, %v", r, err)
	}
	lines, _ := Document{Type: mqttproto.DocIDCard, Surname: "Eriksson", GivenNames: "Anna", Number: "D23145890", Expiry: date("2031-01-01")}.MRZ()
	doc, err := k.ScanDocument(ctx, lines, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Answer(ctx, doc, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := k.Await(ctx, func(s KioskStatus) bool { return s.Acked == 2 && s.Buffered == 0 }); err != nil {
		t.Fatalf("kiosk events not acknowledged: %v", err)
	}

	do(t, s, f, "encode dispenser disp-1 card 4242")
	do(t, s, f, "dispense dispenser disp-1")
	if err := d.Await(ctx, func(s DispenserStatus) bool { return len(s.Dispensed) == 1 && s.Dispensed[0] == 4242 }); err != nil {
		t.Fatal(err)
	}
	if err := d.InsertCard(4242); err != nil {
		t.Fatal(err)
	}
	if err := d.Await(ctx, func(s DispenserStatus) bool { return len(s.Captured) == 1 && s.Captured[0] == 4242 }); err != nil {
		t.Fatalf("returned card not captured: %v", err)
	}
	d.Jam()
	do(t, s, f, "dispense dispenser disp-1")
	d.Clear()
	d.Empty()
	do(t, s, f, "encode dispenser disp-1 card 4243")
	if err := d.Await(ctx, func(s DispenserStatus) bool { return s.LastSeq > 0 && s.Acked == s.LastSeq && s.Buffered == 0 }); err != nil {
		t.Fatalf("dispenser events not all acknowledged: %v (%+v)", err, d.Status())
	}
	k.Close()
	d.Close()
	s.Close()
	rep := s.Report()
	for _, v := range rep.Violations {
		t.Errorf("violation: %s", v)
	}
	for _, dev := range rep.Devices {
		t.Logf("%+v", dev)
		if dev.Device == "kiosk/kiosk-1" && dev.NotSimulated != 2 {
			t.Errorf("kiosk: %d requests not simulated, want 2", dev.NotSimulated)
		}
	}
}
