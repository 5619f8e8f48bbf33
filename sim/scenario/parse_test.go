package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// example is the lobby scenario of docs/sim.md.
const example = `# lobby.scn — names are local to the file; the runner creates IDs
site zone lobby anti-passback
door lobby-in zone lobby in
door lobby-out zone lobby out
door server-room high-security max-offline 15m
schedule office mon-fri 07:00-20:00 closed-on-holidays
group staff doors lobby-in lobby-out server-room
group visitors doors lobby-in lobby-out schedule office
person alice access-user offline-access card 1234 groups staff
person bob occupier tenant acme card 2345 groups visitors
reader r-lobby-in door lobby-in
reader r-server door server-room

at 0s   tap 1234 at r-lobby-in expect grant within 500ms
at 1s   tap 1234 at r-lobby-in expect deny anti_passback
at 2s   tap 1234 at r-lobby-out expect grant
at 3s   tap 9999 at r-lobby-in expect deny unknown_card
at 4s   revoke alice staff
at 5s   tap 1234 at r-server expect deny no_group
at 6s   suspend card 2345
at 7s   tap 2345 at r-lobby-in expect deny card_suspended
`

func TestParseExample(t *testing.T) {
	// The example names a reader r-lobby-out it never declares: the parser
	// says so, at its line.
	_, err := Parse("lobby.scn", []byte(example))
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Line != 16 || !strings.Contains(es[0].Msg, `unknown reader "r-lobby-out"`) {
		t.Fatalf("err = %v, want one error at line 16 about r-lobby-out", err)
	}
	if got := err.Error(); !strings.HasPrefix(got, "lobby.scn:16: ") {
		t.Errorf("error text %q", got)
	}

	src := strings.Replace(example, "reader r-server", "reader r-lobby-out door lobby-out\nreader r-server", 1)
	s, err := Parse("lobby.scn", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(s.Zones), 1; got != want || !s.Zones[0].AntiPassback {
		t.Errorf("zones %+v", s.Zones)
	}
	if d := s.Doors[2]; d.Name != "server-room" || !d.HighSecurity || d.MaxOffline != 15*time.Minute || d.Zone != "" {
		t.Errorf("door %+v", d)
	}
	if d := s.Doors[0]; d.Zone != "lobby" || d.Direction != access.DirIn {
		t.Errorf("door %+v", d)
	}
	sc := s.Schedules[0]
	if !sc.ClosedOnHolidays || len(sc.Rules) != 1 || len(sc.Rules[0].Days) != 5 || sc.Rules[0].Start != 7*60 || sc.Rules[0].End != 20*60 {
		t.Errorf("schedule %+v", sc)
	}
	if ws := sc.Windows(time.Now()); len(ws) != 5 || ws[0].Day != time.Monday {
		t.Errorf("windows %+v", ws)
	}
	bob := s.People[1]
	if bob.Kind != access.Occupier || bob.Tenant != "acme" || !reflect.DeepEqual(bob.Cards, []access.CardNumber{2345}) || !reflect.DeepEqual(bob.Groups, []string{"visitors"}) {
		t.Errorf("bob %+v", bob)
	}
	if !reflect.DeepEqual(s.Tenants, []string{"acme"}) {
		t.Errorf("tenants %v", s.Tenants)
	}
	if got, want := len(s.Steps), 8; got != want {
		t.Fatalf("%d steps, want %d", got, want)
	}
	first := s.Steps[0]
	if first.Kind != StepTap || first.Card != 1234 || first.Reader != "r-lobby-in" || !first.Expect.Grant || first.Within != 500*time.Millisecond || first.Line != 15 {
		t.Errorf("step 0 %+v", first)
	}
	if st := s.Steps[1]; st.Expect.Grant || st.Expect.Reason != access.ReasonAntiPassback || st.At != time.Second {
		t.Errorf("step 1 %+v", st)
	}
	if st := s.Steps[4]; st.Kind != StepRevoke || st.Person != "alice" || st.Group != "staff" {
		t.Errorf("step 4 %+v", st)
	}
	if got, want := s.Steps[0].Action(), "tap 1234 at r-lobby-in expect grant within 500ms"; got != want {
		t.Errorf("Action() = %q, want %q", got, want)
	}
	if got, want := s.Checks(), 6; got != want {
		t.Errorf("Checks() = %d, want %d", got, want)
	}
	if got, want := s.Span(), 7*time.Second; got != want {
		t.Errorf("Span() = %v, want %v", got, want)
	}
}

// TestScenarioFiles parses every scenario shipped in sim/scenarios, and
// checks each round-trips through Format.
func TestScenarioFiles(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.scn")
	if err != nil || len(files) < 2 {
		t.Fatalf("scenario files: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Parse(filepath.Base(f), b)
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, s)
		})
	}
}

func TestParseTiming(t *testing.T) {
	s, err := Parse("t", []byte(`door d
reader r door d
tap 1 at r
at 2s tap 2 at r
tap 3 at r
wait 1.5s
tap 4 at r
at 5s wait 1m
tap 5 at r
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []time.Duration
	for _, st := range s.Steps {
		got = append(got, st.At)
	}
	want := []time.Duration{0, 2 * time.Second, 2 * time.Second, 2 * time.Second, 3500 * time.Millisecond, 5 * time.Second, 65 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("step times %v, want %v", got, want)
	}
	if !s.Steps[1].Timed || s.Steps[2].Timed {
		t.Error("Timed wrong")
	}
	if s.Steps[0].Expect.Set {
		t.Error("a tap without expect has an expectation")
	}
}

func TestParseSchedules(t *testing.T) {
	s, err := Parse("t", []byte(`door d
schedule a always
schedule n never
schedule current now
schedule nn not-now closed-on-holidays
schedule w sat,sun 10:00-12:00 fri-mon 00:00-24:00 daily 13:00-14:00
reader r door d
tap 1 at r
`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 4, 23, 30, 0, 0, time.UTC) // a Wednesday
	days := func(ws []access.Window) map[time.Weekday]bool {
		m := map[time.Weekday]bool{}
		for _, w := range ws {
			if w.Start != 0 || w.End != access.MinutesPerDay {
				t.Errorf("window %+v is not all day", w)
			}
			m[w.Day] = true
		}
		return m
	}
	if got := days(s.Schedules[0].Windows(start)); len(got) != 7 {
		t.Errorf("always: %v", got)
	}
	if got := s.Schedules[1].Windows(start); len(got) != 0 {
		t.Errorf("never: %v", got)
	}
	now, notNow := days(s.Schedules[2].Windows(start)), days(s.Schedules[3].Windows(start))
	if len(now) != 5 || len(notNow) != 2 || !now[time.Wednesday] || !now[time.Monday] || !now[time.Friday] || !notNow[time.Saturday] || !notNow[time.Sunday] {
		t.Errorf("now %v, not-now %v", now, notNow)
	}
	// In every time zone, now allows the start and the day after it, and
	// not-now allows neither.
	for off := -12; off <= 14; off++ {
		loc := time.FixedZone("x", off*3600)
		for _, at := range []time.Time{start, start.Add(23 * time.Hour)} {
			sn := access.Schedule{Windows: s.Schedules[2].Windows(start)}
			snn := access.Schedule{Windows: s.Schedules[3].Windows(start)}
			if !sn.Allows(at, loc, nil) || snn.Allows(at, loc, nil) {
				t.Errorf("UTC%+d at %v: now allows %v, not-now allows %v", off, at, sn.Allows(at, loc, nil), snn.Allows(at, loc, nil))
			}
		}
	}
	if !s.Schedules[3].ClosedOnHolidays {
		t.Error("closed-on-holidays lost")
	}
	w := s.Schedules[4]
	if len(w.Rules) != 3 || !reflect.DeepEqual(w.Rules[1].Days, []time.Weekday{time.Sunday, time.Monday, time.Friday, time.Saturday}) || len(w.Rules[2].Days) != 7 {
		t.Errorf("rules %+v", w.Rules)
	}
	checkRoundTrip(t, s)
}

func TestParsePeople(t *testing.T) {
	s, err := Parse("t", []byte(`door d
group g doors d
person p access-user card 1 card 2 groups g valid-from -1h valid-until 2030-01-02T03:04:05Z card-valid-until +30m
person v visitor card 3 inactive
reader r door d
tap 1 at r
`))
	if err != nil {
		t.Fatal(err)
	}
	p := s.People[0]
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if got, want := p.ValidFrom.Resolve(start), start.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("valid-from %v, want %v", got, want)
	}
	if got, want := p.ValidUntil.Resolve(start), time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC); !got.Equal(want) {
		t.Errorf("valid-until %v, want %v", got, want)
	}
	if got := p.CardValidFrom.Resolve(start); !got.IsZero() {
		t.Errorf("unset card-valid-from resolves to %v", got)
	}
	if got, want := p.CardValidUntil.Resolve(start), start.Add(30*time.Minute); !got.Equal(want) {
		t.Errorf("card-valid-until %v, want %v", got, want)
	}
	if h, ok := s.Holder(2); !ok || h.Name != "p" {
		t.Errorf("Holder(2) = %v, %v", h, ok)
	}
	if v := s.People[1]; v.Kind != access.Visitor || !v.Inactive {
		t.Errorf("visitor %+v", v)
	}
	checkRoundTrip(t, s)
}

// TestParseErrors checks that each malformed line is reported at its line
// with a message that says what is wrong.
func TestParseErrors(t *testing.T) {
	const base = "zone z\ndoor d zone z in\ngroup g doors d\nperson p access-user card 1 groups g\nreader r door d\n" // lines 1-5
	for _, tc := range []struct {
		name, src string
		line      int
		want      string
	}{
		{"ErrUnknownKeyword", base + "frobnicate x\n", 6, `unknown keyword "frobnicate"`},
		{"ErrUnknownDoor", base + "reader r2 door nope\ntap 1 at r\n", 6, `unknown door "nope"`},
		{"ErrUnknownZone", "door d zone nope\n", 1, `unknown zone "nope"`},
		{"ErrUnknownGroup", base + "person q access-user groups nope\ntap 1 at r\n", 6, `unknown group "nope"`},
		{"ErrUnknownSchedule", base + "group h doors d schedule nope\ntap 1 at r\n", 6, `unknown schedule "nope"`},
		{"ErrUnknownReader", base + "tap 1 at nope\n", 6, `unknown reader "nope"`},
		{"ErrUnknownPerson", base + "revoke nope g\n", 6, `unknown person "nope"`},
		{"ErrDuplicateDoor", base + "door d\ntap 1 at r\n", 6, `duplicate door "d" (first declared on line 2)`},
		{"ErrDuplicatePerson", base + "person p access-user\ntap 1 at r\n", 6, `duplicate person "p"`},
		{"ErrDuplicateCard", base + "person q access-user card 1\ntap 1 at r\n", 6, `card 1 already belongs to p`},
		{"ErrBadDuration", base + "at 3x tap 1 at r\n", 6, `bad at duration "3x"`},
		{"ErrNegativeAt", base + "at -1s tap 1 at r\n", 6, `bad at duration "-1s"`},
		{"ErrBadWithin", base + "tap 1 at r expect grant within 0s\n", 6, `within 0s is out of range`},
		{"ErrBadMaxOffline", "door d max-offline soon\n", 1, `bad max-offline duration "soon"`},
		{"ErrBadReason", base + "tap 1 at r expect deny no_such_reason\n", 6, `unknown reason "no_such_reason" (want one of unknown_door, unknown_card`},
		{"ErrDenyGranted", base + "tap 1 at r expect deny granted\n", 6, `contradicts itself`},
		{"ErrExpectWhat", base + "tap 1 at r expect maybe\n", 6, `want "expect grant" or "expect deny [REASON]"`},
		{"ErrBadCard", base + "tap 0012 at r\n", 6, `bad card number "0012"`},
		{"ErrCardZero", base + "tap 0 at r\n", 6, `bad card number "0"`},
		{"ErrCardTooBig", base + "tap 18446744073709551616 at r\n", 6, `bad card number`},
		{"ErrForeignCard", base + "suspend card 99\n", 6, `card 99 belongs to no person of this scenario`},
		{"ErrBackInTime", base + "at 2s tap 1 at r\nat 1s tap 1 at r\n", 7, `at 1s is before the time of the previous step (2s)`},
		{"ErrBackInTimeWait", base + "at 2s wait 2s\nat 3s tap 1 at r\n", 7, `before the time of the previous step (4s)`},
		{"ErrSetupAfterSteps", base + "tap 1 at r\ndoor e\n", 7, `setup (door) must come before the first step`},
		{"ErrKeywordName", "door tap\n", 1, `"tap" is a keyword and cannot be a door name`},
		{"ErrBadName", "door -x\n", 1, `"-x" is not a valid door name`},
		{"ErrTrailing", base + "tap 1 at r expect grant soon\n", 6, `unexpected "soon"`},
		{"ErrMissing", base + "tap 1 at\n", 6, `missing reader name at the end of the line`},
		{"ErrRevokeNotHeld", base + "revoke p g\nrevoke p g\n", 7, `p has no grant of g to revoke at this point`},
		{"ErrGrantHeld", base + "grant p g\n", 6, `p already has g at this point`},
		{"ErrOccupierNoTenant", "person o occupier\n", 1, `an occupier needs a tenant`},
		{"ErrTenantNotOccupier", "person o access-user tenant t\n", 1, `only an occupier has a tenant`},
		{"ErrVisitorOffline", "person v visitor offline-access\n", 1, `visitors cannot have offline access`},
		{"ErrPersonKind", "person x admin\n", 1, `unknown person kind "admin"`},
		{"ErrPersonOption", "person x access-user badge 1\n", 1, `unknown person option "badge"`},
		{"ErrWindowBackwards", "person x access-user valid-from +1h valid-until -1h\n", 1, `the window ends before it starts`},
		{"ErrBadInstant", "person x access-user valid-until tomorrow\n", 1, `bad valid-until time "tomorrow"`},
		{"ErrBadRFC3339", "person x access-user valid-until 2026-13-01T00:00:00Z\n", 1, `bad valid-until time`},
		{"ErrDirectionNoZone", "door d in\n", 1, `direction in needs a zone`},
		{"ErrInAndOut", "zone z\ndoor d zone z in out\n", 2, `either in or out`},
		{"ErrDoorOptionTwice", "door d high-security high-security\n", 1, `"high-security" given twice`},
		{"ErrScheduleEmpty", "schedule s\n", 1, `has no windows`},
		{"ErrScheduleDays", "schedule s weekdays 07:00-19:00\n", 1, `bad days "weekdays"`},
		{"ErrScheduleSpan", "schedule s mon 7-19\n", 1, `bad time span "7-19"`},
		{"ErrScheduleBackwards", "schedule s mon 20:00-07:00\n", 1, `ends before it starts`},
		{"ErrScheduleMix", "schedule s never mon 07:00-08:00\n", 1, `"never" cannot be combined`},
		{"ErrGroupNoDoors", "group g\n", 1, `has no doors`},
		{"ErrGroupDoorTwice", "door d\ngroup g doors d d\n", 2, `door "d" listed twice`},
		{"ErrReaderBroker", "door d\nreader r door d broker 0\n", 2, `bad broker number "0"`},
		{"ErrWaitZero", base + "wait 0s\n", 6, `wait 0s is out of range`},
		{"ErrTooLong", base + "at 23h wait 2h\n", 6, `runs past 24h`},
		{"ErrControl", "door d\x01\n", 1, `control character`},
		{"ErrUTF8", "door \xff\n", 1, `not valid UTF-8`},
		{"ErrNoSteps", base, 5, `the scenario has no steps`},
		{"ErrLongLine", "door d\n" + strings.Repeat("x", MaxLineLen+1) + "\n", 2, `line longer than 4096 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.scn", []byte(tc.src))
			var es Errors
			if !errors.As(err, &es) || s != nil {
				t.Fatalf("Parse = %v, %v; want errors", s, err)
			}
			if es[0].Line != tc.line || !strings.Contains(es[0].Msg, tc.want) {
				t.Fatalf("first error %q at line %d; want %q at line %d\nall: %v", es[0].Msg, es[0].Line, tc.want, tc.line, err)
			}
		})
	}
}

// TestParseReportsEveryLine checks that Parse goes on after an error and
// reports every bad line, up to MaxErrors.
func TestParseReportsEveryLine(t *testing.T) {
	_, err := Parse("t", []byte("door d\nfoo\nbar\ndoor d\nreader r door d\ntap x at r\n"))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatal(err)
	}
	var lines []int
	for _, e := range es {
		lines = append(lines, e.Line)
	}
	if !reflect.DeepEqual(lines, []int{2, 3, 4, 6}) {
		t.Errorf("error lines %v, want [2 3 4 6]:\n%v", lines, err)
	}
	_, err = Parse("t", []byte(strings.Repeat("nonsense\n", 200)))
	if !errors.As(err, &es) || len(es) != MaxErrors {
		t.Errorf("%d errors, want %d", len(es), MaxErrors)
	}
}

func TestExpectMatch(t *testing.T) {
	for _, tc := range []struct {
		e      Expect
		grant  bool
		reason access.Reason
		want   bool
	}{
		{Expect{}, false, access.ReasonNoGroup, true},
		{Expect{Set: true, Grant: true}, true, access.ReasonGranted, true},
		{Expect{Set: true, Grant: true}, false, access.ReasonNoGroup, false},
		{Expect{Set: true}, false, access.ReasonNoGroup, true},
		{Expect{Set: true}, true, access.ReasonGranted, false},
		{Expect{Set: true, Reason: access.ReasonNoGroup}, false, access.ReasonNoGroup, true},
		{Expect{Set: true, Reason: access.ReasonNoGroup}, false, access.ReasonAntiPassback, false},
	} {
		if got := tc.e.Match(tc.grant, tc.reason); got != tc.want {
			t.Errorf("%+v.Match(%v, %v) = %v, want %v", tc.e, tc.grant, tc.reason, got, tc.want)
		}
	}
}

// checkRoundTrip checks that s formats to text that parses back to s.
func checkRoundTrip(t *testing.T, s *Scenario) {
	t.Helper()
	text := Format(s)
	s2, err := Parse(s.Name, []byte(text))
	if err != nil {
		t.Fatalf("formatted scenario does not parse: %v\n%s", err, text)
	}
	if a, b := stripLines(s), stripLines(s2); !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip changed the scenario:\n%s\nbefore: %+v\nafter:  %+v", text, a, b)
	}
	if again := Format(s2); again != text {
		t.Fatalf("Format is not stable:\n%s\n---\n%s", text, again)
	}
}

// stripLines returns a copy of s without line numbers and without the
// Timed marks (Format writes every step with its time).
func stripLines(s *Scenario) Scenario {
	c := *s
	c.Zones, c.Doors, c.Schedules, c.Groups, c.People, c.Readers, c.Steps = nil, nil, nil, nil, nil, nil, nil
	c.Controllers, c.Kiosks, c.Dispensers = nil, nil, nil
	for _, x := range s.Kiosks {
		y := *x
		y.Line = 0
		c.Kiosks = append(c.Kiosks, &y)
	}
	for _, x := range s.Dispensers {
		y := *x
		y.Line = 0
		c.Dispensers = append(c.Dispensers, &y)
	}
	for _, x := range s.Controllers {
		y := *x
		y.Line = 0
		c.Controllers = append(c.Controllers, &y)
	}
	for _, x := range s.Zones {
		y := *x
		y.Line = 0
		c.Zones = append(c.Zones, &y)
	}
	for _, x := range s.Doors {
		y := *x
		y.Line = 0
		c.Doors = append(c.Doors, &y)
	}
	for _, x := range s.Schedules {
		y := *x
		y.Line = 0
		c.Schedules = append(c.Schedules, &y)
	}
	for _, x := range s.Groups {
		y := *x
		y.Line = 0
		c.Groups = append(c.Groups, &y)
	}
	for _, x := range s.People {
		y := *x
		y.Line = 0
		c.People = append(c.People, &y)
	}
	for _, x := range s.Readers {
		y := *x
		y.Line = 0
		c.Readers = append(c.Readers, &y)
	}
	for _, x := range s.Steps {
		y := *x
		y.Line, y.Timed = 0, false
		c.Steps = append(c.Steps, &y)
	}
	return c
}

// controllerBase declares two door controllers and a reader (lines 1-7).
const controllerBase = `door lobby
door vault high-security max-offline 1s
group g doors lobby vault
person p access-user offline-access card 7001 groups g
controller lobby-ctl door lobby
controller vault-ctl door vault broker 2
reader r door lobby
`

func TestParseControllers(t *testing.T) {
	src := controllerBase + `
at 0s  expect cache at controller lobby-ctl within 15s
       badge card 7001 at door lobby via controller lobby-ctl expect grant within 1s
       sensor door_opened at door lobby via controller lobby-ctl
       cut controller lobby-ctl
       expect controller lobby-ctl offline within 2s
       badge card 7002 at door lobby via controller lobby-ctl expect deny unknown_card
       expect event offline_decision at controller lobby-ctl door lobby card 7002 deny unknown_card
       restart controller lobby-ctl
       restore controller lobby-ctl
       expect event offline_decision at controller lobby-ctl card 7001 grant acked within 10s
       expect event fail_secure at controller vault-ctl
       expect controller lobby-ctl online
       restart broker 1
       kill node 3
       restart node 3
       expect reader r online within 3s
`
	s, err := Parse("ctl.scn", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Controllers) != 2 || s.Controllers[1].Broker != 2 || s.Controllers[0].Door != "lobby" {
		t.Fatalf("controllers %+v %+v", s.Controllers[0], s.Controllers[1])
	}
	want := []struct {
		kind StepKind
		ok   func(st *Step) bool
	}{
		{StepExpectCache, func(st *Step) bool { return st.Controller == "lobby-ctl" && st.Within == 15*time.Second }},
		{StepBadge, func(st *Step) bool {
			return st.Card == 7001 && st.Door == "lobby" && st.Controller == "lobby-ctl" && st.Expect.Grant && st.Within == time.Second
		}},
		{StepSensor, func(st *Step) bool { return st.Event == "door_opened" && st.Door == "lobby" }},
		{StepCut, func(st *Step) bool { return st.Controller == "lobby-ctl" }},
		{StepExpectState, func(st *Step) bool { return st.State == "offline" && st.Within == 2*time.Second }},
		{StepBadge, func(st *Step) bool { return !st.Expect.Grant && st.Expect.Reason == access.ReasonUnknownCard }},
		{StepExpectEvent, func(st *Step) bool {
			return st.Event == "offline_decision" && st.Door == "lobby" && st.Card == 7002 && st.Expect.Set && !st.Expect.Grant && !st.Acked
		}},
		{StepRestart, func(st *Step) bool { return st.Controller == "lobby-ctl" }},
		{StepRestore, func(st *Step) bool { return st.Controller == "lobby-ctl" }},
		{StepExpectEvent, func(st *Step) bool {
			return st.Card == 7001 && st.Expect.Grant && st.Acked && st.Within == 10*time.Second
		}},
		{StepExpectEvent, func(st *Step) bool { return st.Event == "fail_secure" && st.Controller == "vault-ctl" }},
		{StepExpectState, func(st *Step) bool { return st.State == "online" && st.Within == 0 }},
		{StepRestartBroker, func(st *Step) bool { return st.N == 1 }},
		{StepKillNode, func(st *Step) bool { return st.N == 3 }},
		{StepRestartNode, func(st *Step) bool { return st.N == 3 }},
		{StepExpectState, func(st *Step) bool { return st.Reader == "r" && st.State == "online" && st.Within == 3*time.Second }},
	}
	if len(s.Steps) != len(want) {
		t.Fatalf("%d steps, want %d", len(s.Steps), len(want))
	}
	for i, w := range want {
		if st := s.Steps[i]; st.Kind != w.kind || !w.ok(st) || st.Line != 9+i {
			t.Errorf("step %d (line %d): %+v", i+1, st.Line, st)
		}
	}
	if got := s.Steps[9].Action(); got != "expect event offline_decision at controller lobby-ctl card 7001 grant acked within 10s" {
		t.Errorf("action %q", got)
	}
	checkRoundTrip(t, s)
}

func TestParseControllerErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		want      string
	}{
		{"ErrControllerDoor", "door d\ncontroller c door nope\n", 2, `unknown door "nope"`},
		{"ErrControllerTwice", "door d\ncontroller c door d\ncontroller c door d\n", 3, `duplicate controller "c" (first declared on line 2)`},
		{"ErrControllerNoDoor", "door d\ncontroller c\n", 2, `missing "door" at the end of the line`},
		{"ErrControllerBroker", "door d\ncontroller c door d broker x\n", 2, `bad broker number "x"`},
		{"ErrControllerName", "door d\ncontroller cut door d\n", 2, `"cut" is a keyword and cannot be a controller name`},
		{"ErrUnknownController", controllerBase + "badge card 1 at door lobby via controller nope\n", 8, `unknown controller "nope" (declare it with "controller nope door DOOR")`},
		{"ErrBadgeWrongDoor", controllerBase + "badge card 1 at door vault via controller lobby-ctl\n", 8, `controller lobby-ctl drives door lobby, not vault`},
		{"ErrBadgeNoVia", controllerBase + "badge card 1 at door lobby\n", 8, `missing "via" at the end of the line`},
		{"ErrBadgeCard", controllerBase + "badge card x at door lobby via controller lobby-ctl\n", 8, `bad card number "x"`},
		{"ErrBadgeExpect", controllerBase + "badge card 1 at door lobby via controller lobby-ctl expect perhaps\n", 8, `want "expect grant" or "expect deny [REASON]"`},
		{"ErrBadgeReason", controllerBase + "badge card 1 at door lobby via controller lobby-ctl expect deny nope\n", 8, `unknown reason "nope"`},
		{"ErrSensorEvent", controllerBase + "sensor door_exploded at door lobby via controller lobby-ctl\n", 8, `unknown sensor event "door_exploded" (want one of door_opened, door_closed`},
		{"ErrCutWhat", controllerBase + "cut wan\n", 8, `want "cut controller NAME" or "cut reader NAME", found "wan"`},
		{"ErrRestoreReader", controllerBase + "restore reader nope\n", 8, `unknown reader "nope"`},
		{"ErrRestartWhat", controllerBase + "restart site\n", 8, `want "restart controller NAME", "restart broker N" or "restart node N"`},
		{"ErrKillBroker", controllerBase + "kill broker 1\n", 8, `want "node", found "broker"`},
		{"ErrNodeNumber", controllerBase + "kill node 0\n", 8, `bad node number "0"`},
		{"ErrExpectWhat", controllerBase + "expect miracle\n", 8, `want "expect event", "expect controller", "expect reader", "expect cache", "expect kiosk" or "expect dispenser", found "miracle"`},
		{"ErrExpectReader", controllerBase + "expect reader nope online\n", 8, `unknown reader "nope"`},
		{"ErrEventType", controllerBase + "expect event door_exploded at controller lobby-ctl\n", 8, `unknown event type "door_exploded"`},
		{"ErrEventOption", controllerBase + "expect event offline_decision at controller lobby-ctl soon\n", 8, `unknown event option "soon"`},
		{"ErrEventCardNotDecision", controllerBase + "expect event door_opened at controller lobby-ctl card 1\n", 8, `apply to offline_decision events only`},
		{"ErrEventTwice", controllerBase + "expect event offline_decision at controller lobby-ctl grant deny\n", 8, `"deny" given twice`},
		{"ErrEventDoor", controllerBase + "expect event door_opened at controller lobby-ctl door vault\n", 8, `drives door lobby, not vault`},
		{"ErrState", controllerBase + "expect controller lobby-ctl asleep\n", 8, `unknown controller state "asleep" (want one of online, offline)`},
		{"ErrCacheAt", controllerBase + "expect cache lobby-ctl\n", 8, `want "at", found "lobby-ctl"`},
		{"ErrWithin", controllerBase + "expect cache at controller lobby-ctl within forever\n", 8, `bad within duration "forever"`},
		{"ErrTrailing", controllerBase + "kill node 1 now\n", 8, `unexpected "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.scn", []byte(tc.src))
			var es Errors
			if !errors.As(err, &es) || s != nil {
				t.Fatalf("Parse = %v, %v; want errors", s, err)
			}
			if es[0].Line != tc.line || !strings.Contains(es[0].Msg, tc.want) {
				t.Fatalf("first error %q at line %d; want %q at line %d\nall: %v", es[0].Msg, es[0].Line, tc.want, tc.line, err)
			}
			if !strings.HasPrefix(es[0].Error(), "t.scn:") {
				t.Errorf("error %q does not name the file and line", es[0].Error())
			}
		})
	}
}
