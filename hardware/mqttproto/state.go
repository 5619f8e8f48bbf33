package mqttproto

import (
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// State is what a device reports about itself: topic
// gh/{site}/{kind}/{device}/state, device to site, retained. A device
// publishes it with Online set right after every connect and whenever its
// status changes; its last will (see Will) publishes the offline State,
// which has Online false and nothing else. At most one of the status
// fields is set, the one of the device's kind.
type State struct {
	// Online is true while the device is connected.
	Online bool
	// Firmware is the device's firmware version: 1 to MaxFirmware
	// printable ASCII characters. Required when online.
	Firmware string
	// Time is the device's clock when it published the state.
	Time time.Time
	// LastSeq is the sequence number of the device's latest event (zero
	// when it has none), so the site can tell what is still to come.
	LastSeq uint64
	// Reader is the status of a reader.
	Reader *ReaderStatus
	// Door is the status of a door controller.
	Door *DoorStatus
	// Kiosk is the status of a kiosk.
	Kiosk *KioskStatus
	// Dispenser is the status of a card dispenser.
	Dispenser *DispenserStatus
}

// ReaderStatus is the status of a reader.
type ReaderStatus struct {
	// Tamper reports the reader's tamper switch open.
	Tamper bool
}

// DoorStatus is the status of a door controller.
type DoorStatus struct {
	// Tamper reports the controller's tamper switch open.
	Tamper bool
	// Offline reports that the controller considers itself cut off from
	// its site and decides alone.
	Offline bool
	// Doors lists the doors the controller drives, at most MaxDoors.
	Doors []DoorState
}

// DoorState is the state of one door of a controller.
type DoorState struct {
	// Door is the door's ID.
	Door access.ID
	// Mode is the door's current mode.
	Mode DoorMode
	// Open reports the door sensor open.
	Open bool
	// CacheVersion is the version of the door's offline cache the
	// controller holds (zero: none).
	CacheVersion uint64
	// FailSecure reports a high-security door failing secure.
	FailSecure bool
}

// KioskStatus is the status of a kiosk.
type KioskStatus struct {
	// Faults lists current faults as codes of a-z 0-9 _ (such as
	// "id_scanner" or "printer"), at most MaxFaults; empty when healthy.
	Faults []string
}

// StackLevel is how full a dispenser's card stack is.
type StackLevel string

// The stack levels.
const (
	// StackOK means there are enough cards.
	StackOK StackLevel = "ok"
	// StackLow means few cards are left; refill soon.
	StackLow StackLevel = "low"
	// StackEmpty means there are no cards; dispense and encode fail with
	// an empty event.
	StackEmpty StackLevel = "empty"
)

// Valid reports whether l is one of the stack levels.
func (l StackLevel) Valid() bool { return l == StackOK || l == StackLow || l == StackEmpty }

// DispenserStatus is the status of a card dispenser and encoder.
type DispenserStatus struct {
	// Stack is the card stack level.
	Stack StackLevel
	// CardHeld reports a card held in the encoder.
	CardHeld bool
	// CaptureFull reports the capture bin full: capture fails.
	CaptureFull bool
	// Faults lists current faults as codes (such as "jam" or "encoder"),
	// at most MaxFaults; empty when healthy.
	Faults []string
}

var (
	stateSpec = spec{
		req: []string{"online"},
		opt: []string{"firmware", "time", "last_seq", "reader", "door", "kiosk", "dispenser"},
	}
	readerStatusSpec    = spec{opt: []string{"tamper"}}
	doorStatusSpec      = spec{opt: []string{"tamper", "offline", "doors"}}
	doorStateSpec       = spec{req: []string{"door", "mode"}, opt: []string{"open", "cache_version", "fail_secure"}}
	kioskStatusSpec     = spec{opt: []string{"faults"}}
	dispenserStatusSpec = spec{req: []string{"stack"}, opt: []string{"card_held", "capture_full", "faults"}}
)

// kind returns the kind whose status s carries, "" for none, and whether
// more than one is set.
func (s State) kind() (k Kind, many bool) {
	n := 0
	if s.Reader != nil {
		k, n = KindReader, n+1
	}
	if s.Door != nil {
		k, n = KindDoor, n+1
	}
	if s.Kiosk != nil {
		k, n = KindKiosk, n+1
	}
	if s.Dispenser != nil {
		k, n = KindDispenser, n+1
	}
	return k, n > 1
}

// Validate checks s against the state schema: an offline state has nothing
// but Online; an online one has a firmware version and at most one status,
// each valid. It returns an error wrapping ErrMissingField, ErrUnknownField
// or ErrBadValue.
func (s State) Validate() error {
	const what = "state"
	k, many := s.kind()
	if many {
		return errorf(what, ErrUnknownField, "more than one of \"reader\", \"door\", \"kiosk\" and \"dispenser\"")
	}
	if !s.Online {
		if s.Firmware != "" || !s.Time.IsZero() || s.LastSeq != 0 || k != "" {
			return errorf(what, ErrUnknownField, "an offline state (the last will) has no field but \"v\" and \"online\"")
		}
		return nil
	}
	if s.Firmware == "" {
		return errorf(what, ErrMissingField, "field \"firmware\" is required when online")
	}
	if len(s.Firmware) > MaxFirmware {
		return badValue(what, "firmware", "%d bytes, more than %d", len(s.Firmware), MaxFirmware)
	}
	for i := 0; i < len(s.Firmware); i++ {
		if c := s.Firmware[i]; c < 0x20 || c > 0x7e {
			return badValue(what, "firmware", "character %d is not printable ASCII", i)
		}
	}
	if err := checkOptionalTime(what, "time", s.Time); err != nil {
		return err
	}
	if err := checkInteger(what, "last_seq", s.LastSeq); err != nil {
		return err
	}
	switch {
	case s.Door != nil:
		return s.Door.validate(what)
	case s.Kiosk != nil:
		return checkCodes(what, "kiosk.faults", s.Kiosk.Faults, MaxFaults)
	case s.Dispenser != nil:
		if !s.Dispenser.Stack.Valid() {
			if s.Dispenser.Stack == "" {
				return errorf(what, ErrMissingField, "field \"dispenser.stack\" is required")
			}
			return badValue(what, "dispenser.stack", "unknown level %q (want ok, low or empty)", s.Dispenser.Stack)
		}
		return checkCodes(what, "dispenser.faults", s.Dispenser.Faults, MaxFaults)
	}
	return nil
}

func (ds *DoorStatus) validate(what string) error {
	if len(ds.Doors) > MaxDoors {
		return badValue(what, "door.doors", "%d doors, more than %d", len(ds.Doors), MaxDoors)
	}
	for i, x := range ds.Doors {
		f := "door.doors[" + strconv.Itoa(i) + "]"
		if err := checkID(what, f+".door", x.Door); err != nil {
			return err
		}
		for j := range i {
			if ds.Doors[j].Door == x.Door {
				return badValue(what, f+".door", "door %s is listed twice", x.Door)
			}
		}
		if x.Mode == "" {
			return errorf(what, ErrMissingField, "field %q is required", f+".mode")
		}
		if !x.Mode.Valid() {
			return badValue(what, f+".mode", "unknown mode %q (want normal, unlocked or locked)", x.Mode)
		}
		if err := checkInteger(what, f+".cache_version", x.CacheVersion); err != nil {
			return err
		}
	}
	return nil
}

// Marshal validates s and returns its payload.
func (s State) Marshal() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	e := newEnc()
	e.open()
	e.uintField("v", Version)
	e.boolField("online", s.Online)
	if s.Firmware != "" {
		e.strField("firmware", s.Firmware)
	}
	if !s.Time.IsZero() {
		e.timeField("time", s.Time)
	}
	if s.LastSeq != 0 {
		e.uintField("last_seq", s.LastSeq)
	}
	switch {
	case s.Reader != nil:
		e.key("reader")
		e.open()
		if s.Reader.Tamper {
			e.boolField("tamper", true)
		}
		e.close()
	case s.Door != nil:
		e.key("door")
		e.open()
		if s.Door.Tamper {
			e.boolField("tamper", true)
		}
		if s.Door.Offline {
			e.boolField("offline", true)
		}
		if len(s.Door.Doors) != 0 {
			e.key("doors")
			e.openArray()
			for _, x := range s.Door.Doors {
				e.open()
				e.strField("door", string(x.Door))
				e.strField("mode", string(x.Mode))
				if x.Open {
					e.boolField("open", true)
				}
				if x.CacheVersion != 0 {
					e.uintField("cache_version", x.CacheVersion)
				}
				if x.FailSecure {
					e.boolField("fail_secure", true)
				}
				e.close()
			}
			e.closeArray()
		}
		e.close()
	case s.Kiosk != nil:
		e.key("kiosk")
		e.open()
		putFaults(&e, s.Kiosk.Faults)
		e.close()
	case s.Dispenser != nil:
		e.key("dispenser")
		e.open()
		e.strField("stack", string(s.Dispenser.Stack))
		if s.Dispenser.CardHeld {
			e.boolField("card_held", true)
		}
		if s.Dispenser.CaptureFull {
			e.boolField("capture_full", true)
		}
		putFaults(&e, s.Dispenser.Faults)
		e.close()
	}
	e.close()
	return finish("state", e.b)
}

func putFaults(e *enc, faults []string) {
	if len(faults) == 0 {
		return
	}
	e.key("faults")
	e.openArray()
	for _, f := range faults {
		e.str(f)
	}
	e.closeArray()
}

// DecodeState decodes the state payload of a device of kind k: only k's
// status may be present. It returns an error wrapping ErrTooLarge,
// ErrSyntax, ErrVersion, ErrUnknownField, ErrMissingField or ErrBadValue
// (also for an unknown kind). It is safe for concurrent use.
func DecodeState(k Kind, b []byte) (State, error) {
	d := decoder{what: "state"}
	if !k.Valid() {
		return State{}, badValue(d.what, "kind", "unknown device kind %q", k)
	}
	if err := d.top(b); err != nil {
		return State{}, err
	}
	if err := d.checkKeys(true, stateSpec, nil, ""); err != nil {
		return State{}, err
	}
	var s State
	for _, m := range d.o.members() {
		key := string(m.key)
		switch key {
		case "online":
			s.Online = d.bool(m)
		case "firmware":
			s.Firmware = d.str(m)
		case "time":
			s.Time = d.time(m)
		case "last_seq":
			s.LastSeq = d.uint(m)
		case "reader", "door", "kiosk", "dispenser":
			if d.err == nil && Kind(key) != k {
				d.err = errorf(d.what, ErrUnknownField, "field %q is not allowed in the state of a %s", key, k)
				break
			}
			d.status(m, &s)
		}
	}
	if d.err != nil {
		return State{}, d.err
	}
	if err := s.Validate(); err != nil {
		return State{}, err
	}
	return s, nil
}

// status decodes the status member m into s.
func (d *decoder) status(m member, s *State) {
	var nd decoder
	path := d.field(m) + "."
	switch string(m.key) {
	case "reader":
		if !d.nested(m, path, 2, &nd) || d.keysOf(&nd, readerStatusSpec) {
			return
		}
		st := &ReaderStatus{}
		if f, ok := nd.o.get("tamper"); ok {
			st.Tamper = nd.bool(f)
		}
		s.Reader = st
	case "door":
		if !d.nested(m, path, 2, &nd) || d.keysOf(&nd, doorStatusSpec) {
			return
		}
		st := &DoorStatus{}
		for _, f := range nd.o.members() {
			switch string(f.key) {
			case "tamper":
				st.Tamper = nd.bool(f)
			case "offline":
				st.Offline = nd.bool(f)
			case "doors":
				nd.array(f, func(i int, e member) {
					if x, ok := nd.doorState(e); ok {
						st.Doors = append(st.Doors, x)
					}
				})
			}
		}
		s.Door = st
	case "kiosk":
		if !d.nested(m, path, 2, &nd) || d.keysOf(&nd, kioskStatusSpec) {
			return
		}
		st := &KioskStatus{}
		if f, ok := nd.o.get("faults"); ok {
			st.Faults = nd.strings(f)
		}
		s.Kiosk = st
	case "dispenser":
		if !d.nested(m, path, 2, &nd) || d.keysOf(&nd, dispenserStatusSpec) {
			return
		}
		st := &DispenserStatus{}
		for _, f := range nd.o.members() {
			switch string(f.key) {
			case "stack":
				st.Stack = StackLevel(nd.str(f))
			case "card_held":
				st.CardHeld = nd.bool(f)
			case "capture_full":
				st.CaptureFull = nd.bool(f)
			case "faults":
				st.Faults = nd.strings(f)
			}
		}
		s.Dispenser = st
	}
	d.err = nd.err
}

// keysOf checks the keys of the nested object in nd against sp, records a
// failure in d and reports whether there was one.
func (d *decoder) keysOf(nd *decoder, sp spec) bool {
	if err := nd.checkKeys(false, sp, nil, ""); err != nil {
		d.err = err
		return true
	}
	return false
}

// doorState returns element e of a doors array.
func (d *decoder) doorState(e member) (DoorState, bool) {
	var nd decoder
	if !d.nested(e, d.field(e)+".", 4, &nd) || d.keysOf(&nd, doorStateSpec) {
		return DoorState{}, false
	}
	var x DoorState
	for _, f := range nd.o.members() {
		switch string(f.key) {
		case "door":
			x.Door = nd.id(f)
		case "mode":
			x.Mode = DoorMode(nd.str(f))
		case "open":
			x.Open = nd.bool(f)
		case "cache_version":
			x.CacheVersion = nd.uint(f)
		case "fail_secure":
			x.FailSecure = nd.bool(f)
		}
	}
	d.err = nd.err
	return x, d.err == nil
}
