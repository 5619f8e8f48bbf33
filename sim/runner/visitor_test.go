package runner

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/scenario"
	"github.com/gatehouse/gatehouse/sim/site"
)

// visitorScenario exercises every kiosk and dispenser step. The real edge
// cannot check visitors in yet (its gateway only logs kiosk and dispenser
// events), so it runs against the simulated site of reverse mode, which
// answers every kiosk request try_again and takes returned cards back.
const visitorScenario = `kiosk k1
dispenser d1 stack 20

expect kiosk k1 online
expect dispenser d1 state online stack ok no-faults no-card-held
scan qr GH1.eyJ2IjoxfQ.c2ln at kiosk k1
expect kiosk k1 shows try_again within 5s
scan document for "Anna Maria Eriksson" born 1974-08-12 expires +8760h at kiosk k1
expect kiosk k1 shows try_again within 5s
scan document "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<< L898902C36UTO7408122F1204159ZE184226B<<<<<10" at kiosk k1
expect kiosk k1 shows try_again within 5s
checkout card 4242 at kiosk k1
expect kiosk k1 shows try_again within 5s
return card 4242 at dispenser d1
expect dispenser d1 captured 4242 within 5s
fault dispenser d1 jam
expect dispenser d1 state jam within 5s
fault dispenser d1 clear
fault dispenser d1 empty
expect dispenser d1 state online stack empty no-faults within 5s
fault dispenser d1 clear
expect dispenser d1 state stack ok
fault kiosk k1 printer
expect kiosk k1 online
fault kiosk k1 clear
`

// mustVisitorDeployment runs the simulated site with kiosk k1 and
// dispenser d1, connects them as the runner does, and returns the
// deployment of src (only its kiosk and dispenser steps can run).
func mustVisitorDeployment(t *testing.T, src string) (*deployment, *site.Site) {
	t.Helper()
	f, err := site.Parse("visitor.site", []byte("site sim-hq\ndevice kiosk k1 secret ks\ndevice dispenser d1 secret ds\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := site.New(site.Config{File: f, MQTTListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	scn, err := scenario.Parse("visitor.scn", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{cfg: Config{ExpectTimeout: DefaultExpectTimeout}, log: slog.New(slog.DiscardHandler)}
	d := &deployment{r: r, scn: scn, base: time.Now(), kioskBy: map[string]*commissioned{}, dispBy: map[string]*commissioned{}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conf := func(kind mqttproto.Kind, id, secret string) device.Config {
		return device.Config{Broker: s.MQTTAddr(), Secret: secret, Device: mqttproto.Device{Site: "sim-hq", Kind: kind, ID: id}}
	}
	k, err := device.DialKiosk(ctx, device.KioskConfig{Config: conf(mqttproto.KindKiosk, "k1", "ks")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	disp, err := device.DialDispenser(ctx, device.DispenserConfig{Config: conf(mqttproto.KindDispenser, "d1", "ds"), Stack: scn.Dispensers[0].Stack})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disp.Close() })
	d.kioskBy["k1"] = &commissioned{kiosk: k}
	d.dispBy["d1"] = &commissioned{disp: disp}
	return d, s
}

// TestVisitorSteps runs every kiosk and dispenser step against the
// simulated site: each passes, and the site saw no protocol violation.
func TestVisitorSteps(t *testing.T) {
	d, s := mustVisitorDeployment(t, visitorScenario)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := d.steps(ctx, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Steps) != len(d.scn.Steps) {
		t.Fatalf("%d of %d steps ran, %d failed", len(rep.Steps), len(d.scn.Steps), rep.Failed())
	}
	for _, want := range []string{"qr_scanned sent, req k.", "id_scanned passport sent", "shows try_again (refused)", "captured 4242", "online, stack empty (0)", "online, stack ok (20)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
	// Every event reached the site (acknowledged) before it ends the run.
	k, disp := d.kioskBy["k1"].kiosk, d.dispBy["d1"].disp
	if err := k.Await(ctx, func(s device.KioskStatus) bool { return s.Acked == s.LastSeq }); err != nil {
		t.Fatal(err)
	}
	if err := disp.Await(ctx, func(s device.DispenserStatus) bool { return s.Acked == s.LastSeq }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, v := range s.Report().Violations {
		t.Errorf("violation: %s", v)
	}
}

// TestVisitorStepFailures checks that kiosk and dispenser steps fail with
// a reason that says why.
func TestVisitorStepFailures(t *testing.T) {
	d, _ := mustVisitorDeployment(t, `kiosk k1
dispenser d1
checkin at kiosk k1
scan qr GH1.x at kiosk k1
expect kiosk k1 shows checked_in within 5s
expect dispenser d1 dispensed within 50ms
fault kiosk k1 qr_scanner
scan qr GH1.y at kiosk k1
expect dispenser d1 state jam within 50ms
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := d.steps(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]string{
		0: "the kiosk knows no visit",
		2: "want checked_in",
		3: "not within 50ms",
		5: "device fault: qr_scanner",
		6: "not within 50ms",
	} {
		if s := rep.Steps[i]; s.Pass || !strings.Contains(s.Failure, want) {
			t.Errorf("step %d (%s): pass %v, outcome %q, failure %q; want a failure with %q", i+1, s.Step.Action(), s.Pass, s.Outcome, s.Failure, want)
		}
	}
	if s := rep.Steps[2]; s.Outcome != "shows try_again (refused)" {
		t.Errorf("outcome %q", s.Outcome)
	}
	if rep.Passed() != 2 {
		t.Errorf("%d passed, want 2", rep.Passed())
	}
}
