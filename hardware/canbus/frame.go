package canbus

import (
	"encoding/hex"
	"strings"
	"time"

	"github.com/brutella/can"
)

// FrameKind is the kind of a frame, the high nibble of its first data byte
// (the protocol control information of ISO 15765-2).
type FrameKind uint8

// The frame kinds.
const (
	// SingleFrame carries a whole message of 1 to 7 bytes.
	SingleFrame FrameKind = 0x0
	// FirstFrame starts a segmented message and announces its length.
	FirstFrame FrameKind = 0x1
	// ConsecutiveFrame carries the next 7 (or, last, fewer) bytes of a
	// segmented message.
	ConsecutiveFrame FrameKind = 0x2
	// FlowControl is the receiver's answer to a first frame (and, with a
	// block size, to each block): continue, wait, or overflow.
	FlowControl FrameKind = 0x3
)

// String returns the kind's ISO 15765-2 abbreviation: SF, FF, CF or FC.
func (k FrameKind) String() string {
	switch k {
	case SingleFrame:
		return "SF"
	case FirstFrame:
		return "FF"
	case ConsecutiveFrame:
		return "CF"
	case FlowControl:
		return "FC"
	}
	return "kind(" + string("0123456789abcdef"[k&15]) + ")"
}

// FlowStatus is the status of a flow control frame.
type FlowStatus uint8

// The flow statuses.
const (
	// FlowContinue (clear to send) lets the sender send the next block.
	FlowContinue FlowStatus = 0
	// FlowWait asks the sender to keep waiting for another flow control
	// frame.
	FlowWait FlowStatus = 1
	// FlowOverflow refuses the message: it is longer than the receiver
	// takes. The sender aborts with ErrOverflow.
	FlowOverflow FlowStatus = 2
)

// Limits of segmentation.
const (
	// MaxMessage is the longest message, in bytes. A segmented message
	// travels with a 4-byte CRC-32, and a first frame announces at most
	// 4095 bytes.
	MaxMessage = maxTransport - crcLen
	// maxTransport is the most bytes a first frame can announce (12 bits).
	maxTransport = 4095
	// crcLen is the length of the CRC-32 after a segmented message.
	crcLen = 4
	// maxSingle is the most message bytes a single frame carries.
	maxSingle = 7
	// minSegmented is the shortest transport length of a segmented
	// message: 8 message bytes and the CRC.
	minSegmented = maxSingle + 1 + crcLen
)

// Frame is one CAN frame of this protocol: its identifier and its 0 to 8
// data bytes. The zero Frame is not valid; build frames with Segment or
// FlowControlFrame, or decode them with DecodeFrame.
type Frame struct {
	// ID is the decoded identifier.
	ID FrameID
	// Len is the data length (the DLC), 1 to 8.
	Len uint8
	// Data holds the data bytes; bytes from Len on are zero.
	Data [8]byte
}

// Payload returns the frame's data bytes, Data[:Len], as a slice of f's
// own array (not a copy).
func (f *Frame) Payload() []byte { return f.Data[:min(int(f.Len), 8)] }

// Kind returns the frame's kind, from its first data byte.
func (f Frame) Kind() FrameKind { return FrameKind(f.Data[0] >> 4) }

// String returns f in candump's compact form, such as "0802000A#0312345678".
func (f Frame) String() string {
	return f.ID.String() + "#" + strings.ToUpper(hex.EncodeToString(f.Payload()))
}

// Check reports whether f is a well-formed frame of this protocol: a valid
// identifier (FrameID.Check), the direction its kind and type require
// (data frames of tap, event and state from a controller to the gateway,
// the other types from the gateway; flow control the other way), and a
// protocol control byte that fits the data length:
//
//   - SF: 0x0L with L 1..7 and exactly L bytes after it;
//   - FF: 0x1H LL announcing 12..4095 bytes (H LL a 12-bit length),
//     with 8 data bytes;
//   - CF: 0x2N (N the sequence number) and 1 to 7 bytes after it;
//   - FC: 0x3S BS ST, exactly 3 bytes, S 0..2, ST a valid separation time
//     (0x00..0x7F milliseconds, 0xF1..0xF9 hundreds of microseconds).
//
// It returns an error wrapping ErrBadFrame.
func (f Frame) Check() error {
	if err := f.ID.Check(); err != nil {
		return err
	}
	if f.Len < 1 || f.Len > 8 {
		return errorf(ErrBadFrame, "%s: data length %d, want 1 to 8", f.ID, f.Len)
	}
	for _, b := range f.Data[f.Len:] {
		if b != 0 {
			return errorf(ErrBadFrame, "%s: data beyond the length %d is not zero", f.ID, f.Len)
		}
	}
	up := f.ID.Dst == GatewayAddr
	kind := f.Kind()
	if kind == FlowControl {
		up = !up
	}
	if up != f.ID.Type.Up() {
		dir := "down (gateway to controller)"
		if f.ID.Type.Up() {
			dir = "up (controller to gateway)"
		}
		if kind == FlowControl {
			return errorf(ErrBadFrame, "%s: flow control for %s must travel opposite to its messages, which go %s", f, f.ID.Type, dir)
		}
		return errorf(ErrBadFrame, "%s: %s messages travel %s only", f, f.ID.Type, dir)
	}
	low := int(f.Data[0] & 0x0F)
	switch kind {
	case SingleFrame:
		if low < 1 || low > maxSingle {
			return errorf(ErrBadFrame, "%s: single frame length %d, want 1 to %d", f, low, maxSingle)
		}
		if int(f.Len) != 1+low {
			return errorf(ErrBadFrame, "%s: single frame of %d bytes has data length %d, want %d (no padding)", f, low, f.Len, 1+low)
		}
	case FirstFrame:
		if f.Len != 8 {
			return errorf(ErrBadFrame, "%s: first frame has data length %d, want 8", f, f.Len)
		}
		if n := low<<8 | int(f.Data[1]); n < minSegmented {
			return errorf(ErrBadFrame, "%s: first frame announces %d bytes, want %d to %d", f, n, minSegmented, maxTransport)
		}
	case ConsecutiveFrame:
		if f.Len < 2 {
			return errorf(ErrBadFrame, "%s: consecutive frame carries no data", f)
		}
	case FlowControl:
		if f.Len != 3 {
			return errorf(ErrBadFrame, "%s: flow control has data length %d, want 3", f, f.Len)
		}
		if FlowStatus(low) > FlowOverflow {
			return errorf(ErrBadFrame, "%s: unknown flow status %d", f, low)
		}
		if _, ok := decodeSTmin(f.Data[2]); !ok {
			return errorf(ErrBadFrame, "%s: separation time 0x%02x is reserved", f, f.Data[2])
		}
	default:
		return errorf(ErrBadFrame, "%s: unknown frame kind 0x%x", f, uint8(kind))
	}
	return nil
}

// DecodeFrame converts a frame read from the bus and checks it: it must be
// an extended data frame (can.MaskEff set; can.MaskRtr and can.MaskErr
// clear), with a data length of 1 to 8, Flags, Res0 and Res1 zero (classic
// CAN, no FD), and pass Frame.Check. Data bytes beyond the length are
// ignored. It returns an error wrapping ErrBadFrame. DecodeFrame is pure
// and safe for concurrent use.
func DecodeFrame(cf can.Frame) (Frame, error) {
	switch {
	case cf.ID&can.MaskErr != 0:
		return Frame{}, errorf(ErrBadFrame, "error frame (id 0x%08x)", cf.ID)
	case cf.ID&can.MaskRtr != 0:
		return Frame{}, errorf(ErrBadFrame, "remote (RTR) frame (id 0x%08x): this protocol sends data frames only", cf.ID)
	case cf.ID&can.MaskEff == 0:
		return Frame{}, errorf(ErrBadFrame, "standard 11-bit frame (id 0x%03x): this protocol uses 29-bit extended identifiers", cf.ID&can.MaskIDSff)
	case cf.Length > can.MaxFrameDataLength:
		return Frame{}, errorf(ErrBadFrame, "data length %d is above 8 (CAN FD is not supported)", cf.Length)
	case cf.Flags != 0 || cf.Res0 != 0 || cf.Res1 != 0:
		return Frame{}, errorf(ErrBadFrame, "flags 0x%02x, res0 0x%02x, res1 0x%02x: want zero (classic CAN)", cf.Flags, cf.Res0, cf.Res1)
	}
	id, err := ParseFrameID(cf.ID & can.MaskIDEff)
	if err != nil {
		return Frame{}, err
	}
	f := Frame{ID: id, Len: cf.Length}
	copy(f.Data[:f.Len], cf.Data[:cf.Length])
	if err := f.Check(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// CAN returns f as a frame of package can, with the extended-frame flag
// set. It does not check f.
func (f Frame) CAN() can.Frame {
	return can.Frame{ID: f.ID.Raw() | rawEffFlag, Length: f.Len, Data: f.Data}
}

// FlowControlFrame returns the flow control frame answering a message
// whose frames carry identifier id: status, block size bs (0: no further
// flow control) and separation time st.
func FlowControlFrame(id FrameID, status FlowStatus, bs uint8, st time.Duration) Frame {
	f := Frame{ID: id.Reply(), Len: 3}
	f.Data[0] = byte(FlowControl)<<4 | byte(status)
	f.Data[1] = bs
	f.Data[2] = encodeSTmin(st)
	return f
}

// FlowParams are the fields of a flow control frame.
type FlowParams struct {
	// Status is continue, wait or overflow.
	Status FlowStatus
	// BlockSize is how many consecutive frames the sender may send before
	// it waits for the next flow control frame; 0 means all of them.
	BlockSize uint8
	// STmin is the least time between two consecutive frames.
	STmin time.Duration
}

// Flow returns the fields of flow control frame f, which must have passed
// Check.
func (f Frame) Flow() FlowParams {
	st, _ := decodeSTmin(f.Data[2])
	return FlowParams{Status: FlowStatus(f.Data[0] & 0x0F), BlockSize: f.Data[1], STmin: st}
}

// decodeSTmin decodes a separation time byte of ISO 15765-2.
func decodeSTmin(b byte) (time.Duration, bool) {
	switch {
	case b <= 0x7F:
		return time.Duration(b) * time.Millisecond, true
	case b >= 0xF1 && b <= 0xF9:
		return time.Duration(b-0xF0) * 100 * time.Microsecond, true
	}
	return 0, false
}

// encodeSTmin encodes a separation time, rounding up to what the byte can
// express and capping at 127 ms.
func encodeSTmin(d time.Duration) byte {
	switch {
	case d <= 0:
		return 0
	case d <= 900*time.Microsecond:
		return 0xF0 + byte((d+100*time.Microsecond-1)/(100*time.Microsecond))
	case d >= 127*time.Millisecond:
		return 0x7F
	}
	return byte((d + time.Millisecond - 1) / time.Millisecond)
}
