package runner

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
	statusv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/status/v1"
	"github.com/gatehouse/gatehouse/sim/device"
	"github.com/gatehouse/gatehouse/sim/scenario"
)

// visitorSpecs are the kiosks and dispensers of scn, to commission and
// connect (round-robin over the brokers with the readers, or pinned).
func visitorSpecs(scn *scenario.Scenario) []readerSpec {
	var specs []readerSpec
	for _, k := range scn.Kiosks {
		specs = append(specs, readerSpec{name: k.Name, broker: k.Broker, kind: mqttproto.KindKiosk})
	}
	for _, x := range scn.Dispensers {
		specs = append(specs, readerSpec{name: x.Name, broker: x.Broker, kind: mqttproto.KindDispenser, stack: x.Stack})
	}
	return specs
}

// execVisitor runs a step about a kiosk or a dispenser.
func (d *deployment) execVisitor(ctx context.Context, st *scenario.Step, res *StepResult) {
	fail := func(outcome string, err error) { res.Outcome, res.Failure = outcome, err.Error() }
	var k *device.Kiosk
	var disp *device.Dispenser
	if c := d.kioskBy[st.Kiosk]; c != nil {
		k = c.kiosk
	}
	if c := d.dispBy[st.Dispenser]; c != nil {
		disp = c.disp
	}
	if k == nil && disp == nil {
		res.Outcome, res.Failure = "?", "no such kiosk or dispenser in this run"
		return
	}
	// request publishes a kiosk request and reports how it went.
	request := func(what string, do func() (string, error)) {
		start := time.Now()
		id, err := do()
		res.Latency = time.Since(start)
		if err != nil {
			fail("not sent", err)
			return
		}
		res.Outcome, res.Pass = what+" sent, req "+id, true
	}
	switch st.Kind {
	case scenario.StepScanQR:
		request("qr_scanned", func() (string, error) { return k.ScanQR(ctx, st.Token) })
	case scenario.StepScanDocument:
		lines := st.MRZ
		if st.Doc != nil {
			var err error
			if lines, err = d.document(st.Doc).MRZ(); err != nil {
				fail("no document", err)
				return
			}
		}
		request("id_scanned "+string(device.DocTypeOf(lines)), func() (string, error) { return k.ScanDocument(ctx, lines, k.Status().Visit) })
	case scenario.StepCheckIn:
		request("check_in", func() (string, error) { return k.CheckIn(ctx, "") })
	case scenario.StepCheckOut:
		request("check_out", func() (string, error) { return k.CheckOut(ctx, "", st.Card) })
	case scenario.StepFault:
		switch {
		case k != nil && st.Fault == "clear":
			k.ClearFaults()
		case k != nil:
			if err := k.SetFault(st.Fault, true); err != nil {
				fail("not set", err)
				return
			}
		case st.Fault == "jam":
			disp.Jam()
		case st.Fault == "empty":
			disp.Empty()
		default:
			disp.Clear()
		}
		res.Outcome, res.Pass = "fault "+st.Fault, true
		if st.Fault == "clear" {
			res.Outcome = "faults cleared"
		}
	case scenario.StepReturnCard:
		if err := disp.InsertCard(st.Card); err != nil {
			fail("not inserted", err)
			return
		}
		res.Outcome, res.Pass = "card_inserted", true
	case scenario.StepExpectShows, scenario.StepExpectState, scenario.StepExpectDispenser:
		d.expectVisitor(ctx, k, disp, st, res)
	default:
		res.Outcome, res.Failure = "?", fmt.Sprintf("unknown step kind %d", st.Kind)
	}
}

// document is the device document of a scenario document: the last word
// of the name is the surname; without a number, one derived from the name.
func (d *deployment) document(doc *scenario.Document) device.Document {
	words := strings.Fields(doc.Name)
	out := device.Document{Surname: words[len(words)-1], GivenNames: strings.Join(words[:len(words)-1], " "),
		Number: doc.Number, Birth: doc.Born, Expiry: doc.Expires.Resolve(d.base).UTC().Truncate(24 * time.Hour)}
	if doc.IDCard {
		out.Type = mqttproto.DocIDCard
	}
	if out.Number == "" {
		h := fnv.New32a()
		h.Write([]byte(doc.Name))
		out.Number = fmt.Sprintf("X%08d", h.Sum32()%100_000_000)
	}
	return out
}

// expectVisitor waits, on the device's own change notifications, until
// the condition of an expect kiosk or dispenser step holds, at most its
// "within" (or Config.ExpectTimeout). A condition that can no longer come
// true (the kiosk showed another result) fails at once.
func (d *deployment) expectVisitor(ctx context.Context, k *device.Kiosk, disp *device.Dispenser, st *scenario.Step, res *StepResult) {
	wait := st.Within
	if wait == 0 {
		wait = d.r.cfg.ExpectTimeout
	}
	var final bool
	var check func() bool
	var await func(context.Context) error
	if k != nil {
		check = func() bool {
			var ok bool
			res.Outcome, ok, final = kioskCheck(k.Status(), st)
			return ok
		}
		await = func(ctx context.Context) error {
			return k.Await(ctx, func(device.KioskStatus) bool { return check() || final })
		}
	} else {
		check = func() bool {
			var ok bool
			res.Outcome, ok = dispenserCheck(disp.Status(), st)
			return ok
		}
		await = func(ctx context.Context) error {
			return disp.Await(ctx, func(device.DispenserStatus) bool { return check() })
		}
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := await(wctx)
	words := strings.Fields(st.State)
	if err == nil && len(d.site.members) > 0 && (slices.Contains(words, "online") || slices.Contains(words, "offline")) {
		// Against a real site, its status must agree that the device is
		// online (or offline).
		c := d.kioskBy[st.Kiosk]
		if c == nil {
			c = d.dispBy[st.Dispenser]
		}
		want := slices.Contains(words, "online")
		seen := ""
		err = d.siteSees(wctx, c.id, want, &seen)
		defer func() { res.Outcome += "; site: " + seen }()
	}
	res.Latency = time.Since(start)
	switch {
	case err == nil && check():
		res.Pass = true
	case err == nil || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		if final {
			res.Failure = "want " + st.Event
			return
		}
		res.Failure = "not within " + fmtDuration(wait)
	default:
		res.Failure = err.Error()
	}
}

// siteSees polls the status of every node of the site until one reports
// device id online (want) or none does (!want), or ctx ends. seen is set
// to what the site reports: "online at NODE" or "offline".
func (d *deployment) siteSees(ctx context.Context, id string, want bool, seen *string) error {
	poll := 2 * time.Millisecond
	for {
		*seen = "offline"
		for _, m := range d.site.members {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := d.r.status(m.api).GetStatus(cctx, connect.NewRequest(&statusv1.GetStatusRequest{}))
			cancel()
			if err != nil {
				continue // a node that is down sees no device
			}
			for _, site := range res.Msg.GetSites() {
				for _, dev := range site.GetDevices() {
					if dev.GetId() == id && dev.GetOnline() {
						*seen = "online at " + dev.GetNode()
					}
				}
			}
		}
		if (*seen != "offline") == want {
			return nil
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
		poll = min(2*poll, 50*time.Millisecond)
	}
}

// kioskCheck evaluates an expect kiosk step: what it sees, whether that
// meets the step, and whether it never can (the latest request has been
// answered with another code).
func kioskCheck(s device.KioskStatus, st *scenario.Step) (outcome string, ok, final bool) {
	if st.Kind == scenario.StepExpectState {
		now := "offline"
		if s.Connected {
			now = "online"
		}
		if len(s.Faults) > 0 {
			return now + ", faults " + strings.Join(s.Faults, ","), now == st.State, false
		}
		return now, now == st.State, false
	}
	r, made := s.Last()
	switch {
	case !made:
		return "no request made", false, false
	case !r.Answered:
		return "no answer to " + string(r.Event.Type), false, false
	}
	outcome = "shows " + r.Answer.Code
	if !r.Answer.OK {
		outcome += " (refused)"
	}
	if r.Dispenser != "" {
		outcome += ", card from " + r.Dispenser
	}
	return outcome, r.Answer.Code == st.Event, r.Answer.Code != st.Event
}

// dispenserCheck evaluates an expect dispenser step.
func dispenserCheck(s device.DispenserStatus, st *scenario.Step) (string, bool) {
	if st.Kind == scenario.StepExpectDispenser {
		var cards []access.CardNumber
		switch st.Event {
		case "dispensed":
			cards = s.Dispensed
		case "encoded":
			cards = s.Encoded
		default:
			cards = s.Captured
		}
		ok := len(cards) > 0 && (st.Card == 0 || slices.Contains(cards, st.Card))
		if len(cards) == 0 {
			return "none " + st.Event, false
		}
		var names []string
		for _, c := range cards {
			if c == 0 {
				names = append(names, "blank")
			} else {
				names = append(names, c.String())
			}
		}
		return st.Event + " " + strings.Join(names, ","), ok
	}
	online := "offline"
	if s.Connected {
		online = "online"
	}
	outcome := online + ", stack " + string(s.Level) + " (" + strconv.Itoa(s.Stack) + ")"
	if len(s.Faults) > 0 {
		outcome += ", " + strings.Join(s.Faults, ",")
	}
	if s.CardHeld {
		outcome += ", card held"
	}
	if s.CaptureFull {
		outcome += ", capture full"
	}
	words := strings.Fields(st.State)
	for i := 0; i < len(words); i++ {
		var holds bool
		switch words[i] {
		case "online", "offline":
			holds = words[i] == online
		case "stack":
			i++
			holds = string(s.Level) == words[i]
		case "jam":
			holds = s.Jammed
		case "no-faults":
			holds = len(s.Faults) == 0
		case "card-held":
			holds = s.CardHeld
		case "no-card-held":
			holds = !s.CardHeld
		case "capture-full":
			holds = s.CaptureFull
		}
		if !holds {
			return outcome, false
		}
	}
	return outcome, true
}
