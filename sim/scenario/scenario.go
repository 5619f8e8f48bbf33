// Package scenario is the simulator's scenario format: a small line-based
// text a field engineer can read and write, describing a piece of a site
// (zones, doors, schedules, groups, people with their cards, readers, door
// controllers, visitor kiosks, card dispensers) and a timeline of steps
// (taps and badges with the decision expected, revocations, card
// suspensions, deactivations, waits, door sensor events, kiosk scans of QR
// codes and identity documents, check-ins and check-outs, returned cards,
// faults such as a cut link, a killed node or a jammed dispenser, and
// expectations about what devices did and showed). docs/sim.md is its reference, with the
// grammar and examples; sim/scenarios holds real scenarios.
//
// Names in a scenario are local to its file: the runner (sim/runner) makes a
// fresh ID for every entity when it applies the scenario to a site, so a
// scenario can run many times against the same site.
//
// Parse is strict: an unknown keyword, an unknown or duplicate name, a bad
// number, duration, time or reason, a step before its time, or anything else
// malformed is an *Error naming the file and line, and Parse reports every
// such line (up to MaxErrors) rather than stopping at the first. It never
// panics, whatever its input. Format writes a Scenario back in canonical
// form; Parse(Format(s)) gives s again, line numbers aside.
//
// Everything here is pure: no I/O and no clock (times relative to the start
// of a run are resolved with the start the caller passes). Values are not
// safe for concurrent mutation but may be shared read-only.
package scenario

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Limits of the format.
const (
	// MaxLineLen is the longest line, in bytes.
	MaxLineLen = 4096
	// MaxNameLen is the longest name of anything in a scenario.
	MaxNameLen = 64
	// MaxSpan is the latest time a step may be scheduled at, and the
	// longest wait: a scenario runs for less than a day, which is what
	// the schedules now and not-now rely on.
	MaxSpan = 24 * time.Hour
	// MaxWithin is the largest latency bound of a tap.
	MaxWithin = time.Minute
	// MaxOffline is the largest maximum offline time of a door (that of
	// the MQTT protocol).
	MaxOffline = 365 * 24 * time.Hour
	// MaxErrors is the most errors Parse reports; it stops after that.
	MaxErrors = 50
)

// Scenario is a parsed scenario file: its setup, in the order declared, and
// its steps, in the order they run.
type Scenario struct {
	// Name is the name the scenario was parsed under (its file name).
	Name string
	// Zones, Doors, Schedules, Groups, People and Readers are the setup.
	Zones     []*Zone
	Doors     []*Door
	Schedules []*Schedule
	Groups    []*Group
	People    []*Person
	Readers   []*Reader
	// Controllers are the simulated door controllers.
	Controllers []*Controller
	// Kiosks and Dispensers are the simulated visitor kiosks and card
	// dispensers/encoders.
	Kiosks     []*Kiosk
	Dispensers []*Dispenser
	// Tenants are the occupier companies named by people, in order of
	// first mention.
	Tenants []string
	// Steps are the timeline.
	Steps []*Step
}

// Zone is an area of the site: `zone NAME [anti-passback]`.
type Zone struct {
	Line         int
	Name         string
	AntiPassback bool
}

// Door is a door: `door NAME [zone Z [in|out]] [high-security] [max-offline D]`.
type Door struct {
	Line int
	Name string
	// Zone is the name of the door's zone, "" for none.
	Zone string
	// Direction says whether passing the door enters or leaves Zone.
	Direction access.Direction
	// HighSecurity marks a door that fails secure after MaxOffline cut off.
	HighSecurity bool
	// MaxOffline is how long a cut-off controller may keep deciding alone.
	MaxOffline time.Duration
}

// Special is a schedule whose windows depend on when the scenario runs.
type Special uint8

// The special schedules.
const (
	// SpecialNone is a schedule of fixed windows.
	SpecialNone Special = iota
	// SpecialAlways allows every day, all day.
	SpecialAlways
	// SpecialNever has no window: it allows nothing.
	SpecialNever
	// SpecialNow allows the whole of the five weekdays around the start of
	// the run (two before the UTC date of the start, that date, two after),
	// so it allows the run's taps in any site time zone for at least a day.
	SpecialNow
	// SpecialNotNow allows the whole of the other two weekdays, so it
	// denies the run's taps in any site time zone for at least a day.
	SpecialNotNow
)

var specialNames = []string{SpecialAlways: "always", SpecialNever: "never", SpecialNow: "now", SpecialNotNow: "not-now"}

// String returns the keyword of s ("" for SpecialNone).
func (s Special) String() string {
	if int(s) < len(specialNames) {
		return specialNames[s]
	}
	return ""
}

// Rule is one line of windows of a schedule: the same span of local time on
// each of Days.
type Rule struct {
	Days  []time.Weekday
	Start access.Minute
	End   access.Minute
}

// Schedule is a weekly schedule: `schedule NAME (always | never | now |
// not-now | DAYS HH:MM-HH:MM...) [closed-on-holidays]`.
type Schedule struct {
	Line             int
	Name             string
	Special          Special
	Rules            []Rule
	ClosedOnHolidays bool
}

// Windows returns the schedule's weekly windows for a run starting at
// start (only SpecialNow and SpecialNotNow depend on it).
func (s *Schedule) Windows(start time.Time) []access.Window {
	allDay := func(days ...time.Weekday) []access.Window {
		ws := make([]access.Window, 0, len(days))
		for _, d := range days {
			ws = append(ws, access.Window{Day: d, Start: 0, End: access.MinutesPerDay})
		}
		return ws
	}
	around := func(from, to int) []access.Window {
		today := int(start.UTC().Weekday())
		var days []time.Weekday
		for i := from; i <= to; i++ {
			days = append(days, time.Weekday((today+i+7)%7))
		}
		return allDay(days...)
	}
	switch s.Special {
	case SpecialAlways:
		return allDay(time.Sunday, time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday)
	case SpecialNever:
		return nil
	case SpecialNow:
		return around(-2, 2)
	case SpecialNotNow:
		return around(3, 4)
	}
	var ws []access.Window
	for _, r := range s.Rules {
		for _, d := range r.Days {
			ws = append(ws, access.Window{Day: d, Start: r.Start, End: r.End})
		}
	}
	return ws
}

// Group is an access group: `group NAME doors D... [schedule S]`.
type Group struct {
	Line  int
	Name  string
	Doors []string
	// Schedule is the name of the group's schedule, "" for always.
	Schedule string
}

// Instant is a time in a scenario: either absolute (RFC 3339) or relative
// to the start of the run (a signed duration such as -1h or +30m). The
// zero value is unset.
type Instant struct {
	// Set reports that the instant was given.
	Set bool
	// Abs is the absolute time, when not zero.
	Abs time.Time
	// Rel is the offset from the start of the run, when Abs is zero.
	Rel time.Duration
}

// Resolve returns the instant for a run starting at start, or the zero
// time when i is unset.
func (i Instant) Resolve(start time.Time) time.Time {
	switch {
	case !i.Set:
		return time.Time{}
	case !i.Abs.IsZero():
		return i.Abs
	}
	return start.Add(i.Rel)
}

// Person is a cardholder: `person NAME KIND [tenant T] [offline-access]
// [inactive] [card N]... [groups G...] [valid-from I] [valid-until I]
// [card-valid-from I] [card-valid-until I]`.
type Person struct {
	Line int
	Name string
	// Kind is access.AccessUser, access.Occupier or access.Visitor.
	Kind access.PersonKind
	// Tenant names the occupier company of an occupier user.
	Tenant        string
	OfflineAccess bool
	Inactive      bool
	Cards         []access.CardNumber
	// Groups are the groups the person is granted when the run starts.
	Groups                []string
	ValidFrom, ValidUntil Instant
	// CardValidFrom and CardValidUntil bound the validity of every card of
	// the person.
	CardValidFrom, CardValidUntil Instant
}

// Reader is a simulated card reader: `reader NAME door D [broker N]`.
type Reader struct {
	Line int
	Name string
	Door string
	// Broker, when not zero, pins the reader to the Broker-th broker
	// address the runner is given (1-based); zero means round-robin.
	Broker int
}

// Controller is a simulated door controller: `controller NAME door D
// [broker N]`. It drives one door (a site's device serves one door).
type Controller struct {
	Line int
	Name string
	Door string
	// Broker is as for Reader.
	Broker int
}

// Kiosk is a simulated visitor kiosk: `kiosk NAME [broker N]`.
type Kiosk struct {
	Line int
	Name string
	// Broker is as for Reader.
	Broker int
}

// Dispenser is a simulated card dispenser and encoder: `dispenser NAME
// [stack N] [broker N]`.
type Dispenser struct {
	Line int
	Name string
	// Stack is the number of blank cards at the start; zero means the
	// simulator's default.
	Stack int
	// Broker is as for Reader.
	Broker int
}

// MaxStack is the largest card stack of a dispenser.
const MaxStack = 10000

// Document is an identity document whose machine-readable zone the
// runner generates: `for NAME born DATE expires DATE [number N] [id-card]`.
type Document struct {
	// Name is the holder's name as printed, given names first: the last
	// word is the surname.
	Name string
	// Born is the date of birth (UTC midnight).
	Born time.Time
	// Expires is the last valid day: a date, or an offset from the start
	// of the run.
	Expires Instant
	// Number is the document number (1 to 9 of A-Z 0-9); empty: the
	// runner derives one from the name.
	Number string
	// IDCard makes a TD1 identity card instead of a TD3 passport.
	IDCard bool
}

// StepKind is what a step does.
type StepKind uint8

// The step kinds.
const (
	// StepTap presents Card at Reader and checks Expect.
	StepTap StepKind = iota + 1
	// StepGrant grants Person the Group.
	StepGrant
	// StepRevoke removes Person's grant of Group.
	StepRevoke
	// StepSuspendCard suspends Card.
	StepSuspendCard
	// StepActivateCard makes Card active again.
	StepActivateCard
	// StepDeactivate makes Person inactive.
	StepDeactivate
	// StepActivate makes Person active again.
	StepActivate
	// StepWait waits Wait before the next step.
	StepWait
	// StepBadge presents Card at Door of Controller and checks Expect.
	StepBadge
	// StepSensor makes Controller report Event at Door.
	StepSensor
	// StepCut cuts the link of Controller or Reader to its broker.
	StepCut
	// StepRestore restores the link of Controller or Reader.
	StepRestore
	// StepRestart restarts Controller on its own storage.
	StepRestart
	// StepRestartBroker restarts broker N.
	StepRestartBroker
	// StepKillNode kills edge node N.
	StepKillNode
	// StepRestartNode starts edge node N again.
	StepRestartNode
	// StepExpectEvent waits up to Within for Controller to have made an
	// event matching Event, Door, Card and Expect (and, with Acked,
	// acknowledged by the site).
	StepExpectEvent
	// StepExpectState waits up to Within for Controller to be in State
	// ("online": not cut off from its site, or "offline"), or for Reader
	// to be connected ("online") or not ("offline").
	StepExpectState
	// StepExpectCache waits up to Within for Controller to hold an
	// offline cache of its door.
	StepExpectCache
	// StepScanQR makes Kiosk scan a QR code whose content is Token.
	StepScanQR
	// StepScanDocument makes Kiosk scan an identity document: the MRZ
	// lines, or a zone generated for Doc.
	StepScanDocument
	// StepCheckIn makes Kiosk ask to check in the visit of its latest
	// answer.
	StepCheckIn
	// StepCheckOut makes Kiosk ask to check out by Card or, without one,
	// the visit of its latest answer.
	StepCheckOut
	// StepFault sets or clears Fault at Kiosk or Dispenser.
	StepFault
	// StepReturnCard puts Card into the return slot of Dispenser.
	StepReturnCard
	// StepExpectShows waits up to Within for Kiosk to show the site's
	// answer to its latest request, with code Event.
	StepExpectShows
	// StepExpectDispenser waits up to Within for Dispenser to have done
	// Event (dispensed, encoded or captured), with Card when not zero.
	StepExpectDispenser
)

// IsExpect reports whether steps of kind k are expectations (they wait
// for something and count as checks).
func (k StepKind) IsExpect() bool {
	switch k {
	case StepExpectEvent, StepExpectState, StepExpectCache, StepExpectShows, StepExpectDispenser:
		return true
	}
	return false
}

// KioskFaults are the kiosk fault codes a fault step can set.
var KioskFaults = []string{"id_scanner", "qr_scanner", "printer", "screen"}

// DispenserFaults are what a fault step can do to a dispenser: jam it,
// empty its stack, or clear both.
var DispenserFaults = []string{"jam", "empty", "clear"}

// DispenserActions are what an expect dispenser step can wait for.
var DispenserActions = []string{"dispensed", "encoded", "captured"}

// DispenserConds are the words of an expect dispenser state step.
var DispenserConds = []string{"online", "offline", "jam", "no-faults", "card-held", "no-card-held", "capture-full"}

// SensorEvents are the door events a sensor step can cause, as the
// protocol names them.
var SensorEvents = []string{"door_opened", "door_closed", "request_to_exit", "forced_open", "held_open", "tamper", "tamper_cleared"}

// ExpectEvents are the door event types an expect event step can wait for.
var ExpectEvents = append(slices.Clone(SensorEvents), "offline_decision", "offline_started", "offline_ended", "fail_secure", "cmd_rejected")

// Expect is the decision a tap expects.
type Expect struct {
	// Set reports that the tap has an expectation.
	Set bool
	// Grant is the expected outcome.
	Grant bool
	// Reason, for a deny, is the expected reason; zero accepts any deny.
	Reason access.Reason
}

// Match reports whether a decision with grant and reason meets e (an unset
// expectation is met by any decision).
func (e Expect) Match(grant bool, reason access.Reason) bool {
	switch {
	case !e.Set:
		return true
	case e.Grant:
		return grant
	case grant:
		return false
	}
	return e.Reason == 0 || e.Reason == reason
}

// String returns e as written after "expect": "grant", "deny" or
// "deny REASON" ("" when unset).
func (e Expect) String() string {
	switch {
	case !e.Set:
		return ""
	case e.Grant:
		return "grant"
	case e.Reason == 0:
		return "deny"
	}
	return "deny " + e.Reason.String()
}

// Step is one step of the timeline: `[at OFFSET] ACTION`.
type Step struct {
	Line int
	// At is when the step is due, as an offset from the start of the run.
	// A step given without "at" is due at the previous step's time (plus
	// the previous step's wait), that is, as soon as the previous step is
	// done.
	At time.Duration
	// Timed reports that the step was written with "at".
	Timed bool
	Kind  StepKind
	// Card is the card of a tap, suspend or activate card.
	Card access.CardNumber
	// Reader is the reader of a tap.
	Reader string
	// Person and Group are those of a grant, revoke, deactivate or activate.
	Person, Group string
	// Expect is the decision a tap expects.
	Expect Expect
	// Within, when not zero, bounds the tap's latency.
	Within time.Duration
	// Wait is the duration of a wait.
	Wait time.Duration
	// Controller is the door controller of a badge, sensor, cut, restore,
	// restart or expectation.
	Controller string
	// Door is the door of a badge, a sensor event or an expected event.
	Door string
	// Event is the event type of a sensor step or an expected event.
	Event string
	// Acked makes an expected event wait for the site's acknowledgement.
	Acked bool
	// State is the state an expect controller, reader or kiosk step
	// waits for; for an expect dispenser state step, its conditions
	// separated by spaces ("online stack low jam").
	State string
	// N is the broker or node number of a fault.
	N int
	// Kiosk and Dispenser name the kiosk or dispenser of a step.
	Kiosk, Dispenser string
	// Token is the content of a scanned QR code.
	Token string
	// MRZ are the lines of a scanned document given as text.
	MRZ []string
	// Doc is a scanned document whose zone the runner generates.
	Doc *Document
	// Fault is the fault a fault step sets: a kiosk fault code or
	// "clear"; for a dispenser one of DispenserFaults.
	Fault string
}

// Action returns the step's action in canonical form, without its time:
// "tap 1234 at r-lobby-in expect grant within 500ms".
func (s *Step) Action() string {
	switch s.Kind {
	case StepTap:
		a := "tap " + s.Card.String() + " at " + s.Reader
		if s.Expect.Set {
			a += " expect " + s.Expect.String()
		}
		if s.Within != 0 {
			a += " within " + formatDuration(s.Within)
		}
		return a
	case StepGrant:
		return "grant " + s.Person + " " + s.Group
	case StepRevoke:
		return "revoke " + s.Person + " " + s.Group
	case StepSuspendCard:
		return "suspend card " + s.Card.String()
	case StepActivateCard:
		return "activate card " + s.Card.String()
	case StepDeactivate:
		return "deactivate " + s.Person
	case StepActivate:
		return "activate " + s.Person
	case StepWait:
		return "wait " + formatDuration(s.Wait)
	case StepBadge:
		a := "badge card " + s.Card.String() + " at door " + s.Door + " via controller " + s.Controller
		if s.Expect.Set {
			a += " expect " + s.Expect.String()
		}
		if s.Within != 0 {
			a += " within " + formatDuration(s.Within)
		}
		return a
	case StepSensor:
		return "sensor " + s.Event + " at door " + s.Door + " via controller " + s.Controller
	case StepCut, StepRestore:
		a := "cut "
		if s.Kind == StepRestore {
			a = "restore "
		}
		if s.Controller != "" {
			return a + "controller " + s.Controller
		}
		return a + "reader " + s.Reader
	case StepRestart:
		return "restart controller " + s.Controller
	case StepRestartBroker:
		return "restart broker " + strconv.Itoa(s.N)
	case StepKillNode:
		return "kill node " + strconv.Itoa(s.N)
	case StepRestartNode:
		return "restart node " + strconv.Itoa(s.N)
	case StepExpectEvent:
		a := "expect event " + s.Event + " at controller " + s.Controller
		if s.Door != "" {
			a += " door " + s.Door
		}
		if s.Card != 0 {
			a += " card " + s.Card.String()
		}
		if s.Expect.Set {
			a += " " + s.Expect.String()
		}
		if s.Acked {
			a += " acked"
		}
		return a + withinText(s.Within)
	case StepExpectState:
		if s.Reader != "" {
			return "expect reader " + s.Reader + " " + s.State + withinText(s.Within)
		}
		if s.Kiosk != "" {
			return "expect kiosk " + s.Kiosk + " " + s.State + withinText(s.Within)
		}
		if s.Dispenser != "" {
			return "expect dispenser " + s.Dispenser + " state " + s.State + withinText(s.Within)
		}
		return "expect controller " + s.Controller + " " + s.State + withinText(s.Within)
	case StepExpectCache:
		return "expect cache at controller " + s.Controller + withinText(s.Within)
	case StepScanQR:
		return "scan qr " + quoteText(s.Token) + " at kiosk " + s.Kiosk
	case StepScanDocument:
		if s.Doc == nil {
			return "scan document " + quoteText(strings.Join(s.MRZ, " ")) + " at kiosk " + s.Kiosk
		}
		a := "scan document for " + quoteText(s.Doc.Name) + " born " + s.Doc.Born.Format(time.DateOnly) +
			" expires " + formatDate(s.Doc.Expires)
		if s.Doc.Number != "" {
			a += " number " + s.Doc.Number
		}
		if s.Doc.IDCard {
			a += " id-card"
		}
		return a + " at kiosk " + s.Kiosk
	case StepCheckIn:
		return "checkin at kiosk " + s.Kiosk
	case StepCheckOut:
		if s.Card != 0 {
			return "checkout card " + s.Card.String() + " at kiosk " + s.Kiosk
		}
		return "checkout at kiosk " + s.Kiosk
	case StepFault:
		if s.Kiosk != "" {
			return "fault kiosk " + s.Kiosk + " " + s.Fault
		}
		return "fault dispenser " + s.Dispenser + " " + s.Fault
	case StepReturnCard:
		return "return card " + s.Card.String() + " at dispenser " + s.Dispenser
	case StepExpectShows:
		return "expect kiosk " + s.Kiosk + " shows " + s.Event + withinText(s.Within)
	case StepExpectDispenser:
		a := "expect dispenser " + s.Dispenser + " " + s.Event
		if s.Card != 0 {
			a += " " + s.Card.String()
		}
		return a + withinText(s.Within)
	}
	return "?"
}

// quoteText writes a value between double quotes, as the format reads it.
func quoteText(v string) string { return `"` + v + `"` }

// formatDate writes an instant as a date (YYYY-MM-DD) or a signed offset.
func formatDate(i Instant) string {
	if !i.Abs.IsZero() {
		return i.Abs.Format(time.DateOnly)
	}
	return formatInstant(i)
}

func withinText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return " within " + formatDuration(d)
}

// Checks returns the number of taps and badges with an expectation, plus
// the expect steps.
func (s *Scenario) Checks() int {
	n := 0
	for _, st := range s.Steps {
		if (st.Kind == StepTap || st.Kind == StepBadge) && st.Expect.Set || st.Kind.IsExpect() {
			n++
		}
	}
	return n
}

// Span returns when the last step is due.
func (s *Scenario) Span() time.Duration {
	if len(s.Steps) == 0 {
		return 0
	}
	last := s.Steps[len(s.Steps)-1]
	if last.Kind == StepWait {
		return last.At + last.Wait
	}
	return last.At
}

// Holder returns the person holding card n.
func (s *Scenario) Holder(n access.CardNumber) (*Person, bool) {
	for _, p := range s.People {
		for _, c := range p.Cards {
			if c == n {
				return p, true
			}
		}
	}
	return nil, false
}

// Controller returns the door controller named name.
func (s *Scenario) Controller(name string) (*Controller, bool) {
	for _, c := range s.Controllers {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// Door returns the door named name.
func (s *Scenario) Door(name string) (*Door, bool) {
	for _, d := range s.Doors {
		if d.Name == name {
			return d, true
		}
	}
	return nil, false
}

// Kiosk returns the kiosk named name.
func (s *Scenario) Kiosk(name string) (*Kiosk, bool) {
	for _, k := range s.Kiosks {
		if k.Name == name {
			return k, true
		}
	}
	return nil, false
}

// Dispenser returns the dispenser named name.
func (s *Scenario) Dispenser(name string) (*Dispenser, bool) {
	for _, d := range s.Dispensers {
		if d.Name == name {
			return d, true
		}
	}
	return nil, false
}
