package mqttproto

import (
	"time"
)

// Version is the payload version this package speaks. Every payload carries
// it as "v"; a payload with any other version is refused with ErrVersion.
// Any change to a schema, even an added optional field, makes a new version
// (decoders refuse unknown fields, so old receivers could not ignore it).
const Version = 1

// Limits of the protocol. A payload or value outside them is refused with a
// clear error and changes nothing.
const (
	// MaxPayload is the largest payload of any message, in bytes.
	MaxPayload = 4096
	// MaxInteger is the largest integer a payload may carry (2^53-1), so
	// that parsers which read JSON numbers as doubles lose nothing. Card
	// numbers, which may be larger, travel as decimal strings.
	MaxInteger = 1<<53 - 1
	// MaxRequestID is the longest request ID, in bytes.
	MaxRequestID = 64
	// MaxNameLen is the longest site or device ID in a topic, in bytes.
	MaxNameLen = 64
	// MaxUnlock is the longest momentary unlock a decision or command may
	// ask for.
	MaxUnlock = 10 * time.Minute
	// MaxOfflineLimit is the largest maximum offline time of a
	// high-security door.
	MaxOfflineLimit = 365 * 24 * time.Hour
	// MaxCacheParts is the largest number of messages one offline cache
	// version may be split into.
	MaxCacheParts = 65535
	// MaxDoors is the most doors one door controller may report in its
	// state.
	MaxDoors = 16
	// MaxFaults is the most fault codes a state may list.
	MaxFaults = 16
	// MaxText is the longest display message, in bytes of UTF-8.
	MaxText = 512
	// MaxErrorText is the longest error text of a rejected command, in
	// bytes of UTF-8.
	MaxErrorText = 256
	// MaxToken is the longest scanned QR token, in bytes of UTF-8.
	MaxToken = 2048
	// MaxFirmware is the longest firmware version string, in bytes.
	MaxFirmware = 64
)

// MinTime and MaxTime bound every time a payload carries: a time is Unix
// milliseconds within [MinTime, MaxTime). The lower bound catches devices
// that send seconds or have never set their clock.
var (
	// MinTime is 2000-01-01T00:00:00Z.
	MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	// MaxTime is 2100-01-01T00:00:00Z.
	MaxTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Message is any payload of this protocol: Tap, Decision, DoorEvent,
// DoorCmd, KioskEvent, KioskCmd, DispenserEvent, DispenserCmd or State.
// Each is a plain value, safe to copy and to share between goroutines.
type Message interface {
	// Validate returns an error wrapping ErrMissingField, ErrUnknownField
	// or ErrBadValue for the first rule of the schema the message breaks.
	Validate() error
	// Marshal validates the message and returns its JSON payload, or an
	// error from Validate, or one wrapping ErrTooLarge when the payload
	// would exceed MaxPayload.
	Marshal() ([]byte, error)
}

// The payload types are the messages.
var (
	_ Message = Tap{}
	_ Message = Decision{}
	_ Message = DoorEvent{}
	_ Message = DoorCmd{}
	_ Message = KioskEvent{}
	_ Message = KioskCmd{}
	_ Message = DispenserEvent{}
	_ Message = DispenserCmd{}
	_ Message = State{}
)

// Decode decodes payload as the message that topic t carries: the decoder
// is chosen by t's channel and kind. It returns the message as one of the
// value types listed at Message, or an error wrapping ErrBadTopic when t is
// not a valid topic, or the decoder's error. Decode is safe for concurrent
// use.
func Decode(t Topic, payload []byte) (Message, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	switch t.Channel {
	case ChannelTap:
		return DecodeTap(payload)
	case ChannelDecision:
		return DecodeDecision(payload)
	case ChannelState:
		return DecodeState(t.Kind, payload)
	case ChannelEvent:
		switch t.Kind {
		case KindDoor:
			return DecodeDoorEvent(payload)
		case KindKiosk:
			return DecodeKioskEvent(payload)
		case KindDispenser:
			return DecodeDispenserEvent(payload)
		}
	case ChannelCmd:
		switch t.Kind {
		case KindDoor:
			return DecodeDoorCmd(payload)
		case KindKiosk:
			return DecodeKioskCmd(payload)
		case KindDispenser:
			return DecodeDispenserCmd(payload)
		}
	}
	// Unreachable: Validate refuses a channel the kind does not use.
	return nil, errorf("topic", ErrBadTopic, "%s carries no payload", t)
}

// finish checks the size of an encoded payload of message what.
func finish(what string, b []byte) ([]byte, error) {
	if len(b) > MaxPayload {
		return nil, errorf(what, ErrTooLarge, "encoded payload of %d bytes is more than the limit of %d", len(b), MaxPayload)
	}
	return b, nil
}
