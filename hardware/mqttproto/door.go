package mqttproto

import (
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// eventCommon and cmdCommon are the keys every event and every command has
// besides "v".
var (
	eventCommon = spec{req: []string{"type", "seq", "time"}}
	cmdCommon   = spec{req: []string{"type", "request_id"}}
)

// DoorEventType is the type of a DoorEvent.
type DoorEventType string

// The door event types.
const (
	// DoorOpened reports that the door sensor sees the door open. It needs
	// Door.
	DoorOpened DoorEventType = "door_opened"
	// DoorClosed reports that the door sensor sees the door closed, which
	// also ends a forced-open or held-open alarm. It needs Door.
	DoorClosed DoorEventType = "door_closed"
	// DoorRequestToExit reports that the request-to-exit button or sensor
	// fired. It needs Door.
	DoorRequestToExit DoorEventType = "request_to_exit"
	// DoorForcedOpen is an alarm: the door opened without a grant, an
	// unlock or a request to exit. It needs Door.
	DoorForcedOpen DoorEventType = "forced_open"
	// DoorHeldOpen is an alarm: the door stayed open longer than allowed
	// after it was released. It needs Door.
	DoorHeldOpen DoorEventType = "held_open"
	// DoorTamper is an alarm: the controller's enclosure, or the reader of
	// Door when it is set, was tampered with.
	DoorTamper DoorEventType = "tamper"
	// DoorTamperCleared reports that the tamper condition ended; Door is
	// as for DoorTamper.
	DoorTamperCleared DoorEventType = "tamper_cleared"
	// DoorOfflineDecision reports that the controller decided a tap alone
	// from its offline cache. It needs Door, Card, Grant and Reason;
	// RequestID is that of the tap when the controller had sent one to the
	// site, and CacheVersion the version of the cache it decided from.
	DoorOfflineDecision DoorEventType = "offline_decision"
	// DoorOfflineStarted reports that the controller lost its site and
	// decides alone from now on.
	DoorOfflineStarted DoorEventType = "offline_started"
	// DoorOfflineEnded reports that the controller has its site again.
	DoorOfflineEnded DoorEventType = "offline_ended"
	// DoorFailSecure reports that Door is high-security and the controller
	// has been cut off for longer than its maximum offline time; it denies
	// every card until the site is back. It needs Door.
	DoorFailSecure DoorEventType = "fail_secure"
	// DoorCmdRejected reports that the controller refused a command. It
	// needs RequestID (the command's) and Error.
	DoorCmdRejected DoorEventType = "cmd_rejected"
)

var doorEvents = newFamily("door event", eventCommon,
	typeSpec{string(DoorOpened), spec{req: []string{"door"}}},
	typeSpec{string(DoorClosed), spec{req: []string{"door"}}},
	typeSpec{string(DoorRequestToExit), spec{req: []string{"door"}}},
	typeSpec{string(DoorForcedOpen), spec{req: []string{"door"}}},
	typeSpec{string(DoorHeldOpen), spec{req: []string{"door"}}},
	typeSpec{string(DoorTamper), spec{opt: []string{"door"}}},
	typeSpec{string(DoorTamperCleared), spec{opt: []string{"door"}}},
	typeSpec{string(DoorOfflineDecision), spec{
		req: []string{"door", "card", "grant", "reason"},
		opt: []string{"request_id", "cache_version"},
	}},
	typeSpec{string(DoorOfflineStarted), spec{}},
	typeSpec{string(DoorOfflineEnded), spec{}},
	typeSpec{string(DoorFailSecure), spec{req: []string{"door"}}},
	typeSpec{string(DoorCmdRejected), spec{req: []string{"request_id", "error"}}},
)

// DoorEvent is something a door controller reports: topic
// gh/{site}/door/{device}/event, device to site. Every event carries the
// device's next sequence number (Seq, from 1, never reused, kept across
// restarts) and the time it happened; a controller that cannot reach its
// site buffers its events and publishes them later in Seq order with their
// original times, and the site acknowledges them with an ack command. Which
// of the other fields an event has depends on its Type (see the constants).
type DoorEvent struct {
	// Type says what happened and which other fields the event has.
	Type DoorEventType
	// Seq is the device's event sequence number, 1 to MaxInteger.
	Seq uint64
	// Time is when it happened, by the device's clock.
	Time time.Time
	// Door is the door concerned.
	Door access.ID
	// Card is the card of an offline decision.
	Card access.CardNumber
	// Grant says whether an offline decision opened the door.
	Grant bool
	// Reason explains an offline decision.
	Reason access.Reason
	// RequestID is the tap's (offline decision) or the command's
	// (cmd_rejected).
	RequestID string
	// CacheVersion is the offline cache version an offline decision was
	// made from.
	CacheVersion uint64
	// Error says why a command was rejected, up to MaxErrorText bytes.
	Error string
}

func (e DoorEvent) has(k string) bool {
	switch k {
	case "seq":
		return e.Seq != 0
	case "time":
		return !e.Time.IsZero()
	case "door":
		return e.Door != ""
	case "card":
		return e.Card != 0
	case "grant":
		return e.Grant || e.Type == DoorOfflineDecision
	case "reason":
		return e.Reason != 0
	case "request_id":
		return e.RequestID != ""
	case "cache_version":
		return e.CacheVersion != 0
	case "error":
		return e.Error != ""
	}
	return false
}

func (e DoorEvent) put(w *enc, k string) {
	switch k {
	case "seq":
		w.uintField(k, e.Seq)
	case "time":
		w.timeField(k, e.Time)
	case "door":
		w.strField(k, string(e.Door))
	case "card":
		w.cardField(k, uint64(e.Card))
	case "grant":
		w.boolField(k, e.Grant)
	case "reason":
		w.strField(k, e.Reason.String())
	case "request_id":
		w.strField(k, e.RequestID)
	case "cache_version":
		w.uintField(k, e.CacheVersion)
	case "error":
		w.strField(k, e.Error)
	}
}

// Validate checks e against the schema of its type. It returns an error
// wrapping ErrMissingField, ErrUnknownField (a field its type does not
// have) or ErrBadValue.
func (e DoorEvent) Validate() error {
	const what = "door event"
	if err := checkSeq(what, "seq", e.Seq); err != nil {
		return err
	}
	if err := checkTime(what, "time", e.Time); err != nil {
		return err
	}
	if err := doorEvents.checkSet(string(e.Type), e.has); err != nil {
		return err
	}
	if err := checkOptionalID(what, "door", e.Door); err != nil {
		return err
	}
	if e.Type == DoorOfflineDecision {
		if !validReason(e.Reason) {
			return badValue(what, "reason", "unknown reason %d", uint8(e.Reason))
		}
		if e.Grant != (e.Reason == access.ReasonGranted) {
			return badValue(what, "grant", "%t contradicts reason %q", e.Grant, e.Reason)
		}
	}
	if e.RequestID != "" {
		if err := checkRequestID(what, "request_id", e.RequestID); err != nil {
			return err
		}
	}
	if err := checkInteger(what, "cache_version", e.CacheVersion); err != nil {
		return err
	}
	return checkText(what, "error", e.Error, MaxErrorText, false)
}

// Marshal validates e and returns its payload.
func (e DoorEvent) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return doorEvents.encode(string(e.Type), e.has, e.put)
}

// DecodeDoorEvent decodes a door event payload. It returns an error wrapping
// ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField, ErrMissingField or
// ErrBadValue. It is safe for concurrent use.
func DecodeDoorEvent(b []byte) (DoorEvent, error) {
	var d decoder
	typ, err := doorEvents.begin(&d, b)
	if err != nil {
		return DoorEvent{}, err
	}
	e := DoorEvent{Type: DoorEventType(typ)}
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "seq":
			e.Seq = d.uint(m)
		case "time":
			e.Time = d.time(m)
		case "door":
			e.Door = d.id(m)
		case "card":
			e.Card = d.card(m)
		case "grant":
			e.Grant = d.bool(m)
		case "reason":
			e.Reason = d.reason(m)
		case "request_id":
			e.RequestID = d.str(m)
		case "cache_version":
			e.CacheVersion = d.uint(m)
		case "error":
			e.Error = d.str(m)
		}
	}
	if d.err != nil {
		return DoorEvent{}, d.err
	}
	if err := e.Validate(); err != nil {
		return DoorEvent{}, err
	}
	return e, nil
}

// DoorMode is the operating mode of a door, set with a set_mode command.
type DoorMode string

// The door modes.
const (
	// DoorNormal keeps the door locked; it opens on a granted tap, an
	// unlock command or a request to exit.
	DoorNormal DoorMode = "normal"
	// DoorUnlocked holds the door unlocked (free passage) until it is set
	// back to normal; taps are still reported.
	DoorUnlocked DoorMode = "unlocked"
	// DoorLocked is lockdown. The door stays locked: no tap opens it, online
	// or offline, and unlock commands are refused; request to exit still
	// releases it, so no one is trapped.
	DoorLocked DoorMode = "locked"
)

// Valid reports whether m is one of the door modes.
func (m DoorMode) Valid() bool { return m == DoorNormal || m == DoorUnlocked || m == DoorLocked }

// DoorCmdType is the type of a DoorCmd.
type DoorCmdType string

// The door command types.
const (
	// DoorUnlock asks the controller to release Door's lock for Unlock
	// (momentarily), unless its clock is past Expires or the door is
	// locked. It needs Door, Unlock and Expires.
	DoorUnlock DoorCmdType = "unlock"
	// DoorSetMode asks the controller to put Door in Mode until told
	// otherwise, keeping the mode across restarts. It needs Door and Mode.
	DoorSetMode DoorCmdType = "set_mode"
	// DoorOfflineCache carries one part of a version of Door's offline
	// cache; OfflineCache states the rules. It needs Door, Version, Part
	// and Parts.
	DoorOfflineCache DoorCmdType = "offline_cache"
	// DoorAck tells the device that the site has durably recorded every
	// event of this device up to and including Seq, so it may drop them.
	// With Resend, the site saw a gap after Seq and asks for every later
	// event still buffered, in order. It needs Seq.
	DoorAck DoorCmdType = "ack"
	// DoorHeartbeat tells the controller that the site is alive; Time is
	// the site's clock. The site sends one whenever it has sent the
	// controller nothing for HeartbeatInterval, and right after the
	// controller comes online; a controller that hears nothing from its
	// site for 3 intervals treats itself as cut off. It needs Time.
	DoorHeartbeat DoorCmdType = "heartbeat"
)

// HeartbeatInterval is the longest time between two messages from the site
// to a door controller: the site sends a heartbeat command when it has
// sent nothing else for this long.
const HeartbeatInterval = 10 * time.Second

var doorCmds = newFamily("door cmd", cmdCommon,
	typeSpec{string(DoorUnlock), spec{req: []string{"door", "unlock_ms", "expires"}}},
	typeSpec{string(DoorSetMode), spec{req: []string{"door", "mode"}}},
	typeSpec{string(DoorOfflineCache), spec{
		req: []string{"door", "version", "part", "parts"},
		opt: []string{"base", "high_security", "max_offline_ms", "entries", "remove"},
	}},
	typeSpec{string(DoorAck), spec{req: []string{"seq"}, opt: []string{"resend"}}},
	typeSpec{string(DoorHeartbeat), spec{req: []string{"time"}}},
)

// CacheEntry is one credential of an offline cache: a card that may open
// the door while the controller is cut off, from From (zero: already) until
// Until (required; the site sets it no later than the end of the card's,
// person's and grant's validity).
type CacheEntry struct {
	// Card is the card number.
	Card access.CardNumber
	// From is when the entry starts to be valid; zero means already.
	From time.Time
	// Until is when the entry stops being valid (exclusive); required.
	Until time.Time
}

var cacheEntrySpec = spec{req: []string{"card", "until"}, opt: []string{"from"}}

// validate checks entry x of field, named like "entries[3]".
func (c CacheEntry) validate(what, field string) error {
	if err := checkCard(what, field+".card", c.Card); err != nil {
		return err
	}
	if err := checkOptionalTime(what, field+".from", c.From); err != nil {
		return err
	}
	if err := checkTime(what, field+".until", c.Until); err != nil {
		return err
	}
	if !c.From.IsZero() && !c.Until.After(c.From) {
		return badValue(what, field+".until", "%d is not after from %d", c.Until.UnixMilli(), c.From.UnixMilli())
	}
	return nil
}

// DoorCmd is a command from the site to a door controller: topic
// gh/{site}/door/{device}/cmd, site to device. Every command has a
// RequestID chosen by the site; a controller that sees a RequestID again
// does not act again. Which of the other fields a command has depends on
// its Type (see the constants).
type DoorCmd struct {
	// Type says what to do and which other fields the command has.
	Type DoorCmdType
	// RequestID is chosen by the site, unique per command.
	RequestID string
	// Door is the door to act on (unlock, set_mode, offline_cache).
	Door access.ID
	// Unlock is how long an unlock releases the lock, 1 ms to MaxUnlock.
	Unlock time.Duration
	// Expires is the site time after which an unlock must not be done.
	Expires time.Time
	// Mode is the mode a set_mode command sets.
	Mode DoorMode
	// Version is the offline cache version a part belongs to.
	Version uint64
	// Base is the version a delta applies to; zero for a full cache.
	Base uint64
	// Part numbers this part from 1 to Parts.
	Part int
	// Parts is how many parts the cache version has.
	Parts int
	// HighSecurity marks the door as failing secure after MaxOffline.
	HighSecurity bool
	// MaxOffline is the door's maximum offline time, 0 to MaxOfflineLimit.
	MaxOffline time.Duration
	// Entries are credentials to add or replace.
	Entries []CacheEntry
	// Remove lists cards to remove (deltas only).
	Remove []access.CardNumber
	// Seq is the last event an ack acknowledges.
	Seq uint64
	// Resend asks the device to publish every event after Seq again.
	Resend bool
	// Time is the site's clock in a heartbeat.
	Time time.Time
}

func (c DoorCmd) has(k string) bool {
	switch k {
	case "request_id":
		return c.RequestID != ""
	case "door":
		return c.Door != ""
	case "unlock_ms":
		return c.Unlock != 0
	case "expires":
		return !c.Expires.IsZero()
	case "mode":
		return c.Mode != ""
	case "version":
		return c.Version != 0
	case "base":
		return c.Base != 0
	case "part":
		return c.Part != 0
	case "parts":
		return c.Parts != 0
	case "high_security":
		return c.HighSecurity
	case "max_offline_ms":
		return c.MaxOffline != 0
	case "entries":
		return len(c.Entries) != 0
	case "remove":
		return len(c.Remove) != 0
	case "seq":
		return c.Seq != 0
	case "resend":
		return c.Resend
	case "time":
		return !c.Time.IsZero()
	}
	return false
}

func (c DoorCmd) put(w *enc, k string) {
	switch k {
	case "request_id":
		w.strField(k, c.RequestID)
	case "door":
		w.strField(k, string(c.Door))
	case "unlock_ms":
		w.msField(k, c.Unlock)
	case "expires":
		w.timeField(k, c.Expires)
	case "mode":
		w.strField(k, string(c.Mode))
	case "version":
		w.uintField(k, c.Version)
	case "base":
		w.uintField(k, c.Base)
	case "part":
		w.uintField(k, uint64(c.Part))
	case "parts":
		w.uintField(k, uint64(c.Parts))
	case "high_security":
		w.boolField(k, c.HighSecurity)
	case "max_offline_ms":
		w.msField(k, c.MaxOffline)
	case "entries":
		w.key(k)
		w.openArray()
		for _, x := range c.Entries {
			putCacheEntry(w, x)
		}
		w.closeArray()
	case "remove":
		w.key(k)
		w.openArray()
		for _, n := range c.Remove {
			w.sep()
			w.b = append(w.b, '"')
			w.b = strconv.AppendUint(w.b, uint64(n), 10)
			w.b = append(w.b, '"')
		}
		w.closeArray()
	case "seq":
		w.uintField(k, c.Seq)
	case "resend":
		w.boolField(k, c.Resend)
	case "time":
		w.timeField(k, c.Time)
	}
}

func putCacheEntry(w *enc, x CacheEntry) {
	w.open()
	w.cardField("card", uint64(x.Card))
	if !x.From.IsZero() {
		w.timeField("from", x.From)
	}
	w.timeField("until", x.Until)
	w.close()
}

// Validate checks c against the schema of its type. It returns an error
// wrapping ErrMissingField, ErrUnknownField (a field its type does not
// have) or ErrBadValue.
func (c DoorCmd) Validate() error {
	const what = "door cmd"
	if err := checkRequestID(what, "request_id", c.RequestID); err != nil {
		return err
	}
	if err := doorCmds.checkSet(string(c.Type), c.has); err != nil {
		return err
	}
	if err := checkOptionalID(what, "door", c.Door); err != nil {
		return err
	}
	switch c.Type {
	case DoorUnlock:
		if err := checkMillis(what, "unlock_ms", c.Unlock, time.Millisecond, MaxUnlock); err != nil {
			return err
		}
		return checkTime(what, "expires", c.Expires)
	case DoorSetMode:
		if !c.Mode.Valid() {
			return badValue(what, "mode", "unknown mode %q (want normal, unlocked or locked)", c.Mode)
		}
	case DoorOfflineCache:
		return c.validateCache(what)
	case DoorAck:
		return checkSeq(what, "seq", c.Seq)
	case DoorHeartbeat:
		return checkTime(what, "time", c.Time)
	}
	return nil
}

func (c DoorCmd) validateCache(what string) error {
	if err := checkInteger(what, "version", c.Version); err != nil {
		return err
	}
	if c.Base >= c.Version {
		return badValue(what, "base", "%d is not below version %d", c.Base, c.Version)
	}
	if c.Parts < 1 || c.Parts > MaxCacheParts {
		return badValue(what, "parts", "%d is outside 1..%d", c.Parts, MaxCacheParts)
	}
	if c.Part < 1 || c.Part > c.Parts {
		return badValue(what, "part", "%d is outside 1..%d (parts)", c.Part, c.Parts)
	}
	if err := checkMillis(what, "max_offline_ms", c.MaxOffline, 0, MaxOfflineLimit); err != nil {
		return err
	}
	if c.Base == 0 && len(c.Remove) != 0 {
		return badValue(what, "remove", "a full cache (no base) removes nothing")
	}
	seen := make(map[access.CardNumber]string, len(c.Entries)+len(c.Remove))
	for i, x := range c.Entries {
		f := "entries[" + strconv.Itoa(i) + "]"
		if err := x.validate(what, f); err != nil {
			return err
		}
		if p, dup := seen[x.Card]; dup {
			return badValue(what, f+".card", "card %d is also in %s", uint64(x.Card), p)
		}
		seen[x.Card] = f
	}
	for i, n := range c.Remove {
		f := "remove[" + strconv.Itoa(i) + "]"
		if err := checkCard(what, f, n); err != nil {
			return err
		}
		if p, dup := seen[n]; dup {
			return badValue(what, f, "card %d is also in %s", uint64(n), p)
		}
		seen[n] = f
	}
	return nil
}

// Marshal validates c and returns its payload. A cache part with too many
// entries for MaxPayload gets an error wrapping ErrTooLarge; OfflineCache.Cmds
// splits a cache into parts that fit.
func (c DoorCmd) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return doorCmds.encode(string(c.Type), c.has, c.put)
}

// DecodeDoorCmd decodes a door command payload. It returns an error wrapping
// ErrTooLarge, ErrSyntax, ErrVersion, ErrUnknownField, ErrMissingField or
// ErrBadValue. It is safe for concurrent use.
func DecodeDoorCmd(b []byte) (DoorCmd, error) {
	var d decoder
	typ, err := doorCmds.begin(&d, b)
	if err != nil {
		return DoorCmd{}, err
	}
	c := DoorCmd{Type: DoorCmdType(typ)}
	for _, m := range d.o.members() {
		switch string(m.key) {
		case "request_id":
			c.RequestID = d.str(m)
		case "door":
			c.Door = d.id(m)
		case "unlock_ms":
			c.Unlock = d.ms(m)
		case "expires":
			c.Expires = d.time(m)
		case "mode":
			c.Mode = DoorMode(d.str(m))
		case "version":
			c.Version = d.uint(m)
		case "base":
			c.Base = d.uint(m)
		case "part":
			c.Part = int(d.uint(m))
		case "parts":
			c.Parts = int(d.uint(m))
		case "high_security":
			c.HighSecurity = d.bool(m)
		case "max_offline_ms":
			c.MaxOffline = d.ms(m)
		case "entries":
			d.array(m, func(i int, e member) {
				if x, ok := d.cacheEntry(e); ok {
					c.Entries = append(c.Entries, x)
				}
			})
		case "remove":
			d.array(m, func(i int, e member) {
				if n := d.card(e); d.err == nil {
					c.Remove = append(c.Remove, n)
				}
			})
		case "seq":
			c.Seq = d.uint(m)
		case "resend":
			c.Resend = d.bool(m)
		case "time":
			c.Time = d.time(m)
		}
	}
	if d.err != nil {
		return DoorCmd{}, d.err
	}
	if err := c.Validate(); err != nil {
		return DoorCmd{}, err
	}
	return c, nil
}

// cacheEntry returns element e of an entries array.
func (d *decoder) cacheEntry(e member) (CacheEntry, bool) {
	var nd decoder
	if !d.nested(e, d.field(e)+".", 3, &nd) {
		return CacheEntry{}, false
	}
	if err := nd.checkKeys(false, cacheEntrySpec, nil, ""); err != nil {
		d.err = err
		return CacheEntry{}, false
	}
	var x CacheEntry
	for _, f := range nd.o.members() {
		switch string(f.key) {
		case "card":
			x.Card = nd.card(f)
		case "from":
			x.From = nd.time(f)
		case "until":
			x.Until = nd.time(f)
		}
	}
	d.err = nd.err
	return x, d.err == nil
}

// OfflineCache is one version of a door's offline cache as the site holds
// it, before it is split into offline_cache commands by Cmds. The rules a
// controller follows:
//
//   - Version numbers the cache; the site makes a new, higher one for every
//     change. The controller reports the version it holds in its state.
//   - Base 0 makes a full cache: the controller replaces its whole cache by
//     Entries. Otherwise it is a delta on version Base: the controller
//     applies it only when it holds exactly Base (removing the Remove cards
//     and adding or replacing Entries), and rejects it otherwise (a
//     cmd_rejected event) so that the site sends a full cache.
//   - A version travels in Parts commands numbered 1..Parts, all with the
//     same Version, Base, HighSecurity and MaxOffline; the controller
//     applies the version once it has every part, all at once, stores it so
//     that it survives restarts, and then reports it. Parts of an older
//     version than one being collected are dropped.
//   - HighSecurity and MaxOffline are the door's settings: a high-security
//     door fails secure once the controller has been cut off for longer
//     than MaxOffline (zero: at once). MaxOffline means nothing for other
//     doors.
//   - A cut-off controller grants a card only when an entry for it covers
//     the time of the tap: From <= t < Until.
type OfflineCache struct {
	// Door is the door whose cache this is.
	Door access.ID
	// Version is the cache's version, at least 1.
	Version uint64
	// Base is the version a delta applies to; zero for a full cache.
	Base uint64
	// HighSecurity is the door's high-security flag.
	HighSecurity bool
	// MaxOffline is the door's maximum offline time.
	MaxOffline time.Duration
	// Entries are the credentials of a full cache, or those a delta adds
	// or replaces.
	Entries []CacheEntry
	// Remove lists the cards a delta removes.
	Remove []access.CardNumber
}

// Cmds splits c into offline_cache commands, each of which fits in
// MaxPayload, with request IDs requestID.1, requestID.2, and so on. A cache
// without entries is one command (an empty full cache clears the
// controller's). requestID must leave room for the suffix: at most
// MaxRequestID-6 characters. Cmds returns an error wrapping ErrBadValue (or
// ErrMissingField) when c or requestID is invalid, including the same card
// twice, and one wrapping ErrTooLarge when c needs more than MaxCacheParts
// parts.
func (c OfflineCache) Cmds(requestID string) ([]DoorCmd, error) {
	const what = "offline cache"
	if err := checkRequestID(what, "request_id", requestID); err != nil {
		return nil, err
	}
	if len(requestID) > MaxRequestID-6 {
		return nil, badValue(what, "request_id", "%d characters leave no room for the part suffix (at most %d)", len(requestID), MaxRequestID-6)
	}
	proto := DoorCmd{
		Type: DoorOfflineCache, RequestID: requestID + ".65535", Door: c.Door,
		Version: c.Version, Base: c.Base, Part: MaxCacheParts, Parts: MaxCacheParts,
		HighSecurity: c.HighSecurity, MaxOffline: c.MaxOffline,
		Entries: c.Entries, Remove: c.Remove,
	}
	// Validating the whole cache as one command checks every entry and
	// finds duplicates across what will become separate parts.
	if err := proto.Validate(); err != nil {
		return nil, err
	}
	proto.Entries, proto.Remove = nil, nil
	head, err := doorCmds.encode(string(DoorOfflineCache), proto.has, proto.put)
	if err != nil {
		return nil, err
	}
	budget := MaxPayload - len(head) - len(`,"entries":[]`) - len(`,"remove":[]`)

	var cmds []DoorCmd
	cur, used := proto, 0
	flush := func() {
		cmds = append(cmds, cur)
		cur, used = proto, 0
	}
	var w enc
	for _, x := range c.Entries {
		w.b = w.b[:0]
		putCacheEntry(&w, x)
		n := len(w.b) + 1
		if used > 0 && used+n > budget {
			flush()
		}
		cur.Entries = append(cur.Entries, x)
		used += n
	}
	for _, r := range c.Remove {
		n := len(strconv.FormatUint(uint64(r), 10)) + 3
		if used > 0 && used+n > budget {
			flush()
		}
		cur.Remove = append(cur.Remove, r)
		used += n
	}
	flush()
	if len(cmds) > MaxCacheParts {
		return nil, errorf(what, ErrTooLarge, "%d entries and %d removals need %d parts, more than %d",
			len(c.Entries), len(c.Remove), len(cmds), MaxCacheParts)
	}
	for i := range cmds {
		cmds[i].RequestID = requestID + "." + strconv.Itoa(i+1)
		cmds[i].Part, cmds[i].Parts = i+1, len(cmds)
	}
	return cmds, nil
}
