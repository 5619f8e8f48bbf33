package canbus

import (
	"bytes"
	"testing"
	"time"

	"github.com/brutella/can"
)

func TestFrameIDLayout(t *testing.T) {
	id := FrameID{Priority: 2, Type: TypeTap, Dst: GatewayAddr, Src: 0x0A}
	if got, want := id.Raw(), uint32(2<<26|0x01<<16|0x00<<8|0x0A); got != want {
		t.Fatalf("raw %08X, want %08X", got, want)
	}
	if got, want := id.String(), "0801000A"; got != want {
		t.Fatalf("string %s, want %s", got, want)
	}
	back, err := ParseFrameID(id.Raw())
	if err != nil || back != id {
		t.Fatalf("parse: %v, %+v", err, back)
	}
	if got, want := id.Reply(), (FrameID{Priority: 2, Type: TypeTap, Dst: 0x0A, Src: GatewayAddr}); got != want {
		t.Fatalf("reply %+v", got)
	}
	// Every valid identifier round-trips.
	for p := uint8(0); p <= MaxPriority; p++ {
		for _, typ := range Types() {
			for _, a := range []Addr{1, 0x7F, MaxControllerAddr} {
				for _, id := range []FrameID{{p, typ, GatewayAddr, a}, {p, typ, a, GatewayAddr}} {
					if back, err := ParseFrameID(id.Raw()); err != nil || back != id {
						t.Fatalf("%+v: %v %+v", id, err, back)
					}
				}
			}
		}
	}
}

func TestParseFrameIDRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  uint32
	}{
		{"above 29 bits", 1 << 29},
		{"reserved bit 24", 1<<24 | 0x01<<16 | 0x0A},
		{"reserved bit 25", 1<<25 | 0x01<<16 | 0x0A},
		{"type 0", 0x00<<16 | 0x0A},
		{"type 5", 0x05<<16 | 0x0A},
		{"type ff", 0xFF<<16 | 0x0A},
		{"both gateway", 0x01 << 16},
		{"both controllers", 0x01<<16 | 0x0B<<8 | 0x0A},
		{"broadcast source", 0x01<<16 | 0xFF},
		{"broadcast destination", 0x02<<16 | 0xFF<<8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFrameID(tc.raw)
			checkError(t, err, ErrBadFrame)
		})
	}
}

// canFrame builds a frame as package can would read it.
func canFrame(raw uint32, data ...byte) can.Frame {
	f := can.Frame{ID: raw, Length: uint8(len(data))}
	copy(f.Data[:], data)
	return f
}

func TestDecodeFrame(t *testing.T) {
	up := uint32(2<<26|0x01<<16|0x0A) | can.MaskEff      // tap, 0a -> gateway
	down := uint32(2<<26|0x01<<16|0x0A<<8) | can.MaskEff // tap flow control, gateway -> 0a
	ok := []can.Frame{
		canFrame(up, 0x01, 0xAA),
		canFrame(up, 0x07, 1, 2, 3, 4, 5, 6, 7),
		canFrame(up, 0x10, 0x0C, 1, 2, 3, 4, 5, 6),
		canFrame(up, 0x1F, 0xFF, 1, 2, 3, 4, 5, 6),
		canFrame(up, 0x21, 1),
		canFrame(up, 0x2F, 1, 2, 3, 4, 5, 6, 7),
		canFrame(down, 0x30, 0, 0),
		canFrame(down, 0x31, 8, 0x7F),
		canFrame(down, 0x32, 0, 0xF1),
		canFrame(down, 0x30, 0, 0xF9),
	}
	for _, cf := range ok {
		f, err := DecodeFrame(cf)
		if err != nil {
			t.Errorf("%08X#%X: %v", cf.ID, cf.Data[:cf.Length], err)
			continue
		}
		if back := f.CAN(); back != cf {
			t.Errorf("CAN() = %+v, want %+v", back, cf)
		}
	}
	withFlags := canFrame(up, 0x01, 0xAA)
	withFlags.Flags = 4
	withRes := canFrame(up, 0x01, 0xAA)
	withRes.Res1 = 9
	long := canFrame(up, 1, 2, 3, 4, 5, 6, 7, 8)
	long.Length = 9
	bad := []struct {
		name string
		f    can.Frame
	}{
		{"standard frame", canFrame(0x123, 0x01, 0xAA)},
		{"rtr", canFrame(up | can.MaskRtr)},
		{"error frame", canFrame(up|can.MaskErr, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"dlc 9", long},
		{"fd flags", withFlags},
		{"res1", withRes},
		{"empty", canFrame(up)},
		{"sf length 0", canFrame(up, 0x00)},
		{"sf length 8", canFrame(up, 0x08, 1, 2, 3, 4, 5, 6, 7)},
		{"sf padded", canFrame(up, 0x01, 0xAA, 0xCC)},
		{"sf short", canFrame(up, 0x03, 0xAA)},
		{"ff short", canFrame(up, 0x10, 0x0C, 1, 2, 3, 4, 5)},
		{"ff announces 11", canFrame(up, 0x10, 0x0B, 1, 2, 3, 4, 5, 6)},
		{"ff escape 0", canFrame(up, 0x10, 0x00, 0, 0, 0x10, 0, 1, 2)},
		{"cf empty", canFrame(up, 0x21)},
		{"fc in data direction", canFrame(up, 0x30, 0, 0)},
		{"data in fc direction", canFrame(down, 0x01, 0xAA)},
		{"fc status 3", canFrame(down, 0x33, 0, 0)},
		{"fc stmin 80", canFrame(down, 0x30, 0, 0x80)},
		{"fc stmin fa", canFrame(down, 0x30, 0, 0xFA)},
		{"fc long", canFrame(down, 0x30, 0, 0, 0)},
		{"kind 4", canFrame(up, 0x40, 0)},
		{"kind f", canFrame(up, 0xF0, 0)},
		{"decision up", canFrame(uint32(2<<26|0x02<<16|0x0A)|can.MaskEff, 0x01, 0xAA)},
		{"heartbeat up", canFrame(uint32(6<<26|0x14<<16|0x0A)|can.MaskEff, 0x01, 0xAA)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeFrame(tc.f)
			checkError(t, err, ErrBadFrame)
		})
	}
}

// TestWireFrameMatchesLibrary checks MarshalFrame and UnmarshalFrame
// against package can's own encoding.
func TestWireFrameMatchesLibrary(t *testing.T) {
	f := can.Frame{ID: 0x8801000A, Length: 8, Flags: 1, Res0: 2, Res1: 3, Data: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
	want, err := can.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, WireFrameLen)
	MarshalFrame(got, f)
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalFrame % x, can.Marshal % x", got, want)
	}
	if back := UnmarshalFrame(got); back != f {
		t.Fatalf("UnmarshalFrame %+v", back)
	}
}

func TestSTmin(t *testing.T) {
	for _, tc := range []struct {
		d time.Duration
		b byte
	}{
		{0, 0}, {time.Nanosecond, 0xF1}, {100 * time.Microsecond, 0xF1}, {101 * time.Microsecond, 0xF2},
		{900 * time.Microsecond, 0xF9}, {901 * time.Microsecond, 1}, {time.Millisecond, 1},
		{5 * time.Millisecond, 5}, {127 * time.Millisecond, 0x7F}, {time.Second, 0x7F},
	} {
		if got := encodeSTmin(tc.d); got != tc.b {
			t.Errorf("encodeSTmin(%v) = %02x, want %02x", tc.d, got, tc.b)
		}
		if d, ok := decodeSTmin(tc.b); !ok || d < min(tc.d, 127*time.Millisecond) {
			t.Errorf("decodeSTmin(%02x) = %v, %t: below %v", tc.b, d, ok, tc.d)
		}
	}
}
