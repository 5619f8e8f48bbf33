package site

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Limits of a site file.
const (
	// MaxFileSize is the largest site file Parse reads, in bytes.
	MaxFileSize = 1 << 20
	// MaxLineLen is the longest line, in bytes.
	MaxLineLen = 1024
	// MaxErrors is the most errors Parse reports before it stops.
	MaxErrors = 20
	// DefaultUnlock is how long a grant releases the lock when the file
	// does not say.
	DefaultUnlock = 5 * time.Second
	// MaxDelay is the longest delay a card's decision may be given.
	MaxDelay = time.Minute
)

// Error is a problem at one line of a site file.
type Error struct {
	// File is the file's name, Line the 1-based line number (0: the file
	// as a whole).
	File string
	Line int
	// Msg says what is wrong.
	Msg string
}

// Error returns "FILE:LINE: MSG", or MSG alone for a typed command (no
// file).
func (e *Error) Error() string {
	if e.File == "" {
		return e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

// Errors is every problem Parse found, in line order; its Error text has
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

// File is a parsed site file: everything the simulated site knows. Make
// one with Parse; Site does not change it.
type File struct {
	// Name is the file's name, for errors.
	Name string
	// Site is the site's ID, the second level of every topic.
	Site string
	// Heartbeat is the heartbeat interval (mqttproto.HeartbeatInterval
	// when the file does not say).
	Heartbeat time.Duration
	// Unlock is how long a grant releases the lock (DefaultUnlock).
	Unlock time.Duration
	// Doors are the site's doors, in file order.
	Doors []*Door
	// Devices are the site's devices, in file order.
	Devices []*Device
	// Cards are the decisions to give, in file order; a card not listed
	// is denied with unknown_card.
	Cards []Card
	// Cache lists the offline cache entries of the doors, in file order.
	Cache []CacheLine
	// Script is the operator commands to run, by time.
	Script []Command
}

// Door is a door of the site.
type Door struct {
	// Name is the door's name in the file and the timeline.
	Name string
	// ID is the door's ID in the protocol: the ULID the file gives, or
	// one derived from Name (DoorID).
	ID access.ID
	// Derived is true when ID was derived from Name.
	Derived bool
	// HighSecurity and MaxOffline are the door's settings, sent with its
	// offline cache.
	HighSecurity bool
	MaxOffline   time.Duration
	// Version is the version of the door's offline cache at start (1 when
	// the file does not say); each "push cache" makes a new one.
	Version uint64
	// Line is where the door is declared.
	Line int
}

// Device is a device of the site.
type Device struct {
	// Kind and ID name the device; with the site they make its topics and
	// its MQTT user name.
	Kind mqttproto.Kind
	ID   string
	// Secret is the device's MQTT password (MQTT devices only).
	Secret string
	// Doors names the doors the device serves: one for a reader, one to
	// mqttproto.MaxDoors for a door controller, none for other kinds.
	Doors []string
	// CAN is the controller's address on the CAN bus; zero for a device
	// that talks MQTT.
	CAN canbus.Addr
	// Acked is the last event sequence number the site is to take as
	// already recorded when it starts (0: expect seq 1 first).
	Acked uint64
	// Line is where the device is declared.
	Line int
}

// Dev returns the device's protocol identity at site.
func (d *Device) Dev(site string) mqttproto.Device {
	return mqttproto.Device{Site: site, Kind: d.Kind, ID: d.ID}
}

// Card is the decision the site gives a card.
type Card struct {
	// Number is the card number (Wiegand credentials by the formula of
	// docs/protocol-mqtt.md §7.1).
	Number access.CardNumber
	// Reason is ReasonGranted for a grant, or why the card is denied.
	Reason access.Reason
	// Delay holds the decision back this long: longer than the decision
	// timeout, it lets a vendor watch a door controller decide alone.
	Delay time.Duration
	// Line is where the card is declared.
	Line int
}

// Time is a point in time in a site file: absolute, or relative to the
// start of the run ("+24h", "-1h").
type Time struct {
	// Abs is the absolute time, when Relative is false.
	Abs time.Time
	// Rel is the offset from the start of the run, when Relative is true.
	Rel      time.Duration
	Relative bool
}

// At returns t for a run that started at start.
func (t Time) At(start time.Time) time.Time {
	if t.Relative {
		return start.Add(t.Rel)
	}
	return t.Abs
}

// String returns t as the file writes it.
func (t Time) String() string {
	if t.Relative {
		if t.Rel < 0 {
			return "-" + (-t.Rel).String()
		}
		return "+" + t.Rel.String()
	}
	return t.Abs.Format(time.RFC3339Nano)
}

// CacheLine is one offline cache entry of a door: Card may open Door while
// its controller is cut off, From (zero: already) until Until.
type CacheLine struct {
	// Door names the door, Card the card.
	Door string
	Card access.CardNumber
	// From is when the entry starts to be valid, if HasFrom.
	From    Time
	HasFrom bool
	// Until is when it stops being valid (exclusive); required.
	Until    Time
	HasUntil bool
	// Line is where the entry is written.
	Line int
}

// Op is an operator command.
type Op string

// The operator commands.
const (
	// OpUnlock releases a door's lock for Dur (unlock door NAME [for DUR]).
	OpUnlock Op = "unlock"
	// OpSetMode sets a door's mode (set_mode door NAME MODE).
	OpSetMode Op = "set_mode"
	// OpPushCache sends a new version of the offline cache of one door, or
	// of every door (push cache [door NAME]).
	OpPushCache Op = "push_cache"
	// OpHeartbeat sends every online door controller a heartbeat now.
	OpHeartbeat Op = "heartbeat"
	// OpEncode asks a dispenser to encode a card (encode dispenser ID card N).
	OpEncode Op = "encode"
	// OpDispense asks a dispenser to present a card (dispense dispenser ID).
	OpDispense Op = "dispense"
	// OpCapture asks a dispenser to capture a card (capture dispenser ID).
	OpCapture Op = "capture"
	// OpCard changes the decision for a card from now on
	// (card N grant | card N deny REASON [delay DUR]).
	OpCard Op = "card"
)

// Command is an operator command, from the file's script (at DUR ...) or
// typed while the site runs (ParseCommand).
type Command struct {
	// At is when a scripted command runs, from the start of the run.
	At time.Duration
	// Op is the command.
	Op Op
	// Door names the door of unlock, set_mode and push cache (empty for
	// every door).
	Door string
	// Device is the dispenser's ID.
	Device string
	// Dur is the unlock time (zero: the file's Unlock).
	Dur time.Duration
	// Mode is the mode of set_mode.
	Mode mqttproto.DoorMode
	// Card is the card of encode, and the card of OpCard.
	Card Card
	// Text is the command as written, for the timeline.
	Text string
	// Line is the line of a scripted command.
	Line int
}

// DoorID returns the ID the simulated site gives a door declared by name
// only: a ULID whose time is 2026-01-01T00:00:00Z and whose 80 random bits
// are the first 80 bits of SHA-256("gatehouse-sim-door:" + name). The same
// name always gives the same ID, so a vendor configures it once.
func DoorID(name string) access.ID {
	sum := sha256.Sum256([]byte("gatehouse-sim-door:" + name))
	ms := uint64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	copy(b[6:], sum[:10])
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return access.ID(out[:])
}

// Parse parses a site file; name is used in errors. It returns the file,
// or an Errors value listing every line at fault (at most MaxErrors) in
// line order. Parse never panics.
func Parse(name string, src []byte) (*File, error) {
	p := &parser{f: &File{Name: name}, doors: map[string]*Door{}, ids: map[access.ID]string{},
		devices: map[string]*Device{}, cans: map[canbus.Addr]string{}, cards: map[access.CardNumber]int{},
		cached: map[[2]string]int{}}
	if len(src) > MaxFileSize {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("file is %d bytes, more than %d", len(src), MaxFileSize)}}
	}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 1024), MaxLineLen+2)
	var site *Error
	for sc.Scan() {
		p.line++
		text := sc.Text()
		if !utf8.ValidString(text) {
			p.errf("not valid UTF-8")
			continue
		}
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		words := strings.Fields(text)
		if len(words) == 0 {
			continue
		}
		p.statement(words)
		if len(p.errs) >= MaxErrors {
			break
		}
	}
	if err := sc.Err(); err != nil && len(p.errs) < MaxErrors {
		p.line++
		p.errf("line longer than %d bytes", MaxLineLen)
	}
	f := p.f
	if f.Site == "" {
		site = &Error{File: name, Line: 0, Msg: `no "site NAME" line`}
	}
	p.finish()
	if site != nil {
		p.errs = append(Errors{site}, p.errs...)
	}
	if len(p.errs) > 0 {
		if len(p.errs) > MaxErrors {
			p.errs = p.errs[:MaxErrors]
		}
		return nil, p.errs
	}
	if f.Heartbeat == 0 {
		f.Heartbeat = mqttproto.HeartbeatInterval
	}
	if f.Unlock == 0 {
		f.Unlock = DefaultUnlock
	}
	slices.SortStableFunc(f.Script, func(a, b Command) int { return int(a.At - b.At) })
	return f, nil
}

// ParseCommand parses one operator command as typed while the site runs:
// a script line without "at DUR". f is the running site's file, against
// which doors and dispensers are checked. It returns an *Error without a
// file or line.
func ParseCommand(f *File, text string) (Command, error) {
	p := &parser{f: &File{}, doors: map[string]*Door{}, devices: map[string]*Device{}, live: true}
	for _, d := range f.Doors {
		p.doors[d.Name] = d
	}
	for _, d := range f.Devices {
		p.devices[string(d.Kind)+"/"+d.ID] = d
	}
	words := strings.Fields(text)
	if len(words) == 0 {
		return Command{}, &Error{Msg: "empty command"}
	}
	c, ok := p.command(words)
	if !ok {
		return Command{}, p.errs[0]
	}
	return c, nil
}

type parser struct {
	f       *File
	line    int
	errs    Errors
	doors   map[string]*Door
	ids     map[access.ID]string
	devices map[string]*Device // by kind/ID
	cans    map[canbus.Addr]string
	cards   map[access.CardNumber]int
	cached  map[[2]string]int
	pending []pendingRef
	live    bool // parsing one command of a running site (ParseCommand)
}

// pendingRef is a reference to a door checked once every door is known.
type pendingRef struct {
	door string
	line int
	what string
}

func (p *parser) errf(format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.f.Name, Line: p.line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) statement(w []string) {
	switch w[0] {
	case "site":
		if len(w) != 2 {
			p.errf("want: site NAME")
			return
		}
		if p.f.Site != "" {
			p.errf("second site line (the site is %q)", p.f.Site)
			return
		}
		if !mqttproto.ValidName(w[1]) {
			p.errf("site %q: want 1 to %d characters of A-Z a-z 0-9 _ -", w[1], mqttproto.MaxNameLen)
			return
		}
		p.f.Site = w[1]
	case "heartbeat", "unlock":
		if len(w) != 2 {
			p.errf("want: %s DURATION", w[0])
			return
		}
		d, ok := p.duration(w[0], w[1])
		if !ok {
			return
		}
		if w[0] == "heartbeat" {
			if d < 10*time.Millisecond || d > time.Hour {
				p.errf("heartbeat %s: want 10ms to 1h", d)
				return
			}
			p.f.Heartbeat = d
		} else {
			if d < time.Millisecond || d > mqttproto.MaxUnlock {
				p.errf("unlock %s: want 1ms to %s", d, mqttproto.MaxUnlock)
				return
			}
			p.f.Unlock = d
		}
	case "door":
		p.door(w)
	case "device":
		p.device(w)
	case "card":
		c, ok := p.card(w)
		if !ok {
			return
		}
		if prev, dup := p.cards[c.Number]; dup {
			p.errf("card %s is already given a decision at line %d", c.Number, prev)
			return
		}
		p.cards[c.Number] = p.line
		p.f.Cards = append(p.f.Cards, c)
	case "cache":
		p.cache(w)
	case "at":
		if len(w) < 3 {
			p.errf("want: at DURATION COMMAND")
			return
		}
		at, err := time.ParseDuration(w[1])
		if err != nil || at < 0 {
			p.errf("at %q: want a duration from the start such as 5s or 1m30s", w[1])
			return
		}
		c, ok := p.command(w[2:])
		if !ok {
			return
		}
		c.At = at
		p.f.Script = append(p.f.Script, c)
	default:
		p.errf("unknown statement %q (want site, heartbeat, unlock, door, device, card, cache or at)", w[0])
	}
}

func (p *parser) duration(what, s string) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		p.errf("%s %q: want a positive duration such as 500ms, 5s or 1h", what, s)
		return 0, false
	}
	return d, true
}

// validWord reports whether s is a door name: 1 to 64 characters of
// A-Z a-z 0-9 _ -.
func validWord(s string) bool { return mqttproto.ValidName(s) }

func (p *parser) door(w []string) {
	if len(w) < 2 || !validWord(w[1]) {
		p.errf("want: door NAME [ULID] [high-security] [max-offline DURATION] [version N]; NAME is 1 to 64 characters of A-Z a-z 0-9 _ -")
		return
	}
	d := &Door{Name: w[1], Line: p.line, Version: 1}
	if prev, dup := p.doors[d.Name]; dup {
		p.errf("door %s is already declared at line %d", d.Name, prev.Line)
		return
	}
	rest := w[2:]
	if len(rest) > 0 && len(rest[0]) == 26 {
		id, err := access.ParseID(rest[0])
		if err != nil {
			p.errf("door %s: %q is not a ULID (26 characters of Crockford base32, first 0-7)", d.Name, rest[0])
			return
		}
		d.ID = id
		rest = rest[1:]
	}
	maxSet := false
	for len(rest) > 0 {
		switch rest[0] {
		case "high-security":
			d.HighSecurity = true
			rest = rest[1:]
		case "max-offline":
			if len(rest) < 2 {
				p.errf("door %s: max-offline needs a duration", d.Name)
				return
			}
			v, err := time.ParseDuration(rest[1])
			if err != nil || v < 0 || v > mqttproto.MaxOfflineLimit {
				p.errf("door %s: max-offline %q: want a duration from 0 to %s", d.Name, rest[1], mqttproto.MaxOfflineLimit)
				return
			}
			d.MaxOffline, maxSet = v, true
			rest = rest[2:]
		case "version":
			if len(rest) < 2 {
				p.errf("door %s: version needs a number", d.Name)
				return
			}
			v, err := strconv.ParseUint(rest[1], 10, 64)
			if err != nil || v == 0 || v > mqttproto.MaxInteger/2 {
				p.errf("door %s: version %q: want a whole number from 1", d.Name, rest[1])
				return
			}
			d.Version = v
			rest = rest[2:]
		default:
			p.errf("door %s: unknown setting %q (want a ULID, high-security, max-offline DURATION or version N)", d.Name, rest[0])
			return
		}
	}
	if maxSet && !d.HighSecurity {
		p.errf("door %s: max-offline only means something with high-security", d.Name)
		return
	}
	if d.ID == "" {
		d.ID, d.Derived = DoorID(d.Name), true
	}
	if other, dup := p.ids[d.ID]; dup {
		p.errf("door %s has the same ID %s as door %s", d.Name, d.ID, other)
		return
	}
	p.ids[d.ID] = d.Name
	p.doors[d.Name] = d
	p.f.Doors = append(p.f.Doors, d)
}

func (p *parser) device(w []string) {
	if len(w) < 3 {
		p.errf("want: device KIND ID [secret S] [door NAME[,NAME...]] [can ADDRESS] [acked N]")
		return
	}
	d := &Device{Kind: mqttproto.Kind(w[1]), ID: w[2], Line: p.line}
	if !d.Kind.Valid() {
		p.errf("device kind %q: want reader, door, kiosk or dispenser", w[1])
		return
	}
	if !mqttproto.ValidName(d.ID) {
		p.errf("device ID %q: want 1 to %d characters of A-Z a-z 0-9 _ -", d.ID, mqttproto.MaxNameLen)
		return
	}
	key := string(d.Kind) + "/" + d.ID
	if prev, dup := p.devices[key]; dup {
		p.errf("device %s %s is already declared at line %d", d.Kind, d.ID, prev.Line)
		return
	}
	rest := w[3:]
	seen := map[string]bool{}
	for len(rest) > 0 {
		k := rest[0]
		if len(rest) < 2 {
			p.errf("device %s: %q needs a value", d.ID, k)
			return
		}
		if seen[k] {
			p.errf("device %s: %s given twice", d.ID, k)
			return
		}
		seen[k] = true
		v := rest[1]
		rest = rest[2:]
		switch k {
		case "secret":
			if len(v) > 256 {
				p.errf("device %s: secret longer than 256 bytes", d.ID)
				return
			}
			d.Secret = v
		case "door", "doors":
			for _, n := range strings.Split(v, ",") {
				if !validWord(n) {
					p.errf("device %s: door name %q: want 1 to 64 characters of A-Z a-z 0-9 _ -", d.ID, n)
					return
				}
				if slices.Contains(d.Doors, n) {
					p.errf("device %s: door %s listed twice", d.ID, n)
					return
				}
				d.Doors = append(d.Doors, n)
				p.pending = append(p.pending, pendingRef{door: n, line: p.line, what: "device " + d.ID})
			}
		case "can":
			a, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(v), "0x"), 16, 8)
			if err != nil || !canbus.Addr(a).IsController() {
				p.errf("device %s: can address %q: want a controller address 01 to fe (hexadecimal)", d.ID, v)
				return
			}
			d.CAN = canbus.Addr(a)
		case "acked":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n > mqttproto.MaxInteger {
				p.errf("device %s: acked %q: want a whole number", d.ID, v)
				return
			}
			d.Acked = n
		default:
			p.errf("device %s: unknown setting %q (want secret, door, can or acked)", d.ID, k)
			return
		}
	}
	switch {
	case d.CAN != 0 && d.Kind != mqttproto.KindDoor:
		p.errf("device %s: only door controllers talk CAN", d.ID)
		return
	case d.CAN != 0 && d.Secret != "":
		p.errf("device %s: a CAN controller has no secret (it has no MQTT connection)", d.ID)
		return
	case d.CAN == 0 && d.Secret == "":
		p.errf("device %s: an MQTT device needs a secret (its password)", d.ID)
		return
	case (d.Kind == mqttproto.KindReader || d.Kind == mqttproto.KindDoor) && len(d.Doors) == 0:
		p.errf("device %s: a %s needs the door it serves (door NAME)", d.ID, d.Kind)
		return
	case d.Kind == mqttproto.KindReader && len(d.Doors) > 1:
		p.errf("device %s: a reader serves one door", d.ID)
		return
	case len(d.Doors) > mqttproto.MaxDoors:
		p.errf("device %s: a controller drives at most %d doors", d.ID, mqttproto.MaxDoors)
		return
	case (d.Kind == mqttproto.KindKiosk || d.Kind == mqttproto.KindDispenser) && len(d.Doors) > 0:
		p.errf("device %s: a %s serves no door", d.ID, d.Kind)
		return
	}
	if d.CAN != 0 {
		if other, dup := p.cans[d.CAN]; dup {
			p.errf("device %s: can address %s is already %s's", d.ID, d.CAN, other)
			return
		}
		p.cans[d.CAN] = d.ID
	}
	p.devices[key] = d
	p.f.Devices = append(p.f.Devices, d)
}

// card parses "card N grant [delay D]" or "card N deny REASON [delay D]".
func (p *parser) card(w []string) (Card, bool) {
	if len(w) < 3 {
		p.errf("want: card NUMBER grant [delay DURATION] | card NUMBER deny REASON [delay DURATION]")
		return Card{}, false
	}
	n, err := access.ParseCardNumber(w[1])
	if err != nil || w[1] != n.String() {
		p.errf("card %q: want a decimal card number from 1, without leading zeros", w[1])
		return Card{}, false
	}
	c := Card{Number: n, Line: p.line}
	rest := w[3:]
	switch w[2] {
	case "grant":
		c.Reason = access.ReasonGranted
	case "deny":
		if len(rest) == 0 {
			p.errf("card %s: deny needs a reason: %s", n, denyReasons())
			return Card{}, false
		}
		var r access.Reason
		if err := r.UnmarshalText([]byte(rest[0])); err != nil || r == access.ReasonGranted {
			p.errf("card %s: reason %q: want one of %s", n, rest[0], denyReasons())
			return Card{}, false
		}
		c.Reason = r
		rest = rest[1:]
	default:
		p.errf("card %s: %q: want grant or deny", n, w[2])
		return Card{}, false
	}
	if len(rest) > 0 {
		if rest[0] != "delay" || len(rest) != 2 {
			p.errf("card %s: after the decision only \"delay DURATION\" may follow", n)
			return Card{}, false
		}
		d, ok := p.duration("delay", rest[1])
		if !ok {
			return Card{}, false
		}
		if d > MaxDelay {
			p.errf("card %s: delay %s: at most %s", n, d, MaxDelay)
			return Card{}, false
		}
		c.Delay = d
	}
	return c, true
}

// denyReasons lists the reasons a deny may give.
func denyReasons() string {
	var s []string
	for _, r := range access.Reasons() {
		if r != access.ReasonGranted {
			s = append(s, r.String())
		}
	}
	return strings.Join(s, ", ")
}

// cache parses "cache DOOR CARD until TIME [from TIME]".
func (p *parser) cache(w []string) {
	const want = "want: cache DOOR CARD until TIME [from TIME] (TIME: RFC 3339 such as 2030-01-01T00:00:00Z, or +DURATION / -DURATION from the start)"
	if len(w) < 5 || !validWord(w[1]) {
		p.errf(want)
		return
	}
	n, err := access.ParseCardNumber(w[2])
	if err != nil || w[2] != n.String() {
		p.errf("cache: card %q: want a decimal card number from 1, without leading zeros", w[2])
		return
	}
	c := CacheLine{Door: w[1], Card: n, Line: p.line}
	rest := w[3:]
	for len(rest) > 0 {
		if len(rest) < 2 || (rest[0] != "until" && rest[0] != "from") {
			p.errf(want)
			return
		}
		t, ok := p.time(rest[0], rest[1])
		if !ok {
			return
		}
		if rest[0] == "until" {
			if c.HasUntil {
				p.errf("cache: until given twice")
				return
			}
			c.Until, c.HasUntil = t, true
		} else {
			if c.HasFrom {
				p.errf("cache: from given twice")
				return
			}
			c.From, c.HasFrom = t, true
		}
		rest = rest[2:]
	}
	if !c.HasUntil {
		p.errf("cache: until is required")
		return
	}
	if c.HasFrom && c.From.Relative == c.Until.Relative && !c.From.At(time.Time{}).Before(c.Until.At(time.Time{})) {
		p.errf("cache: until %s is not after from %s", c.Until, c.From)
		return
	}
	key := [2]string{c.Door, n.String()}
	if prev, dup := p.cached[key]; dup {
		p.errf("cache: card %s is already in the cache of door %s at line %d", n, c.Door, prev)
		return
	}
	p.cached[key] = p.line
	p.pending = append(p.pending, pendingRef{door: c.Door, line: p.line, what: "cache"})
	p.f.Cache = append(p.f.Cache, c)
}

// time parses an RFC 3339 time or a +/-duration from the start.
func (p *parser) time(what, s string) (Time, bool) {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		d, err := time.ParseDuration(s[1:])
		if err == nil && d >= 0 && d <= 100*365*24*time.Hour {
			if s[0] == '-' {
				d = -d
			}
			return Time{Rel: d, Relative: true}, true
		}
	} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.Before(mqttproto.MinTime) || !t.Before(mqttproto.MaxTime) {
			p.errf("cache: %s %s: want a time from 2000 to before 2100", what, s)
			return Time{}, false
		}
		return Time{Abs: t.UTC()}, true
	}
	p.errf("cache: %s %q: want an RFC 3339 time such as 2030-01-01T00:00:00Z, or +DURATION / -DURATION from the start", what, s)
	return Time{}, false
}

// command parses an operator command (without "at DUR").
func (p *parser) command(w []string) (Command, bool) {
	c := Command{Op: Op(w[0]), Text: strings.Join(w, " "), Line: p.line}
	bad := func(format string, args ...any) (Command, bool) {
		p.errf(format, args...)
		return Command{}, false
	}
	doorArg := func(i int) bool {
		if len(w) <= i+1 || w[i] != "door" {
			p.errf("%s: want \"door NAME\"", w[0])
			return false
		}
		c.Door = w[i+1]
		if !validWord(c.Door) {
			p.errf("%s: door name %q: want 1 to 64 characters of A-Z a-z 0-9 _ -", w[0], c.Door)
			return false
		}
		p.pending = append(p.pending, pendingRef{door: c.Door, line: p.line, what: w[0]})
		return true
	}
	dispenserArg := func() bool {
		if len(w) < 3 || w[1] != "dispenser" {
			p.errf("%s: want \"%s dispenser ID\"", w[0], w[0])
			return false
		}
		c.Device = w[2]
		if _, ok := p.devices["dispenser/"+c.Device]; !ok {
			p.errf("%s: no dispenser %q is declared (device dispenser ID ...)", w[0], c.Device)
			return false
		}
		return true
	}
	switch c.Op {
	case OpUnlock:
		if !doorArg(1) {
			return Command{}, false
		}
		switch {
		case len(w) == 3:
		case len(w) == 5 && w[3] == "for":
			d, err := time.ParseDuration(w[4])
			if err != nil || d < time.Millisecond || d > mqttproto.MaxUnlock {
				return bad("unlock: for %q: want a duration from 1ms to %s", w[4], mqttproto.MaxUnlock)
			}
			c.Dur = d
		default:
			return bad("want: unlock door NAME [for DURATION]")
		}
	case OpSetMode:
		if !doorArg(1) {
			return Command{}, false
		}
		if len(w) != 4 || !mqttproto.DoorMode(w[3]).Valid() {
			return bad("want: set_mode door NAME normal|unlocked|locked")
		}
		c.Mode = mqttproto.DoorMode(w[3])
	case "push":
		c.Op = OpPushCache
		if len(w) < 2 || w[1] != "cache" {
			return bad("want: push cache [door NAME]")
		}
		if len(w) > 2 {
			if len(w) != 4 || !doorArg(2) {
				return bad("want: push cache [door NAME]")
			}
		}
	case OpHeartbeat:
		if len(w) != 1 {
			return bad("want: heartbeat")
		}
	case OpEncode:
		if !dispenserArg() {
			return Command{}, false
		}
		if len(w) != 5 || w[3] != "card" {
			return bad("want: encode dispenser ID card NUMBER")
		}
		n, err := access.ParseCardNumber(w[4])
		if err != nil || w[4] != n.String() {
			return bad("encode: card %q: want a decimal card number from 1, without leading zeros", w[4])
		}
		c.Card = Card{Number: n}
	case OpDispense, OpCapture:
		if !dispenserArg() {
			return Command{}, false
		}
		if len(w) != 3 {
			return bad("want: %s dispenser ID", w[0])
		}
	case OpCard:
		cd, ok := p.card(w)
		if !ok {
			return Command{}, false
		}
		c.Card = cd
	default:
		return bad("unknown command %q (want unlock, set_mode, push cache, heartbeat, encode, dispense, capture or card)", w[0])
	}
	if p.live {
		// ParseCommand: every door is known already.
		for _, r := range p.pending {
			if _, ok := p.doors[r.door]; !ok {
				p.pending = nil
				return bad("%s: no door %q is declared", r.what, r.door)
			}
		}
		p.pending = nil
	}
	return c, true
}

// finish checks references to doors, and that every door a command or
// cache names is driven by a door controller.
func (p *parser) finish() {
	for _, r := range p.pending {
		if _, ok := p.doors[r.door]; !ok {
			p.errs = append(p.errs, &Error{File: p.f.Name, Line: r.line, Msg: fmt.Sprintf("%s: no door %q is declared", r.what, r.door)})
		}
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
}
