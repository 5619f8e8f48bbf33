package canbus

import (
	"github.com/gatehouse/gatehouse/access"
)

// Sentinel errors. Each is an *access.Error, so access.ErrorCode classifies
// every error this package returns: Invalid for input that breaks the
// protocol (retrying the same frames fails again), Unavailable for a bus
// that is closed or a peer that did not answer in time. Match the kind of
// problem with errors.Is. Errors about a message that decodes but breaks
// the schema of package mqttproto also wrap that package's sentinel (such
// as mqttproto.ErrBadValue).
var (
	// ErrBadFrame (invalid) reports a CAN frame that is not a frame of this
	// protocol: a standard (11-bit) identifier, a remote (RTR) or error
	// frame, a data length above 8, reserved identifier bits or flags set,
	// an address pair that is not one controller and the gateway, an
	// unknown message type, a frame sent in the wrong direction, or a
	// malformed protocol control byte.
	ErrBadFrame error = &access.Error{Code: access.Invalid, Msg: "bad frame"}
	// ErrSequence (invalid) reports frames that break the segmentation
	// rules: a consecutive frame without a first frame, a sequence number
	// that skips (lost or reordered frames), a duplicate that differs from
	// the frame it repeats, a first or single frame that interrupts a
	// message, or a flow control frame the sender cannot follow.
	ErrSequence error = &access.Error{Code: access.Invalid, Msg: "segmentation error"}
	// ErrChecksum (invalid) reports a segmented message whose CRC-32 does
	// not match its bytes.
	ErrChecksum error = &access.Error{Code: access.Invalid, Msg: "checksum mismatch"}
	// ErrTooLarge (invalid) reports a message longer than MaxMessage bytes,
	// announced or to be sent.
	ErrTooLarge error = &access.Error{Code: access.Invalid, Msg: "message too large"}
	// ErrOverflow (invalid) reports that the receiver answered a first
	// frame with flow status overflow: it cannot take a message that long.
	ErrOverflow error = &access.Error{Code: access.Invalid, Msg: "receiver overflow"}
	// ErrBadMessage (invalid) reports message bytes that do not decode:
	// truncated, with bytes left over, an unknown code, reserved flag bits
	// set, a non-minimal varint, or a value the schema refuses.
	ErrBadMessage error = &access.Error{Code: access.Invalid, Msg: "bad message"}
	// ErrVersion (invalid) reports a message whose version byte is not
	// Version.
	ErrVersion error = &access.Error{Code: access.Invalid, Msg: "unsupported version"}
	// ErrTimeout (unavailable) reports a reassembly that waited longer than
	// its timeout for the next frame, or a sender that waited longer than
	// its flow timeout for flow control.
	ErrTimeout error = &access.Error{Code: access.Unavailable, Msg: "timeout"}
	// ErrClosed (unavailable) reports a bus, node or gateway that is
	// closed, or a transport whose peer went away.
	ErrClosed error = &access.Error{Code: access.Unavailable, Msg: "closed"}
)

// errorf returns an error of code with text "canbus: FORMAT: SENTINEL",
// wrapping sentinel and every %w operand of format.
func errorf(sentinel error, format string, args ...any) error {
	return access.Errorf(access.ErrorCode(sentinel), "canbus: "+format+": %w", append(args, sentinel)...)
}

// ErrConfig (invalid) reports a transport configuration that Config.Validate
// refuses.
var ErrConfig error = &access.Error{Code: access.Invalid, Msg: "bad configuration"}
