package canbus

import (
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Version is the version of the message encoding: the first byte of every
// message. A message with any other first byte is refused with ErrVersion.
// Any change to any layout, even a new flag, makes a new version.
const Version = 1

// wireReasons maps the wire code of a decision reason (the index) to the
// reason's name in package access. The codes are fixed by this protocol;
// they do not follow the numbering of package access.
var wireReasons = []string{
	1: "granted", 2: "unknown_door", 3: "unknown_card", 4: "card_suspended",
	5: "card_outside_validity", 6: "person_inactive", 7: "no_group",
	8: "outside_schedule", 9: "visit_not_checked_in", 10: "escort_not_picked_up",
	11: "checked_out", 12: "anti_passback", 13: "no_offline_access",
}

// wireEvents maps the wire code of a door event type to the type.
var wireEvents = []mqttproto.DoorEventType{
	1: mqttproto.DoorOpened, 2: mqttproto.DoorClosed, 3: mqttproto.DoorRequestToExit,
	4: mqttproto.DoorForcedOpen, 5: mqttproto.DoorHeldOpen, 6: mqttproto.DoorTamper,
	7: mqttproto.DoorTamperCleared, 8: mqttproto.DoorOfflineDecision, 9: mqttproto.DoorOfflineStarted,
	10: mqttproto.DoorOfflineEnded, 11: mqttproto.DoorFailSecure, 12: mqttproto.DoorCmdRejected,
}

// wireModes maps the wire code of a door mode to the mode.
var wireModes = []mqttproto.DoorMode{1: mqttproto.DoorNormal, 2: mqttproto.DoorUnlocked, 3: mqttproto.DoorLocked}

// codeOf returns the index of v in table (0: not found).
func codeOf[T comparable](table []T, v T) byte {
	for i, x := range table {
		if i > 0 && x == v {
			return byte(i)
		}
	}
	return 0
}

func reasonCode(r access.Reason) byte { return codeOf(wireReasons, r.String()) }

// reason reads a reason code.
func (r *reader) reason(field string) access.Reason {
	c := r.u8(field)
	if r.err != nil {
		return 0
	}
	var x access.Reason
	if int(c) == 0 || int(c) >= len(wireReasons) || x.UnmarshalText([]byte(wireReasons[c])) != nil {
		r.fail(field, "unknown reason code %d", c)
		return 0
	}
	return x
}

// Flag bits.
const (
	tapWiegand = 0x01
	tapTime    = 0x02
	tapPIN     = 0x04

	decisionOnline = 0x01

	eventDoor         = 0x01
	eventCard         = 0x02
	eventReason       = 0x04
	eventRequestID    = 0x08
	eventCacheVersion = 0x10
	eventError        = 0x20

	stateOnline  = 0x01
	stateTime    = 0x02
	stateDoor    = 0x04
	stateTamper  = 0x08
	stateOffline = 0x10

	doorOpen       = 0x01
	doorFailSecure = 0x02

	cacheHighSecurity = 0x01
	entryFrom         = 0x01

	ackResend = 0x01
)

// begin returns a writer holding the version byte.
func begin() writer {
	w := writer{b: make([]byte, 0, 64)}
	w.u8(Version)
	return w
}

// open starts reading message what from b: it checks the version byte.
func open(what string, b []byte) (*reader, error) {
	r := &reader{what: what, b: b}
	if len(b) == 0 {
		return nil, errorf(ErrBadMessage, "%s: empty message", what)
	}
	if v := r.u8("version"); v != Version {
		return nil, errorf(ErrVersion, "%s: version %d is not supported (this side speaks version %d)", what, v, Version)
	}
	return r, nil
}

// invalid wraps an error of a message's Validate method.
func invalid(op, what string, err error) error {
	return access.Errorf(access.Invalid, "canbus: %s %s: %w: %w", op, what, err, ErrBadMessage)
}

// finish checks a decoded message: no bytes left, then its schema.
func finish(r *reader, validate func() error) error {
	if err := r.end(); err != nil {
		return err
	}
	if err := validate(); err != nil {
		return invalid("decode", r.what, err)
	}
	return nil
}

// EncodeTap validates t and returns its encoding:
//
//	version u8 | flags u8 (01 wiegand, 02 time, 04 pin) | door id16 | request_id str8 |
//	wiegand: bits u8, frame in ceil(bits/8) bytes; else card uv | time u48 if flagged
//
// It returns t's validation error (wrapping ErrBadMessage and the
// mqttproto sentinel).
func EncodeTap(t mqttproto.Tap) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, invalid("encode", "tap", err)
	}
	w := begin()
	var flags byte
	if !t.Wiegand.IsZero() {
		flags |= tapWiegand
	}
	if !t.Time.IsZero() {
		flags |= tapTime
	}
	if t.PIN {
		flags |= tapPIN
	}
	w.u8(flags)
	w.id(t.Door)
	w.str8(t.RequestID)
	if flags&tapWiegand != 0 {
		n := (t.Wiegand.Bits + 7) / 8
		w.u8(byte(t.Wiegand.Bits))
		for i := n - 1; i >= 0; i-- {
			w.u8(byte(t.Wiegand.Frame >> (8 * i)))
		}
	} else {
		w.uv(uint64(t.Card))
	}
	if flags&tapTime != 0 {
		w.time(t.Time)
	}
	return w.b, nil
}

// DecodeTap decodes a tap. Like mqttproto.DecodeTap, it sets Card to the
// number of a Wiegand frame's credential. It returns an error wrapping
// ErrVersion or ErrBadMessage (and the mqttproto sentinel for a value the
// schema refuses). It is safe for concurrent use.
func DecodeTap(b []byte) (mqttproto.Tap, error) {
	r, err := open("tap", b)
	if err != nil {
		return mqttproto.Tap{}, err
	}
	var t mqttproto.Tap
	flags := r.flags("flags", tapWiegand|tapTime|tapPIN)
	t.Door = r.id("door")
	t.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
	if flags&tapWiegand != 0 {
		bits := int(r.u8("wiegand.bits"))
		if r.err == nil && (bits < 1 || bits > 64) {
			r.fail("wiegand.bits", "%d is not a frame length of 1 to 64 bits", bits)
		}
		for _, c := range r.take("wiegand.frame", (bits+7)/8) {
			t.Wiegand.Frame = t.Wiegand.Frame<<8 | uint64(c)
		}
		t.Wiegand.Bits = bits
	} else {
		t.Card = access.CardNumber(r.uv("card"))
	}
	if flags&tapTime != 0 {
		t.Time = r.time("time")
	}
	t.PIN = flags&tapPIN != 0
	if r.err == nil && flags&tapWiegand != 0 {
		if cred, err := t.Wiegand.Credential(); err == nil {
			t.Card = cred.Number()
		} // else Validate reports the frame
	}
	if err := finish(r, t.Validate); err != nil {
		return mqttproto.Tap{}, err
	}
	return t, nil
}

// EncodeDecision validates d and returns its encoding:
//
//	version u8 | flags u8 (01 online) | door id16 | reason u8 | time u48 |
//	request_id str8 | node str8 | unlock_ms u32 if reason is granted | cache_version uv
//
// A cache version of 0 means none. It returns d's validation error.
func EncodeDecision(d mqttproto.Decision) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, invalid("encode", "decision", err)
	}
	w := begin()
	var flags byte
	if d.Mode == access.Online {
		flags |= decisionOnline
	}
	w.u8(flags)
	w.id(d.Door)
	w.u8(reasonCode(d.Reason))
	w.time(d.Time)
	w.str8(d.RequestID)
	w.str8(d.Node)
	if d.Grant {
		w.u32(uint32(d.Unlock.Milliseconds()))
	}
	w.uv(d.CacheVersion)
	return w.b, nil
}

// DecodeDecision decodes a decision. It returns an error wrapping
// ErrVersion or ErrBadMessage. It is safe for concurrent use.
func DecodeDecision(b []byte) (mqttproto.Decision, error) {
	r, err := open("decision", b)
	if err != nil {
		return mqttproto.Decision{}, err
	}
	var d mqttproto.Decision
	if r.flags("flags", decisionOnline)&decisionOnline != 0 {
		d.Mode = access.Online
	} else {
		d.Mode = access.Offline
	}
	d.Door = r.id("door")
	d.Reason = r.reason("reason")
	d.Time = r.time("time")
	d.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
	d.Node = r.str8("node", mqttproto.MaxRequestID)
	if d.Reason == access.ReasonGranted {
		d.Grant = true
		d.Unlock = time.Duration(r.u32("unlock_ms")) * time.Millisecond
	}
	d.CacheVersion = r.uv("cache_version")
	if err := finish(r, d.Validate); err != nil {
		return mqttproto.Decision{}, err
	}
	return d, nil
}

// EncodeDoorEvent validates e and returns its encoding:
//
//	version u8 | type u8 | flags u8 (01 door, 02 card, 04 reason, 08 request_id,
//	10 cache_version, 20 error) | seq uv | time u48 | door id16 | card uv |
//	reason u8 | request_id str8 | cache_version uv | error str16
//
// each field after time present only when flagged. Grant is not sent: it is
// true exactly when the reason is granted. It returns e's validation error.
func EncodeDoorEvent(e mqttproto.DoorEvent) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, invalid("encode", "door event", err)
	}
	w := begin()
	w.u8(codeOf(wireEvents, e.Type))
	var flags byte
	if e.Door != "" {
		flags |= eventDoor
	}
	if e.Card != 0 {
		flags |= eventCard
	}
	if e.Reason != 0 {
		flags |= eventReason
	}
	if e.RequestID != "" {
		flags |= eventRequestID
	}
	if e.CacheVersion != 0 {
		flags |= eventCacheVersion
	}
	if e.Error != "" {
		flags |= eventError
	}
	w.u8(flags)
	w.uv(e.Seq)
	w.time(e.Time)
	if flags&eventDoor != 0 {
		w.id(e.Door)
	}
	if flags&eventCard != 0 {
		w.uv(uint64(e.Card))
	}
	if flags&eventReason != 0 {
		w.u8(reasonCode(e.Reason))
	}
	if flags&eventRequestID != 0 {
		w.str8(e.RequestID)
	}
	if flags&eventCacheVersion != 0 {
		w.uv(e.CacheVersion)
	}
	if flags&eventError != 0 {
		w.str16(e.Error)
	}
	return w.b, nil
}

// DecodeDoorEvent decodes a door event. It returns an error wrapping
// ErrVersion or ErrBadMessage. It is safe for concurrent use.
func DecodeDoorEvent(b []byte) (mqttproto.DoorEvent, error) {
	r, err := open("door event", b)
	if err != nil {
		return mqttproto.DoorEvent{}, err
	}
	var e mqttproto.DoorEvent
	c := r.u8("type")
	if r.err == nil && (c == 0 || int(c) >= len(wireEvents)) {
		r.fail("type", "unknown door event code %d", c)
	}
	if r.err == nil {
		e.Type = wireEvents[c]
	}
	flags := r.flags("flags", eventDoor|eventCard|eventReason|eventRequestID|eventCacheVersion|eventError)
	e.Seq = r.uv("seq")
	e.Time = r.time("time")
	if flags&eventDoor != 0 {
		e.Door = r.id("door")
	}
	if flags&eventCard != 0 {
		e.Card = access.CardNumber(r.nonZero("card"))
	}
	if flags&eventReason != 0 {
		e.Reason = r.reason("reason")
		e.Grant = e.Reason == access.ReasonGranted
	}
	if flags&eventRequestID != 0 {
		e.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
	}
	if flags&eventCacheVersion != 0 {
		e.CacheVersion = r.nonZero("cache_version")
	}
	if flags&eventError != 0 {
		e.Error = r.str16("error", mqttproto.MaxErrorText)
	}
	if err := finish(r, e.Validate); err != nil {
		return mqttproto.DoorEvent{}, err
	}
	return e, nil
}

// EncodeState validates s, which must be a door controller's state (or
// the offline state), and returns its encoding:
//
//	version u8 | flags u8 (01 online, 02 time, 04 door status, 08 tamper, 10 offline)
//	online only: firmware str8 | last_seq uv | time u48 if flagged |
//	door status only: count u8, then per door: door id16 | mode u8 | flags u8 (01 open, 02 fail_secure) | cache_version uv
//
// The offline state is the two bytes 01 00. It returns s's validation
// error, or one wrapping ErrBadMessage for the status of another kind of
// device.
func EncodeState(s mqttproto.State) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, invalid("encode", "state", err)
	}
	if s.Reader != nil || s.Kiosk != nil || s.Dispenser != nil {
		return nil, errorf(ErrBadMessage, "encode state: CAN carries the state of door controllers only")
	}
	w := begin()
	var flags byte
	if s.Online {
		flags |= stateOnline
	}
	if !s.Time.IsZero() {
		flags |= stateTime
	}
	if s.Door != nil {
		flags |= stateDoor
		if s.Door.Tamper {
			flags |= stateTamper
		}
		if s.Door.Offline {
			flags |= stateOffline
		}
	}
	w.u8(flags)
	if !s.Online {
		return w.b, nil
	}
	w.str8(s.Firmware)
	w.uv(s.LastSeq)
	if flags&stateTime != 0 {
		w.time(s.Time)
	}
	if s.Door != nil {
		w.u8(byte(len(s.Door.Doors)))
		for _, d := range s.Door.Doors {
			w.id(d.Door)
			w.u8(codeOf(wireModes, d.Mode))
			var df byte
			if d.Open {
				df |= doorOpen
			}
			if d.FailSecure {
				df |= doorFailSecure
			}
			w.u8(df)
			w.uv(d.CacheVersion)
		}
	}
	return w.b, nil
}

// DecodeState decodes a door controller's state. It returns an error
// wrapping ErrVersion or ErrBadMessage. It is safe for concurrent use.
func DecodeState(b []byte) (mqttproto.State, error) {
	r, err := open("state", b)
	if err != nil {
		return mqttproto.State{}, err
	}
	var s mqttproto.State
	flags := r.flags("flags", stateOnline|stateTime|stateDoor|stateTamper|stateOffline)
	switch {
	case r.err != nil:
	case flags&stateOnline == 0 && flags != 0:
		r.fail("flags", "the offline state has no flag but 00")
	case flags&stateDoor == 0 && flags&(stateTamper|stateOffline) != 0:
		r.fail("flags", "tamper and offline need the door status flag")
	}
	s.Online = flags&stateOnline != 0
	if s.Online && r.err == nil {
		s.Firmware = r.str8("firmware", mqttproto.MaxFirmware)
		s.LastSeq = r.uv("last_seq")
		if flags&stateTime != 0 {
			s.Time = r.time("time")
		}
		if flags&stateDoor != 0 {
			ds := &mqttproto.DoorStatus{Tamper: flags&stateTamper != 0, Offline: flags&stateOffline != 0}
			n := int(r.u8("door.doors"))
			if r.err == nil && n > mqttproto.MaxDoors {
				r.fail("door.doors", "%d doors, more than %d", n, mqttproto.MaxDoors)
			}
			for i := 0; i < n && r.err == nil; i++ {
				var d mqttproto.DoorState
				d.Door = r.id("door.doors.door")
				m := r.u8("door.doors.mode")
				if r.err == nil && (m == 0 || int(m) >= len(wireModes)) {
					r.fail("door.doors.mode", "unknown door mode code %d", m)
				}
				if r.err == nil {
					d.Mode = wireModes[m]
				}
				df := r.flags("door.doors.flags", doorOpen|doorFailSecure)
				d.Open, d.FailSecure = df&doorOpen != 0, df&doorFailSecure != 0
				d.CacheVersion = r.uv("door.doors.cache_version")
				ds.Doors = append(ds.Doors, d)
			}
			s.Door = ds
		}
	}
	if err := finish(r, s.Validate); err != nil {
		return mqttproto.State{}, err
	}
	return s, nil
}

// cmdTypes maps each door command type to its message type.
var cmdTypes = map[mqttproto.DoorCmdType]MsgType{
	mqttproto.DoorUnlock:       TypeUnlock,
	mqttproto.DoorSetMode:      TypeSetMode,
	mqttproto.DoorOfflineCache: TypeOfflineCache,
	mqttproto.DoorAck:          TypeAck,
	mqttproto.DoorHeartbeat:    TypeHeartbeat,
}

// EncodeDoorCmd validates c and returns its message type (one per command
// type) and encoding:
//
//	unlock:        version u8 | request_id str8 | door id16 | unlock_ms u32 | expires u48
//	set_mode:      version u8 | request_id str8 | door id16 | mode u8 (1 normal, 2 unlocked, 3 locked)
//	offline_cache: version u8 | flags u8 (01 high_security) | request_id str8 | door id16 |
//	               version uv | base uv | part u16 | parts u16 | max_offline_ms uv |
//	               entry count u16, entries | remove count u16, cards uv
//	               entry: flags u8 (01 from) | card uv | from u48 if flagged | until u48
//	ack:           version u8 | flags u8 (01 resend) | request_id str8 | seq uv
//	heartbeat:     version u8 | request_id str8 | time u48
//
// It returns c's validation error, or one wrapping ErrTooLarge when an
// offline cache part is longer than MaxMessage (split caches with
// mqttproto.OfflineCache.Cmds: its parts always fit).
func EncodeDoorCmd(c mqttproto.DoorCmd) (MsgType, []byte, error) {
	if err := c.Validate(); err != nil {
		return 0, nil, invalid("encode", "door cmd", err)
	}
	typ := cmdTypes[c.Type]
	w := begin()
	switch c.Type {
	case mqttproto.DoorUnlock:
		w.str8(c.RequestID)
		w.id(c.Door)
		w.u32(uint32(c.Unlock.Milliseconds()))
		w.time(c.Expires)
	case mqttproto.DoorSetMode:
		w.str8(c.RequestID)
		w.id(c.Door)
		w.u8(codeOf(wireModes, c.Mode))
	case mqttproto.DoorOfflineCache:
		var flags byte
		if c.HighSecurity {
			flags |= cacheHighSecurity
		}
		w.u8(flags)
		w.str8(c.RequestID)
		w.id(c.Door)
		w.uv(c.Version)
		w.uv(c.Base)
		w.u16(uint16(c.Part))
		w.u16(uint16(c.Parts))
		w.uv(uint64(c.MaxOffline.Milliseconds()))
		if len(c.Entries) > 0xFFFF || len(c.Remove) > 0xFFFF {
			return 0, nil, errorf(ErrTooLarge, "encode door cmd: %d entries and %d removals", len(c.Entries), len(c.Remove))
		}
		w.u16(uint16(len(c.Entries)))
		for _, x := range c.Entries {
			var ef byte
			if !x.From.IsZero() {
				ef |= entryFrom
			}
			w.u8(ef)
			w.uv(uint64(x.Card))
			if ef&entryFrom != 0 {
				w.time(x.From)
			}
			w.time(x.Until)
		}
		w.u16(uint16(len(c.Remove)))
		for _, n := range c.Remove {
			w.uv(uint64(n))
		}
	case mqttproto.DoorAck:
		var flags byte
		if c.Resend {
			flags |= ackResend
		}
		w.u8(flags)
		w.str8(c.RequestID)
		w.uv(c.Seq)
	case mqttproto.DoorHeartbeat:
		w.str8(c.RequestID)
		w.time(c.Time)
	}
	if len(w.b) > MaxMessage {
		return 0, nil, errorf(ErrTooLarge, "encode door cmd %s: %d bytes, more than %d", c.Type, len(w.b), MaxMessage)
	}
	return typ, w.b, nil
}

// DecodeDoorCmd decodes a door command carried by a message of type t,
// which selects the command type. It returns an error wrapping ErrVersion
// or ErrBadMessage (also for a t that is not a command type). It is safe
// for concurrent use.
func DecodeDoorCmd(t MsgType, b []byte) (mqttproto.DoorCmd, error) {
	var c mqttproto.DoorCmd
	for ct, mt := range cmdTypes {
		if mt == t {
			c.Type = ct
		}
	}
	if c.Type == "" {
		return mqttproto.DoorCmd{}, errorf(ErrBadMessage, "decode door cmd: %s is not a command type", t)
	}
	r, err := open("door cmd "+string(c.Type), b)
	if err != nil {
		return mqttproto.DoorCmd{}, err
	}
	switch c.Type {
	case mqttproto.DoorUnlock:
		c.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
		c.Door = r.id("door")
		c.Unlock = time.Duration(r.u32("unlock_ms")) * time.Millisecond
		c.Expires = r.time("expires")
	case mqttproto.DoorSetMode:
		c.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
		c.Door = r.id("door")
		m := r.u8("mode")
		if r.err == nil && (m == 0 || int(m) >= len(wireModes)) {
			r.fail("mode", "unknown door mode code %d", m)
		}
		if r.err == nil {
			c.Mode = wireModes[m]
		}
	case mqttproto.DoorOfflineCache:
		c.HighSecurity = r.flags("flags", cacheHighSecurity)&cacheHighSecurity != 0
		c.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
		c.Door = r.id("door")
		c.Version = r.uv("version")
		c.Base = r.uv("base")
		c.Part = int(r.u16("part"))
		c.Parts = int(r.u16("parts"))
		c.MaxOffline = r.ms("max_offline_ms")
		n := int(r.u16("entries"))
		// An entry takes at least 8 bytes: refuse a count the rest cannot
		// hold before allocating for it.
		if r.err == nil && n*8 > len(r.b)-r.off {
			r.fail("entries", "%d entries cannot fit in %d bytes", n, len(r.b)-r.off)
		}
		for i := 0; i < n && r.err == nil; i++ {
			var x mqttproto.CacheEntry
			ef := r.flags("entries.flags", entryFrom)
			x.Card = access.CardNumber(r.uv("entries.card"))
			if ef&entryFrom != 0 {
				x.From = r.time("entries.from")
			}
			x.Until = r.time("entries.until")
			c.Entries = append(c.Entries, x)
		}
		n = int(r.u16("remove"))
		if r.err == nil && n > len(r.b)-r.off {
			r.fail("remove", "%d cards cannot fit in %d bytes", n, len(r.b)-r.off)
		}
		for i := 0; i < n && r.err == nil; i++ {
			c.Remove = append(c.Remove, access.CardNumber(r.uv("remove.card")))
		}
	case mqttproto.DoorAck:
		c.Resend = r.flags("flags", ackResend)&ackResend != 0
		c.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
		c.Seq = r.uv("seq")
	case mqttproto.DoorHeartbeat:
		c.RequestID = r.str8("request_id", mqttproto.MaxRequestID)
		c.Time = r.time("time")
	}
	if err := finish(r, c.Validate); err != nil {
		return mqttproto.DoorCmd{}, err
	}
	return c, nil
}

// Encode validates m and returns the message type that carries it and its
// encoding. m must be an mqttproto.Tap, Decision, DoorEvent, DoorCmd or a
// door controller's State; any other message gets an error wrapping
// ErrBadMessage. Encode is safe for concurrent use.
func Encode(m mqttproto.Message) (MsgType, []byte, error) {
	switch m := m.(type) {
	case mqttproto.Tap:
		b, err := EncodeTap(m)
		return TypeTap, b, err
	case mqttproto.Decision:
		b, err := EncodeDecision(m)
		return TypeDecision, b, err
	case mqttproto.DoorEvent:
		b, err := EncodeDoorEvent(m)
		return TypeEvent, b, err
	case mqttproto.State:
		b, err := EncodeState(m)
		return TypeState, b, err
	case mqttproto.DoorCmd:
		return EncodeDoorCmd(m)
	}
	return 0, nil, errorf(ErrBadMessage, "encode: %T is not carried over CAN", m)
}

// Decode decodes message bytes b carried by a message of type t. It
// returns an mqttproto.Tap, Decision, DoorEvent, State or DoorCmd, or the
// decoder's error (ErrBadMessage also for an unknown t). Decode is safe for
// concurrent use.
func Decode(t MsgType, b []byte) (mqttproto.Message, error) {
	switch t {
	case TypeTap:
		return DecodeTap(b)
	case TypeDecision:
		return DecodeDecision(b)
	case TypeEvent:
		return DecodeDoorEvent(b)
	case TypeState:
		return DecodeState(b)
	}
	return DecodeDoorCmd(t, b)
}

// Priority returns the priority a sender gives message m:
// PrioRevocation for a lockdown (set_mode locked) and for an offline cache
// part that removes cards; PrioAlarm for the alarm events (forced_open,
// held_open, tamper, fail_secure); PrioTap for taps and decisions;
// PrioCommand for unlock, other set_mode commands and other events;
// PrioAck for acks and state; PrioCache for other cache parts; and
// PrioHeartbeat for heartbeats.
func Priority(m mqttproto.Message) uint8 {
	switch m := m.(type) {
	case mqttproto.Tap, mqttproto.Decision:
		return PrioTap
	case mqttproto.DoorEvent:
		switch m.Type {
		case mqttproto.DoorForcedOpen, mqttproto.DoorHeldOpen, mqttproto.DoorTamper, mqttproto.DoorFailSecure:
			return PrioAlarm
		}
		return PrioCommand
	case mqttproto.State:
		return PrioAck
	case mqttproto.DoorCmd:
		switch m.Type {
		case mqttproto.DoorSetMode:
			if m.Mode == mqttproto.DoorLocked {
				return PrioRevocation
			}
			return PrioCommand
		case mqttproto.DoorUnlock:
			return PrioCommand
		case mqttproto.DoorOfflineCache:
			if len(m.Remove) > 0 {
				return PrioRevocation
			}
			return PrioCache
		case mqttproto.DoorAck:
			return PrioAck
		}
		return PrioHeartbeat
	}
	return MaxPriority
}
