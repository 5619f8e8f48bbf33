package canbus

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/brutella/can"
	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// The fuzz targets check, for any input, that decoding never panics, that
// a refusal is an access.Invalid error of this package wrapping one of its
// sentinels, and that what is accepted is canonical: it encodes back to
// exactly the input. Seeds are the samples, their frames and some broken
// ones; found inputs are kept in testdata/fuzz.

var sentinels = []error{ErrBadFrame, ErrSequence, ErrChecksum, ErrTooLarge, ErrOverflow, ErrBadMessage, ErrVersion, ErrTimeout}

// checkRefusal fails unless err is a well-formed refusal.
func checkRefusal(t *testing.T, in []byte, err error) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), "canbus: ") {
		t.Fatalf("input %x: error %q does not start with \"canbus: \"", in, err)
	}
	if c := access.ErrorCode(err); c != access.Invalid && !errors.Is(err, ErrTimeout) {
		t.Fatalf("input %x: error %q has code %s", in, err, c)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("input %x: error %q wraps no sentinel", in, err)
}

// messageSeeds adds every sample's encoding of type typ, and its halves.
func messageSeeds(f *testing.F, typ func(MsgType) bool) {
	for _, s := range samples() {
		mt, b, err := Encode(s.msg)
		if err != nil {
			f.Fatal(err)
		}
		if typ(mt) {
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	f.Add([]byte{})
	f.Add([]byte{Version})
	f.Add([]byte{Version + 1, 0})
}

// fuzzDecode decodes in as a message of type typ and checks the outcome.
func fuzzDecode(t *testing.T, typ MsgType, in []byte) {
	m, err := Decode(typ, in)
	if err != nil {
		checkRefusal(t, in, err)
		return
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("decoded %x to an invalid %#v: %v", in, m, err)
	}
	mt, out, err := Encode(m)
	if err != nil {
		t.Fatalf("decoded %x to %#v, which does not encode: %v", in, m, err)
	}
	if mt != typ || !bytes.Equal(out, in) {
		t.Fatalf("decoded %x (%s) re-encodes as %x (%s)", in, typ, out, mt)
	}
}

func FuzzDecodeTap(f *testing.F) {
	messageSeeds(f, func(t MsgType) bool { return t == TypeTap })
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, TypeTap, in) })
}

func FuzzDecodeDecision(f *testing.F) {
	messageSeeds(f, func(t MsgType) bool { return t == TypeDecision })
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, TypeDecision, in) })
}

func FuzzDecodeDoorEvent(f *testing.F) {
	messageSeeds(f, func(t MsgType) bool { return t == TypeEvent })
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, TypeEvent, in) })
}

func FuzzDecodeState(f *testing.F) {
	messageSeeds(f, func(t MsgType) bool { return t == TypeState })
	f.Fuzz(func(t *testing.T, in []byte) { fuzzDecode(t, TypeState, in) })
}

// FuzzDecodeDoorCmd takes the command's message type as its first byte.
func FuzzDecodeDoorCmd(f *testing.F) {
	for _, s := range samples() {
		mt, b, _ := Encode(s.msg)
		if _, ok := s.msg.(mqttproto.DoorCmd); ok {
			f.Add(uint8(mt), b)
			f.Add(uint8(mt), b[:len(b)-1])
		}
	}
	f.Add(uint8(TypeTap), []byte{Version})
	f.Fuzz(func(t *testing.T, typ uint8, in []byte) {
		c, err := DecodeDoorCmd(MsgType(typ), in)
		if err != nil {
			checkRefusal(t, in, err)
			return
		}
		mt, out, err := EncodeDoorCmd(c)
		if err != nil || mt != MsgType(typ) || !bytes.Equal(out, in) {
			t.Fatalf("decoded %x (%s) to %#v, re-encoded as %x (%s): %v", in, MsgType(typ), c, out, mt, err)
		}
	})
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range samples()[:12] {
		mt, b, _ := Encode(s.msg)
		id := FrameID{Priority: Priority(s.msg), Type: mt, Dst: GatewayAddr, Src: 0x0A}
		if !mt.Up() {
			id.Dst, id.Src = id.Src, id.Dst
		}
		frames, err := Segment(id, b)
		if err != nil {
			f.Fatal(err)
		}
		for _, fr := range append(frames[:min(len(frames), 2)], FlowControlFrame(id, FlowContinue, 8, time.Millisecond)) {
			c := fr.CAN()
			f.Add(c.ID, c.Length, c.Flags, c.Res0, c.Res1, fr.Payload())
		}
	}
	f.Add(uint32(0x123), uint8(1), uint8(0), uint8(0), uint8(0), []byte{1})
	f.Add(uint32(can.MaskEff|can.MaskRtr|0x0801000A), uint8(0), uint8(0), uint8(0), uint8(0), []byte{})
	f.Add(uint32(can.MaskEff|0x0801000A), uint8(9), uint8(0), uint8(0), uint8(0), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, id uint32, length, flags, res0, res1 uint8, data []byte) {
		cf := can.Frame{ID: id, Length: length, Flags: flags, Res0: res0, Res1: res1}
		copy(cf.Data[:], data)
		in := append([]byte(nil), cf.Data[:]...)
		fr, err := DecodeFrame(cf)
		if err != nil {
			checkRefusal(t, in, err)
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("frame %+v: error %v is not ErrBadFrame", cf, err)
			}
			return
		}
		if err := fr.Check(); err != nil {
			t.Fatalf("accepted %+v fails Check: %v", cf, err)
		}
		back := fr.CAN()
		if back.ID != cf.ID || back.Length != cf.Length || !bytes.Equal(back.Data[:back.Length], cf.Data[:cf.Length]) {
			t.Fatalf("frame %+v comes back as %+v", cf, back)
		}
		if got, err := ParseFrameID(fr.ID.Raw()); err != nil || got != fr.ID {
			t.Fatalf("identifier %+v: %v", fr.ID, err)
		}
	})
}

// applyOps damages frames as ops says, two bytes per operation: the
// operation and where. Bit flips spare the protocol control byte (see
// TestReassembleProperty).
func applyOps(frames []Frame, ops []byte) []Frame {
	out := append([]Frame(nil), frames...)
	for i := 0; i+1 < len(ops) && len(out) > 0; i += 2 {
		at := int(ops[i+1]) % len(out)
		switch ops[i] % 4 {
		case 0:
			out = append(out[:at], out[at+1:]...)
		case 1:
			to := int(ops[i]/4) % (len(out) + 1)
			f := out[at]
			out = append(out[:at], out[at+1:]...)
			to = min(to, len(out))
			out = append(out[:to], append([]Frame{f}, out[to:]...)...)
		case 2:
			to := int(ops[i]/4) % (len(out) + 1)
			out = append(out[:to], append([]Frame{out[at]}, out[to:]...)...)
		case 3: // a single frame has no CRC: its bits are CAN's to guard
			if out[at].Len > 1 && out[at].Kind() != SingleFrame {
				k := 1 + int(ops[i]/4)%int(out[at].Len-1)
				out[at].Data[k] ^= 1 << (ops[i] % 8)
			}
		}
	}
	return out
}

// FuzzReassemble segments a message, damages its frames (lost, moved,
// repeated, data bits flipped), and feeds them to a reassembler: only the
// message itself may come out, and if it does not, an error must.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte("12345678"), []byte{})
	f.Add(bytes.Repeat([]byte{7}, 300), []byte{0, 3})
	f.Add(bytes.Repeat([]byte{7}, 300), []byte{1, 3, 2, 5})
	f.Add(seq(200), []byte{7, 9, 11, 2})
	f.Add([]byte{1}, []byte{2, 0})
	f.Fuzz(func(t *testing.T, msg, ops []byte) {
		if len(msg) == 0 || len(msg) > MaxMessage {
			return
		}
		frames, err := Segment(tapID, msg)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := NewReassembler(ReassemblerConfig{BlockSize: 4})
		damaged := applyOps(frames, ops)
		o := feed(r, t0, damaged)
		o.errs = append(o.errs, r.Expire(t0.Add(time.Hour))...)
		for _, err := range o.errs {
			checkRefusal(t, msg, err)
		}
		for _, m := range o.msgs {
			if !bytes.Equal(m, msg) {
				t.Fatalf("wrong message % x from % x", m, msg)
			}
		}
		for _, fc := range o.replies {
			if err := fc.Check(); err != nil || fc.Kind() != FlowControl {
				t.Fatalf("reply %s: %v", fc, err)
			}
		}
		if len(frames) > 1 && len(damaged) > 0 && len(o.msgs) == 0 && len(o.errs) == 0 {
			t.Fatalf("damaged stream of % x gave neither the message nor an error", msg)
		}
		if len(o.errs) == 0 && len(o.msgs) == 0 && len(damaged) > 0 && len(frames) == 1 {
			t.Fatalf("single frame lost its message")
		}
	})
}

// FuzzReassembleRaw feeds arbitrary frames (13 bytes each: identifier,
// length, data) to a reassembler: nothing panics, errors are refusals,
// messages are within limits, replies are valid flow control.
func FuzzReassembleRaw(f *testing.F) {
	var seed []byte
	for _, fr := range mustSegment(f, tapID, seq(40)) {
		c := fr.CAN()
		seed = append(seed, byte(c.ID>>24), byte(c.ID>>16), byte(c.ID>>8), byte(c.ID), c.Length)
		seed = append(seed, c.Data[:]...)
	}
	f.Add(seed)
	f.Add(seed[13:])
	f.Fuzz(func(t *testing.T, in []byte) {
		r, _ := NewReassembler(ReassemblerConfig{Timeout: 5 * time.Millisecond})
		now := t0
		for i := 0; i+13 <= len(in); i += 13 {
			cf := can.Frame{ID: uint32(in[i])<<24 | uint32(in[i+1])<<16 | uint32(in[i+2])<<8 | uint32(in[i+3]), Length: in[i+4]}
			copy(cf.Data[:], in[i+5:i+13])
			now = now.Add(time.Duration(in[i+12]&3) * time.Millisecond)
			fr, err := DecodeFrame(cf)
			if err != nil {
				checkRefusal(t, in, err)
				continue
			}
			res := r.Feed(now, fr)
			if res.Err != nil {
				checkRefusal(t, in, res.Err)
			}
			if res.Message != nil && (len(res.Message) == 0 || len(res.Message) > MaxMessage) {
				t.Fatalf("message of %d bytes", len(res.Message))
			}
			if res.Reply != nil && res.Reply.Check() != nil {
				t.Fatalf("bad reply %s", res.Reply)
			}
		}
		for _, err := range r.Expire(now.Add(time.Hour)) {
			checkRefusal(t, in, err)
		}
		if r.Pending() != 0 {
			t.Fatal("pending after expiry")
		}
	})
}

// TestFuzzSeedsRoundTrip keeps the seeds honest: every sample's encoding
// is canonical.
func TestFuzzSeedsRoundTrip(t *testing.T) {
	for _, s := range samples() {
		mt, b, _ := Encode(s.msg)
		m, err := Decode(mt, b)
		if err != nil || !reflect.DeepEqual(m, s.msg) {
			t.Fatalf("%s: %v", s.name, err)
		}
		fuzzDecode(t, mt, b)
	}
}
