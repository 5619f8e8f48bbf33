package scenario

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// Error is a problem at one line of a scenario file.
type Error struct {
	// File is the scenario's name, Line the 1-based line number.
	File string
	Line int
	// Msg says what is wrong, and how to put it right where that helps.
	Msg string
}

// Error returns "FILE:LINE: MSG".
func (e *Error) Error() string { return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg }

// Errors is every problem Parse found, in line order. Its Error text has
// one problem per line.
type Errors []*Error

// Error returns the problems, one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// ErrNoSteps reports a scenario without any step.
var ErrNoSteps = errors.New("the scenario has no steps")

// keywords are the words of the format; no name may be one of them.
var keywords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`site zone anti-passback door in out high-security max-offline
		schedule always never now not-now closed-on-holidays daily mon tue wed thu fri sat sun
		group doors person access-user occupier visitor tenant offline-access inactive card groups
		valid-from valid-until card-valid-from card-valid-until reader broker
		at tap expect grant deny within revoke suspend activate deactivate wait
		controller badge via sensor cut restore restart kill node event acked cache online offline
		kiosk dispenser stack scan qr document for born expires number id-card checkin checkout
		fault return shows state dispensed encoded captured`) {
		keywords[w] = true
	}
}

// Parse parses a scenario. name is used in errors and as Scenario.Name
// (usually the file name). It returns an Errors value listing every line
// at fault (at most MaxErrors), or an *Error wrapping ErrNoSteps when the
// scenario has no step. Parse never panics.
func Parse(name string, src []byte) (*Scenario, error) {
	p := &parser{
		s:       &Scenario{Name: name},
		zones:   map[string]*Zone{},
		doors:   map[string]*Door{},
		scheds:  map[string]*Schedule{},
		groups:  map[string]*Group{},
		people:  map[string]*Person{},
		readers: map[string]*Reader{},
		ctls:    map[string]*Controller{},
		kiosks:  map[string]*Kiosk{},
		disps:   map[string]*Dispenser{},
		tenants: map[string]bool{},
		cards:   map[access.CardNumber]string{},
		grants:  map[[2]string]bool{},
	}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 1024), MaxLineLen+2)
	sc.Split(scanLines)
	for sc.Scan() {
		p.line++
		if len(p.errs) >= MaxErrors {
			break
		}
		p.parseLine(sc.Text())
	}
	if err := sc.Err(); err != nil && len(p.errs) < MaxErrors {
		p.line++
		p.errorf("line longer than %d bytes", MaxLineLen)
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	if len(p.s.Steps) == 0 {
		return nil, Errors{{File: name, Line: max(p.line, 1), Msg: ErrNoSteps.Error() + " (add lines such as \"at 0s tap 1234 at r-door expect grant\")"}}
	}
	return p.s, nil
}

// scanLines is bufio.ScanLines, but refuses a line longer than MaxLineLen
// instead of growing its buffer.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	adv, tok, err := bufio.ScanLines(data, atEOF)
	if len(tok) > MaxLineLen || adv == 0 && tok == nil && len(data) > MaxLineLen {
		return 0, nil, errors.New("line too long")
	}
	return adv, tok, err
}

type parser struct {
	s    *Scenario
	line int
	errs Errors

	zones   map[string]*Zone
	doors   map[string]*Door
	scheds  map[string]*Schedule
	groups  map[string]*Group
	people  map[string]*Person
	readers map[string]*Reader
	ctls    map[string]*Controller
	kiosks  map[string]*Kiosk
	disps   map[string]*Dispenser
	tenants map[string]bool
	cards   map[access.CardNumber]string // card -> person
	grants  map[[2]string]bool           // (person, group) held at the current point of the timeline

	clock time.Duration // when the next untimed step is due
}

// lineError aborts the parsing of one line.
type lineError struct{}

func (p *parser) errorf(format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.s.Name, Line: p.line, Msg: fmt.Sprintf(format, args...)})
}

// toks is the cursor over one line's words.
type toks struct {
	p  *parser
	ws []string
	i  int
}

// fail records an error for the current line and abandons it.
func (t *toks) fail(format string, args ...any) {
	t.p.errorf(format, args...)
	panic(lineError{})
}

func (t *toks) more() bool { return t.i < len(t.ws) }

func (t *toks) peek() string {
	if t.i < len(t.ws) {
		return t.ws[t.i]
	}
	return ""
}

// next returns the next word; what says what was expected, for the error
// at the end of the line.
func (t *toks) next(what string) string {
	if t.i >= len(t.ws) {
		t.fail("missing %s at the end of the line", what)
	}
	w := t.ws[t.i]
	t.i++
	return w
}

// expect consumes the keyword kw.
func (t *toks) expect(kw string) {
	if w := t.next(strconv.Quote(kw)); w != kw {
		t.fail("want %q, found %s", kw, quote(w))
	}
}

// name consumes a new or existing name of what.
func (t *toks) name(what string) string {
	w := t.next(what + " name")
	if keywords[w] {
		t.fail("%s is a keyword and cannot be a %s name", quote(w), what)
	}
	if !validName(w) {
		t.fail("%s is not a valid %s name: 1 to %d characters of A-Z a-z 0-9 _ . -, starting with a letter or digit", quote(w), what, MaxNameLen)
	}
	return w
}

// end checks that the line has no words left.
func (t *toks) end() {
	if t.more() {
		t.fail("unexpected %s", quote(t.peek()))
	}
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '_' || c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// quote quotes a word for an error message, shortening a long one.
func quote(w string) string {
	if len(w) > 40 {
		w = w[:40] + "..."
	}
	return strconv.Quote(w)
}

func (p *parser) parseLine(line string) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	if !utf8.ValidString(line) {
		p.errorf("not valid UTF-8")
		return
	}
	ws := strings.Fields(line)
	if len(ws) == 0 {
		return
	}
	for _, w := range ws {
		for _, r := range w {
			if r < 0x20 || r == 0x7f {
				p.errorf("control character %U in the line", r)
				return
			}
		}
	}
	t := &toks{p: p, ws: ws}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(lineError); !ok {
				panic(r)
			}
		}
	}()
	kw := t.next("keyword")
	setup := true
	switch kw {
	case "site":
		t.expect("zone")
		p.zone(t)
	case "zone":
		p.zone(t)
	case "door":
		p.door(t)
	case "schedule":
		p.schedule(t)
	case "group":
		p.group(t)
	case "person":
		p.person(t)
	case "reader":
		p.reader(t)
	case "controller":
		p.controller(t)
	case "kiosk":
		p.kiosk(t)
	case "dispenser":
		p.dispenser(t)
	default:
		setup = false
	}
	if setup {
		if len(p.s.Steps) > 0 {
			t.fail("setup (%s) must come before the first step", kw)
		}
		return
	}
	t.i = 0
	p.step(t)
}

func (p *parser) zone(t *toks) {
	z := &Zone{Line: p.line, Name: t.name("zone")}
	if p.zones[z.Name] != nil {
		t.fail("duplicate zone %s (first declared on line %d)", quote(z.Name), p.zones[z.Name].Line)
	}
	p.zones[z.Name] = z
	if t.peek() == "anti-passback" {
		t.i++
		z.AntiPassback = true
	}
	t.end()
	p.s.Zones = append(p.s.Zones, z)
}

func (p *parser) door(t *toks) {
	d := &Door{Line: p.line, Name: t.name("door")}
	if p.doors[d.Name] != nil {
		t.fail("duplicate door %s (first declared on line %d)", quote(d.Name), p.doors[d.Name].Line)
	}
	p.doors[d.Name] = d
	seen := map[string]bool{}
	for t.more() {
		w := t.next("option")
		if seen[w] {
			t.fail("%s given twice", quote(w))
		}
		seen[w] = true
		switch w {
		case "zone":
			d.Zone = t.name("zone")
			if p.zones[d.Zone] == nil {
				t.fail("unknown zone %s (declare it with \"zone %s\" before this line)", quote(d.Zone), d.Zone)
			}
		case "in", "out":
			if seen["in"] && seen["out"] {
				t.fail("a door is either in or out, not both")
			}
			d.Direction = access.DirIn
			if w == "out" {
				d.Direction = access.DirOut
			}
		case "high-security":
			d.HighSecurity = true
		case "max-offline":
			d.MaxOffline = t.duration("max-offline", 0, MaxOffline)
		default:
			t.fail("unknown door option %s (want zone, in, out, high-security or max-offline)", quote(w))
		}
	}
	if d.Direction != access.DirNone && d.Zone == "" {
		t.fail("direction %s needs a zone: \"door %s zone ZONE %s\"", d.Direction, d.Name, d.Direction)
	}
	p.s.Doors = append(p.s.Doors, d)
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func (p *parser) schedule(t *toks) {
	s := &Schedule{Line: p.line, Name: t.name("schedule")}
	if p.scheds[s.Name] != nil {
		t.fail("duplicate schedule %s (first declared on line %d)", quote(s.Name), p.scheds[s.Name].Line)
	}
	p.scheds[s.Name] = s
	for t.more() {
		w := t.next("window")
		switch w {
		case "closed-on-holidays":
			if s.ClosedOnHolidays {
				t.fail("\"closed-on-holidays\" given twice")
			}
			s.ClosedOnHolidays = true
			continue
		case "always", "never", "now", "not-now":
			if s.Special != SpecialNone || len(s.Rules) > 0 {
				t.fail("%s cannot be combined with other windows", quote(w))
			}
			for i, n := range specialNames {
				if n == w {
					s.Special = Special(i)
				}
			}
			continue
		}
		if s.Special != SpecialNone {
			t.fail("%s cannot be combined with other windows", quote(s.Special.String()))
		}
		days := t.days(w)
		span := t.next("time span HH:MM-HH:MM")
		from, to, ok := strings.Cut(span, "-")
		if !ok {
			t.fail("bad time span %s: want HH:MM-HH:MM, such as 07:00-20:00", quote(span))
		}
		start, err1 := access.ParseMinute(from)
		end, err2 := access.ParseMinute(to)
		if err1 != nil || err2 != nil {
			t.fail("bad time span %s: want HH:MM-HH:MM between 00:00 and 24:00", quote(span))
		}
		if end <= start {
			t.fail("time span %s ends before it starts; a window never crosses midnight (write an overnight shift as two windows)", quote(span))
		}
		s.Rules = append(s.Rules, Rule{Days: days, Start: start, End: end})
	}
	if s.Special == SpecialNone && len(s.Rules) == 0 {
		t.fail("schedule %s has no windows: give DAYS HH:MM-HH:MM, or always, never, now or not-now", quote(s.Name))
	}
	p.s.Schedules = append(p.s.Schedules, s)
}

// days parses a day list: daily, a day (mon), a range (mon-fri, fri-mon)
// or a comma-separated list of those.
func (t *toks) days(w string) []time.Weekday {
	if w == "daily" {
		return []time.Weekday{time.Sunday, time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday}
	}
	var set [7]bool
	for _, part := range strings.Split(w, ",") {
		a, b, rng := strings.Cut(part, "-")
		da, ok1 := dayNames[a]
		db, ok2 := dayNames[b]
		if !ok1 || rng && !ok2 {
			t.fail("bad days %s: want daily, a day (mon), a range (mon-fri) or a list (sat,sun); days are sun mon tue wed thu fri sat", quote(w))
		}
		if !rng {
			db = da
		}
		for d := da; ; d = (d + 1) % 7 {
			if set[d] {
				t.fail("bad days %s: %s is listed twice", quote(w), d)
			}
			set[d] = true
			if d == db {
				break
			}
		}
	}
	var days []time.Weekday
	for d, on := range set {
		if on {
			days = append(days, time.Weekday(d))
		}
	}
	return days
}

func (p *parser) group(t *toks) {
	g := &Group{Line: p.line, Name: t.name("group")}
	if p.groups[g.Name] != nil {
		t.fail("duplicate group %s (first declared on line %d)", quote(g.Name), p.groups[g.Name].Line)
	}
	p.groups[g.Name] = g
	seen := map[string]bool{}
	for t.more() {
		w := t.next("option")
		if seen[w] {
			t.fail("%s given twice", quote(w))
		}
		seen[w] = true
		switch w {
		case "doors":
			for t.more() && !keywords[t.peek()] {
				d := t.name("door")
				if p.doors[d] == nil {
					t.fail("unknown door %s (declare it with \"door %s\" before this line)", quote(d), d)
				}
				for _, x := range g.Doors {
					if x == d {
						t.fail("door %s listed twice", quote(d))
					}
				}
				g.Doors = append(g.Doors, d)
			}
		case "schedule":
			g.Schedule = t.name("schedule")
			if p.scheds[g.Schedule] == nil {
				t.fail("unknown schedule %s (declare it with \"schedule %s ...\" before this line)", quote(g.Schedule), g.Schedule)
			}
		default:
			t.fail("unknown group option %s (want doors or schedule)", quote(w))
		}
	}
	if len(g.Doors) == 0 {
		t.fail("group %s has no doors: \"group %s doors DOOR...\"", quote(g.Name), g.Name)
	}
	p.s.Groups = append(p.s.Groups, g)
}

var personKinds = map[string]access.PersonKind{
	"access-user": access.AccessUser, "occupier": access.Occupier, "visitor": access.Visitor,
}

func (p *parser) person(t *toks) {
	ps := &Person{Line: p.line, Name: t.name("person")}
	if p.people[ps.Name] != nil {
		t.fail("duplicate person %s (first declared on line %d)", quote(ps.Name), p.people[ps.Name].Line)
	}
	p.people[ps.Name] = ps
	k := t.next("person kind (access-user, occupier or visitor)")
	kind, ok := personKinds[k]
	if !ok {
		t.fail("unknown person kind %s (want access-user, occupier or visitor)", quote(k))
	}
	ps.Kind = kind
	seen := map[string]bool{}
	for t.more() {
		w := t.next("option")
		if seen[w] && w != "card" {
			t.fail("%s given twice", quote(w))
		}
		seen[w] = true
		switch w {
		case "tenant":
			ps.Tenant = t.name("tenant")
		case "offline-access":
			ps.OfflineAccess = true
		case "inactive":
			ps.Inactive = true
		case "card":
			n := t.card()
			if other, dup := p.cards[n]; dup {
				t.fail("card %s already belongs to %s", n, other)
			}
			p.cards[n] = ps.Name
			ps.Cards = append(ps.Cards, n)
		case "groups":
			for t.more() && !keywords[t.peek()] {
				g := t.name("group")
				if p.groups[g] == nil {
					t.fail("unknown group %s (declare it with \"group %s doors ...\" before this line)", quote(g), g)
				}
				for _, x := range ps.Groups {
					if x == g {
						t.fail("group %s listed twice", quote(g))
					}
				}
				ps.Groups = append(ps.Groups, g)
			}
			if len(ps.Groups) == 0 {
				t.fail("\"groups\" names no group")
			}
		case "valid-from":
			ps.ValidFrom = t.instant(w)
		case "valid-until":
			ps.ValidUntil = t.instant(w)
		case "card-valid-from":
			ps.CardValidFrom = t.instant(w)
		case "card-valid-until":
			ps.CardValidUntil = t.instant(w)
		default:
			t.fail("unknown person option %s (want tenant, offline-access, inactive, card, groups, valid-from, valid-until, card-valid-from or card-valid-until)", quote(w))
		}
	}
	switch {
	case ps.Kind == access.Occupier && ps.Tenant == "":
		t.fail("an occupier needs a tenant: \"person %s occupier tenant COMPANY\"", ps.Name)
	case ps.Kind != access.Occupier && ps.Tenant != "":
		t.fail("only an occupier has a tenant")
	case ps.Kind == access.Visitor && ps.OfflineAccess:
		t.fail("visitors cannot have offline access")
	case ps.Kind == access.Visitor && len(ps.Groups) > 0:
		t.fail("visitors get access through visits, not groups (visits are not in the format yet)")
	}
	if err := checkWindow(ps.ValidFrom, ps.ValidUntil); err != "" {
		t.fail("valid-from and valid-until: %s", err)
	}
	if err := checkWindow(ps.CardValidFrom, ps.CardValidUntil); err != "" {
		t.fail("card-valid-from and card-valid-until: %s", err)
	}
	if (ps.CardValidFrom.Set || ps.CardValidUntil.Set) && len(ps.Cards) == 0 {
		t.fail("card validity given but %s has no card", ps.Name)
	}
	if ps.Tenant != "" && !p.tenants[ps.Tenant] {
		p.tenants[ps.Tenant] = true
		p.s.Tenants = append(p.s.Tenants, ps.Tenant)
	}
	for _, g := range ps.Groups {
		p.grants[[2]string{ps.Name, g}] = true
	}
	p.s.People = append(p.s.People, ps)
}

// checkWindow reports, as a message, a window that ends before it starts
// when both ends are of the same sort (both absolute or both relative).
func checkWindow(from, until Instant) string {
	if !from.Set || !until.Set {
		return ""
	}
	absFrom, absUntil := !from.Abs.IsZero(), !until.Abs.IsZero()
	switch {
	case absFrom && absUntil && !until.Abs.After(from.Abs),
		!absFrom && !absUntil && until.Rel <= from.Rel:
		return "the window ends before it starts"
	}
	return ""
}

func (p *parser) reader(t *toks) {
	r := &Reader{Line: p.line, Name: t.name("reader")}
	if p.readers[r.Name] != nil {
		t.fail("duplicate reader %s (first declared on line %d)", quote(r.Name), p.readers[r.Name].Line)
	}
	p.readers[r.Name] = r
	t.expect("door")
	r.Door = t.name("door")
	if p.doors[r.Door] == nil {
		t.fail("unknown door %s (declare it with \"door %s\" before this line)", quote(r.Door), r.Door)
	}
	if t.peek() == "broker" {
		t.i++
		r.Broker = t.number("broker")
	}
	t.end()
	p.s.Readers = append(p.s.Readers, r)
}

// number reads a broker or node number, 1 to 64.
func (t *toks) number(what string) int {
	w := t.next(what + " number")
	n, err := strconv.Atoi(w)
	if err != nil || n < 1 || n > 64 || w != strconv.Itoa(n) {
		t.fail("bad %s number %s: want 1 for the first --mqtt address, 2 for the second...", what, quote(w))
	}
	return n
}

func (p *parser) controller(t *toks) {
	c := &Controller{Line: p.line, Name: t.name("controller")}
	if p.ctls[c.Name] != nil {
		t.fail("duplicate controller %s (first declared on line %d)", quote(c.Name), p.ctls[c.Name].Line)
	}
	p.ctls[c.Name] = c
	t.expect("door")
	c.Door = t.name("door")
	if p.doors[c.Door] == nil {
		t.fail("unknown door %s (declare it with \"door %s\" before this line)", quote(c.Door), c.Door)
	}
	if t.peek() == "broker" {
		t.i++
		c.Broker = t.number("broker")
	}
	t.end()
	p.s.Controllers = append(p.s.Controllers, c)
}

func (p *parser) kiosk(t *toks) {
	k := &Kiosk{Line: p.line, Name: t.name("kiosk")}
	if p.kiosks[k.Name] != nil {
		t.fail("duplicate kiosk %s (first declared on line %d)", quote(k.Name), p.kiosks[k.Name].Line)
	}
	p.kiosks[k.Name] = k
	if t.peek() == "broker" {
		t.i++
		k.Broker = t.number("broker")
	}
	t.end()
	p.s.Kiosks = append(p.s.Kiosks, k)
}

func (p *parser) dispenser(t *toks) {
	d := &Dispenser{Line: p.line, Name: t.name("dispenser")}
	if p.disps[d.Name] != nil {
		t.fail("duplicate dispenser %s (first declared on line %d)", quote(d.Name), p.disps[d.Name].Line)
	}
	p.disps[d.Name] = d
	seen := map[string]bool{}
	for t.more() {
		w := t.next("option")
		if seen[w] {
			t.fail("%s given twice", quote(w))
		}
		seen[w] = true
		switch w {
		case "stack":
			v := t.next("stack size")
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxStack || v != strconv.Itoa(n) {
				t.fail("bad stack size %s: want 1 to %d cards (empty a stack with \"fault dispenser %s empty\")", quote(v), MaxStack, d.Name)
			}
			d.Stack = n
		case "broker":
			d.Broker = t.number("broker")
		default:
			t.fail("unknown dispenser option %s (want stack or broker)", quote(w))
		}
	}
	p.s.Dispensers = append(p.s.Dispensers, d)
}

// kioskName reads the name of a declared kiosk.
func (p *parser) kioskName(t *toks) string {
	n := t.name("kiosk")
	if p.kiosks[n] == nil {
		t.fail("unknown kiosk %s (declare it with \"kiosk %s\")", quote(n), n)
	}
	return n
}

// dispName reads the name of a declared dispenser.
func (p *parser) dispName(t *toks) string {
	n := t.name("dispenser")
	if p.disps[n] == nil {
		t.fail("unknown dispenser %s (declare it with \"dispenser %s\")", quote(n), n)
	}
	return n
}

// atKiosk reads "at kiosk KIOSK".
func (p *parser) atKiosk(t *toks) string {
	t.expect("at")
	t.expect("kiosk")
	return p.kioskName(t)
}

// text reads a value: one word, or words between double quotes, which
// are joined by single spaces. A value never contains a double quote.
func (t *toks) text(what string) string {
	w := t.next(what)
	if !strings.HasPrefix(w, `"`) {
		if strings.Contains(w, `"`) {
			t.fail("%s %s contains a double quote", what, quote(w))
		}
		return w
	}
	parts := []string{w[1:]}
	for !strings.HasSuffix(parts[len(parts)-1], `"`) {
		if !t.more() {
			t.fail("%s: missing closing double quote", what)
		}
		parts = append(parts, t.next(what))
	}
	v := strings.Join(parts, " ")
	v = v[:len(v)-1]
	switch {
	case strings.Contains(v, `"`):
		t.fail("%s %s contains a double quote", what, quote(v))
	case v == "":
		t.fail("empty %s", what)
	}
	return v
}

// date reads a date YYYY-MM-DD between 1900 and 2099 or, when offset is
// set, also a signed offset from the start of the run (+720h, -24h).
func (t *toks) date(what string, offset bool) Instant {
	w := t.next(what + " date")
	if d, err := time.Parse(time.DateOnly, w); err == nil {
		if d.Year() < 1900 || d.Year() > 2099 {
			t.fail("%s date %s is out of range (1900 to 2099)", what, w)
		}
		return Instant{Set: true, Abs: d}
	}
	d, err := time.ParseDuration(w)
	if !offset || err != nil || !strings.HasPrefix(w, "+") && !strings.HasPrefix(w, "-") {
		if offset {
			t.fail("bad %s date %s: want YYYY-MM-DD, or an offset from the start of the run such as +720h or -24h", what, quote(w))
		}
		t.fail("bad %s date %s: want YYYY-MM-DD", what, quote(w))
	}
	if d > 50*365*24*time.Hour || d < -50*365*24*time.Hour {
		t.fail("%s offset %s is out of range (at most 50 years)", what, w)
	}
	return Instant{Set: true, Rel: d}
}

// mrzShape checks lines as a machine-readable zone: 3 lines of 30, or 2
// lines of 36 or 44, of A-Z 0-9 and <. Check digits are not checked: a
// scenario may scan a bad document on purpose.
func (t *toks) mrzShape(lines []string) {
	n := len(lines[0])
	if !(len(lines) == 3 && n == 30 || len(lines) == 2 && (n == 36 || n == 44)) {
		t.fail("%d lines of %d characters is not a machine-readable zone: want 3 lines of 30 (TD1), or 2 of 36 (TD2) or 44 (TD3), separated by spaces", len(lines), n)
	}
	for i, l := range lines {
		if len(l) != n {
			t.fail("MRZ line %d has %d characters, want %d like the first", i+1, len(l), n)
		}
		for j := 0; j < len(l); j++ {
			if c := l[j]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '<') {
				t.fail("MRZ line %d: character %d %q is not one of A-Z 0-9 <", i+1, j+1, c)
			}
		}
	}
}

// document reads "for NAME born DATE expires DATE [number N] [id-card]".
func (p *parser) document(t *toks) *Document {
	d := &Document{Name: t.text("name")}
	if !strings.ContainsFunc(d.Name, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r > 0x7f }) {
		t.fail("name %s has no letter", quote(d.Name))
	}
	t.expect("born")
	d.Born = t.date("born", false).Abs
	t.expect("expires")
	d.Expires = t.date("expires", true)
	for t.peek() == "number" || t.peek() == "id-card" {
		switch t.next("option") {
		case "number":
			if d.Number != "" {
				t.fail("\"number\" given twice")
			}
			d.Number = t.next("document number")
			if len(d.Number) > 9 || strings.ContainsFunc(d.Number, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') }) {
				t.fail("bad document number %s: want 1 to 9 characters of A-Z 0-9", quote(d.Number))
			}
		case "id-card":
			if d.IDCard {
				t.fail("\"id-card\" given twice")
			}
			d.IDCard = true
		}
	}
	return d
}

// ctl reads the name of a declared controller.
func (p *parser) ctl(t *toks) string {
	n := t.name("controller")
	if p.ctls[n] == nil {
		t.fail("unknown controller %s (declare it with \"controller %s door DOOR\")", quote(n), n)
	}
	return n
}

// ctlDoor reads "at door DOOR via controller CTL" and checks the door is
// the controller's.
func (p *parser) ctlDoor(t *toks, st *Step) {
	t.expect("at")
	t.expect("door")
	st.Door = t.name("door")
	if p.doors[st.Door] == nil {
		t.fail("unknown door %s", quote(st.Door))
	}
	t.expect("via")
	t.expect("controller")
	st.Controller = p.ctl(t)
	if d := p.ctls[st.Controller].Door; d != st.Door {
		t.fail("controller %s drives door %s, not %s", st.Controller, d, st.Door)
	}
}

// expectation reads "grant" or "deny [REASON]" after "expect".
func (t *toks) expectation(e *Expect) {
	e.Set = true
	switch w := t.next("grant or deny"); w {
	case "grant":
		e.Grant = true
	case "deny":
		if t.more() && t.peek() != "within" && t.peek() != "acked" {
			w := t.next("reason")
			var r access.Reason
			if err := r.UnmarshalText([]byte(w)); err != nil {
				t.fail("unknown reason %s (want one of %s)", quote(w), denyReasons())
			}
			if r == access.ReasonGranted {
				t.fail("\"deny granted\" contradicts itself: write \"expect grant\"")
			}
			e.Reason = r
		}
	default:
		t.fail("want \"expect grant\" or \"expect deny [REASON]\", found %s", quote(w))
	}
}

// within reads an optional "within D".
func (t *toks) within() time.Duration {
	if t.peek() != "within" {
		return 0
	}
	t.i++
	return t.duration("within", time.Millisecond, MaxWithin)
}

// oneOf reads a word that must be one of allowed.
func (t *toks) oneOf(what string, allowed []string) string {
	w := t.next(what)
	if !slices.Contains(allowed, w) {
		t.fail("unknown %s %s (want one of %s)", what, quote(w), strings.Join(allowed, ", "))
	}
	return w
}

// expectStep parses what follows "expect" in a step.
func (p *parser) expectStep(t *toks, st *Step) {
	switch w := t.next("event, controller, reader or cache"); w {
	case "event":
		st.Kind = StepExpectEvent
		st.Event = t.oneOf("event type", ExpectEvents)
		t.expect("at")
		t.expect("controller")
		st.Controller = p.ctl(t)
		seen := map[string]bool{}
		for t.more() && t.peek() != "within" {
			o := t.next("option")
			if seen[o] || o == "deny" && seen["grant"] || o == "grant" && seen["deny"] {
				t.fail("%s given twice", quote(o))
			}
			seen[o] = true
			switch o {
			case "door":
				st.Door = t.name("door")
				if d := p.ctls[st.Controller].Door; d != st.Door {
					t.fail("controller %s drives door %s, not %s", st.Controller, d, st.Door)
				}
			case "card":
				st.Card = t.card()
			case "grant", "deny":
				t.i--
				t.expectation(&st.Expect)
			case "acked":
				st.Acked = true
			default:
				t.fail("unknown event option %s (want door, card, grant, deny, acked or within)", quote(o))
			}
		}
		if (st.Card != 0 || st.Expect.Set) && st.Event != "offline_decision" {
			t.fail("card, grant and deny apply to offline_decision events only")
		}
	case "controller":
		st.Kind = StepExpectState
		st.Controller = p.ctl(t)
		st.State = t.oneOf("controller state", []string{"online", "offline"})
	case "reader":
		st.Kind = StepExpectState
		st.Reader = t.name("reader")
		if p.readers[st.Reader] == nil {
			t.fail("unknown reader %s", quote(st.Reader))
		}
		st.State = t.oneOf("reader state", []string{"online", "offline"})
	case "cache":
		st.Kind = StepExpectCache
		t.expect("at")
		t.expect("controller")
		st.Controller = p.ctl(t)
	case "kiosk":
		st.Kiosk = p.kioskName(t)
		switch w := t.next("online, offline or shows"); w {
		case "online", "offline":
			st.Kind, st.State = StepExpectState, w
		case "shows":
			st.Kind = StepExpectShows
			st.Event = t.next("result code")
			if !validCode(st.Event) {
				t.fail("bad result code %s: want 1 to 64 characters of a-z 0-9 _, such as checked_in or try_again", quote(st.Event))
			}
		default:
			t.fail("want \"expect kiosk %s online\", \"offline\" or \"shows CODE\", found %s", st.Kiosk, quote(w))
		}
	case "dispenser":
		st.Dispenser = p.dispName(t)
		switch w := t.next("dispensed, encoded, captured or state"); w {
		case "dispensed", "captured", "encoded":
			st.Kind, st.Event = StepExpectDispenser, w
			if w == "encoded" || t.more() && t.peek() != "within" {
				st.Card = t.card()
			}
		case "state":
			st.Kind = StepExpectState
			st.State = p.dispenserConds(t)
		default:
			t.fail("want \"expect dispenser %s dispensed [CARD]\", \"encoded CARD\", \"captured [CARD]\" or \"state ...\", found %s", st.Dispenser, quote(w))
		}
	default:
		t.fail("want \"expect event\", \"expect controller\", \"expect reader\", \"expect cache\", \"expect kiosk\" or \"expect dispenser\", found %s", quote(w))
	}
	st.Within = t.within()
}

// dispenserConds reads the conditions of an expect dispenser state step
// and returns them joined by spaces.
func (p *parser) dispenserConds(t *toks) string {
	var conds []string
	seen := map[string]bool{}
	for t.more() && t.peek() != "within" {
		w := t.next("condition")
		c := w
		switch {
		case w == "stack":
			c = "stack " + t.oneOf("stack level", []string{"ok", "low", "empty"})
		case !slices.Contains(DispenserConds, w):
			t.fail("unknown dispenser condition %s (want %s or stack ok|low|empty)", quote(w), strings.Join(DispenserConds, ", "))
		}
		if seen[w] {
			t.fail("%s given twice", quote(w))
		}
		seen[w] = true
		conds = append(conds, c)
	}
	for _, pair := range [][2]string{{"online", "offline"}, {"jam", "no-faults"}, {"card-held", "no-card-held"}} {
		if seen[pair[0]] && seen[pair[1]] {
			t.fail("%s and %s contradict each other", pair[0], pair[1])
		}
	}
	if len(conds) == 0 {
		t.fail("\"state\" needs conditions: %s or stack ok|low|empty", strings.Join(DispenserConds, ", "))
	}
	return strings.Join(conds, " ")
}

// validCode reports whether s is a result code of the protocol: 1 to 64
// characters of a-z 0-9 _.
func validCode(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (p *parser) step(t *toks) {
	st := &Step{Line: p.line, At: p.clock}
	if t.peek() == "at" {
		t.i++
		st.At = t.duration("at", 0, MaxSpan)
		st.Timed = true
		if st.At < p.clock {
			t.fail("at %s is before the time of the previous step (%s); steps run in the order written", formatDuration(st.At), formatDuration(p.clock))
		}
	}
	kw := t.next("step (tap, badge, grant, revoke, suspend, activate, deactivate, wait, sensor, cut, restore, restart, kill, scan, checkin, checkout, return, fault or expect)")
	switch kw {
	case "scan":
		switch w := t.next("qr or document"); w {
		case "qr":
			st.Kind = StepScanQR
			st.Token = t.text("QR token")
			if len(st.Token) > 2048 {
				t.fail("QR token of %d bytes: at most 2048", len(st.Token))
			}
		case "document":
			st.Kind = StepScanDocument
			if strings.HasPrefix(t.peek(), `"`) {
				st.MRZ = strings.Fields(t.text("MRZ"))
				t.mrzShape(st.MRZ)
				break
			}
			t.expect("for")
			st.Doc = p.document(t)
		default:
			t.fail("want \"scan qr TOKEN\" or \"scan document ...\", found %s", quote(w))
		}
		st.Kiosk = p.atKiosk(t)
	case "checkin":
		st.Kind = StepCheckIn
		st.Kiosk = p.atKiosk(t)
	case "checkout":
		st.Kind = StepCheckOut
		if t.peek() == "card" {
			t.i++
			st.Card = t.card()
		}
		st.Kiosk = p.atKiosk(t)
	case "return":
		st.Kind = StepReturnCard
		t.expect("card")
		st.Card = t.card()
		t.expect("at")
		t.expect("dispenser")
		st.Dispenser = p.dispName(t)
	case "fault":
		st.Kind = StepFault
		switch w := t.next("kiosk or dispenser"); w {
		case "kiosk":
			st.Kiosk = p.kioskName(t)
			st.Fault = t.oneOf("kiosk fault", append(slices.Clone(KioskFaults), "clear"))
		case "dispenser":
			st.Dispenser = p.dispName(t)
			st.Fault = t.oneOf("dispenser fault", DispenserFaults)
		default:
			t.fail("want \"fault kiosk NAME FAULT\" or \"fault dispenser NAME jam|empty|clear\", found %s", quote(w))
		}
	case "tap":
		st.Kind = StepTap
		st.Card = t.card()
		t.expect("at")
		st.Reader = t.name("reader")
		if p.readers[st.Reader] == nil {
			t.fail("unknown reader %s (declare it with \"reader %s door DOOR\")", quote(st.Reader), st.Reader)
		}
		if t.peek() == "expect" {
			t.i++
			t.expectation(&st.Expect)
		}
		st.Within = t.within()
	case "badge":
		st.Kind = StepBadge
		t.expect("card")
		st.Card = t.card()
		p.ctlDoor(t, st)
		if t.peek() == "expect" {
			t.i++
			t.expectation(&st.Expect)
		}
		st.Within = t.within()
	case "sensor":
		st.Kind = StepSensor
		st.Event = t.oneOf("sensor event", SensorEvents)
		p.ctlDoor(t, st)
	case "cut", "restore":
		st.Kind = StepCut
		if kw == "restore" {
			st.Kind = StepRestore
		}
		switch w := t.next("controller or reader"); w {
		case "controller":
			st.Controller = p.ctl(t)
		case "reader":
			st.Reader = t.name("reader")
			if p.readers[st.Reader] == nil {
				t.fail("unknown reader %s", quote(st.Reader))
			}
		default:
			t.fail("want \"%s controller NAME\" or \"%s reader NAME\", found %s", kw, kw, quote(w))
		}
	case "restart":
		switch w := t.next("controller, broker or node"); w {
		case "controller":
			st.Kind = StepRestart
			st.Controller = p.ctl(t)
		case "broker":
			st.Kind = StepRestartBroker
			st.N = t.number("broker")
		case "node":
			st.Kind = StepRestartNode
			st.N = t.number("node")
		default:
			t.fail("want \"restart controller NAME\", \"restart broker N\" or \"restart node N\", found %s", quote(w))
		}
	case "kill":
		st.Kind = StepKillNode
		t.expect("node")
		st.N = t.number("node")
	case "expect":
		p.expectStep(t, st)
	case "grant", "revoke":
		st.Kind = StepGrant
		if kw == "revoke" {
			st.Kind = StepRevoke
		}
		st.Person = t.name("person")
		if p.people[st.Person] == nil {
			t.fail("unknown person %s", quote(st.Person))
		}
		st.Group = t.name("group")
		if p.groups[st.Group] == nil {
			t.fail("unknown group %s", quote(st.Group))
		}
		if p.people[st.Person].Kind == access.Visitor {
			t.fail("visitors get access through visits, not groups")
		}
		key := [2]string{st.Person, st.Group}
		if kw == "grant" && p.grants[key] {
			t.fail("%s already has %s at this point", st.Person, st.Group)
		}
		if kw == "revoke" && !p.grants[key] {
			t.fail("%s has no grant of %s to revoke at this point", st.Person, st.Group)
		}
		p.grants[key] = kw == "grant"
	case "suspend":
		st.Kind = StepSuspendCard
		t.expect("card")
		st.Card = p.ownCard(t)
	case "activate", "deactivate":
		if kw == "activate" && t.peek() == "card" {
			t.i++
			st.Kind = StepActivateCard
			st.Card = p.ownCard(t)
			break
		}
		st.Kind = StepDeactivate
		if kw == "activate" {
			st.Kind = StepActivate
		}
		st.Person = t.name("person")
		if p.people[st.Person] == nil {
			t.fail("unknown person %s", quote(st.Person))
		}
	case "wait":
		st.Kind = StepWait
		st.Wait = t.duration("wait", time.Millisecond, MaxSpan)
		if st.At+st.Wait > MaxSpan {
			t.fail("the scenario runs past %s", formatDuration(MaxSpan))
		}
	default:
		t.fail("unknown keyword %s (setup: zone, door, schedule, group, person, reader, controller, kiosk, dispenser; steps: [at TIME] tap, badge, grant, revoke, suspend, activate, deactivate, wait, sensor, cut, restore, restart, kill, scan, checkin, checkout, return, fault, expect)", quote(kw))
	}
	t.end()
	p.clock = st.At
	if st.Kind == StepWait {
		p.clock += st.Wait
	}
	p.s.Steps = append(p.s.Steps, st)
}

// ownCard reads a card number that a person of the scenario holds: steps
// never change cards the scenario did not make.
func (p *parser) ownCard(t *toks) access.CardNumber {
	n := t.card()
	if _, ok := p.cards[n]; !ok {
		t.fail("card %s belongs to no person of this scenario (steps change only the scenario's own cards)", n)
	}
	return n
}

func denyReasons() string {
	var names []string
	for _, r := range access.Reasons() {
		if r != access.ReasonGranted {
			names = append(names, r.String())
		}
	}
	return strings.Join(names, ", ")
}

// card reads a card number: decimal, 1 to 2^64-1, without leading zeros.
func (t *toks) card() access.CardNumber {
	w := t.next("card number")
	n, err := strconv.ParseUint(w, 10, 64)
	if err != nil || n == 0 || w != strconv.FormatUint(n, 10) {
		t.fail("bad card number %s: want a decimal number from 1 to 18446744073709551615 without leading zeros", quote(w))
	}
	return access.CardNumber(n)
}

// duration reads a non-negative Go duration (500ms, 1.5s, 2m, 1h30m)
// within [lo, hi].
func (t *toks) duration(what string, lo, hi time.Duration) time.Duration {
	w := t.next(what + " duration")
	d, err := time.ParseDuration(w)
	if err != nil || strings.HasPrefix(w, "-") || strings.HasPrefix(w, "+") {
		t.fail("bad %s duration %s: want a number with a unit, such as 500ms, 2s, 15m or 1h30m", what, quote(w))
	}
	if d < lo || d > hi {
		t.fail("%s %s is out of range: want %s to %s", what, w, formatDuration(lo), formatDuration(hi))
	}
	return d
}

// instant reads an absolute RFC 3339 time or a signed offset from the
// start of the run.
func (t *toks) instant(what string) Instant {
	w := t.next(what + " time")
	if strings.Contains(w, "T") && strings.ContainsAny(w, ":") {
		at, err := time.Parse(time.RFC3339, w)
		if err != nil || at.Year() < 2000 || at.Year() >= 2100 {
			t.fail("bad %s time %s: want RFC 3339 (2026-03-01T08:00:00Z) between 2000 and 2100, or an offset from the start such as -1h or +30m", what, quote(w))
		}
		return Instant{Set: true, Abs: at.UTC()}
	}
	d, err := time.ParseDuration(w)
	if err != nil {
		t.fail("bad %s time %s: want an offset from the start of the run such as -1h or +30m, or an RFC 3339 time", what, quote(w))
	}
	if d > 100*365*24*time.Hour || d < -100*365*24*time.Hour {
		t.fail("%s offset %s is out of range (at most 100 years)", what, w)
	}
	return Instant{Set: true, Rel: d}
}
