package access_test

import (
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

// Known frames, computed by hand from the layouts documented on
// WiegandFormat (first wire bit on the left of each binary string) and
// cross-checked against an independent bit-string implementation.
var wiegandVectors = []struct {
	name  string
	cred  access.WiegandCredential
	frame uint64
	bits  string
}{
	{"H10301/Zero", access.WiegandCredential{Format: access.H10301}, 0x1, "00000000000000000000000001"},
	{"H10301/1-1", access.WiegandCredential{Format: access.H10301, Facility: 1, Card: 1}, 0x2020002, "10000000100000000000000010"},
	{"H10301/Max", access.WiegandCredential{Format: access.H10301, Facility: 255, Card: 65535}, 0x1ffffff, "01111111111111111111111111"},
	{"H10301/123-4567", access.WiegandCredential{Format: access.H10301, Facility: 123, Card: 4567}, 0x2f623ae, "10111101100010001110101110"},
	{"H10301/18-12345", access.WiegandCredential{Format: access.H10301, Facility: 18, Card: 12345}, 0x246073, "00001001000110000001110011"},
	{"Corporate1000/Zero", access.WiegandCredential{Format: access.Corporate1000}, 0x1, "00000000000000000000000000000000001"},
	{"Corporate1000/1-1", access.WiegandCredential{Format: access.Corporate1000, Facility: 1, Card: 1}, 0x600200003, "11000000000001000000000000000000011"},
	{"Corporate1000/Max", access.WiegandCredential{Format: access.Corporate1000, Facility: 4095, Card: 1048575}, 0x5fffffffe, "10111111111111111111111111111111110"},
	{"Corporate1000/1234-567890", access.WiegandCredential{Format: access.Corporate1000, Facility: 1234, Card: 567890}, 0x69a5154a4, "11010011010010100010101010010100100"},
	{"H10304/Zero", access.WiegandCredential{Format: access.H10304}, 0x1, "0000000000000000000000000000000000001"},
	{"H10304/1-1", access.WiegandCredential{Format: access.H10304, Facility: 1, Card: 1}, 0x1000100002, "1000000000000000100000000000000000010"},
	{"H10304/Max", access.WiegandCredential{Format: access.H10304, Facility: 65535, Card: 524287}, 0xfffffffff, "0111111111111111111111111111111111111"},
	{"H10304/4660-123456", access.WiegandCredential{Format: access.H10304, Facility: 4660, Card: 123456}, 0x112343c481, "1000100100011010000111100010010000001"},
}

// frameOf parses a binary string, first wire bit first.
func frameOf(t *testing.T, s string) (uint64, int) {
	t.Helper()
	var v uint64
	for _, c := range s {
		v = v<<1 | uint64(c-'0')
	}
	return v, len(s)
}

func TestEncodeWiegand(t *testing.T) {
	for _, tt := range wiegandVectors {
		t.Run("OK/"+tt.name, func(t *testing.T) {
			frame, n, err := access.EncodeWiegand(tt.cred)
			must(t, err)
			wantFrame, wantN := frameOf(t, tt.bits)
			if frame != tt.frame || frame != wantFrame {
				t.Errorf("frame = %#x, want %#x (%s)", frame, tt.frame, tt.bits)
			}
			if n != wantN || n != tt.cred.Format.Bits() {
				t.Errorf("n = %d, want %d", n, wantN)
			}
		})
	}
	errTests := []struct {
		name string
		cred access.WiegandCredential
		want error
	}{
		{"ErrOutOfRange/H10301Facility", access.WiegandCredential{Format: access.H10301, Facility: 256}, access.ErrOutOfRange},
		{"ErrOutOfRange/H10301Card", access.WiegandCredential{Format: access.H10301, Card: 65536}, access.ErrOutOfRange},
		{"ErrOutOfRange/Corporate1000Facility", access.WiegandCredential{Format: access.Corporate1000, Facility: 4096}, access.ErrOutOfRange},
		{"ErrOutOfRange/Corporate1000Card", access.WiegandCredential{Format: access.Corporate1000, Card: 1 << 20}, access.ErrOutOfRange},
		{"ErrOutOfRange/H10304Facility", access.WiegandCredential{Format: access.H10304, Facility: 65536}, access.ErrOutOfRange},
		{"ErrOutOfRange/H10304Card", access.WiegandCredential{Format: access.H10304, Card: 524288}, access.ErrOutOfRange},
		{"ErrUnknownFormat", access.WiegandCredential{Format: 0, Card: 1}, access.ErrUnknownFormat},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := access.EncodeWiegand(tt.cred)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got, want := access.ErrorCode(err), access.Invalid; got != want {
				t.Errorf("ErrorCode = %q, want %q", got, want)
			}
		})
	}
}

func TestDecodeWiegand(t *testing.T) {
	for _, tt := range wiegandVectors {
		t.Run("OK/"+tt.name, func(t *testing.T) {
			got, err := access.DecodeWiegand(tt.frame, tt.cred.Format.Bits())
			must(t, err)
			if got != tt.cred {
				t.Errorf("got %+v, want %+v", got, tt.cred)
			}
		})
	}
	errTests := []struct {
		name  string
		frame uint64
		n     int
		want  error
	}{
		{"ErrUnknownFormat/34", 0, 34, access.ErrUnknownFormat},
		{"ErrUnknownFormat/Zero", 0, 0, access.ErrUnknownFormat},
		{"ErrUnknownFormat/Negative", 0, -26, access.ErrUnknownFormat},
		{"ErrUnknownFormat/TooLong", 0, 65, access.ErrUnknownFormat},
		{"ErrBadLength", 0x2020002 | 1<<26, 26, access.ErrBadLength},
		{"ErrBadParity/H10301Even", 0x0020002, 26, access.ErrBadParity},
		{"ErrBadParity/H10301Odd", 0x2020003, 26, access.ErrBadParity},
		{"ErrBadParity/AllZero26", 0, 26, access.ErrBadParity},
		{"ErrBadParity/AllZero35", 0, 35, access.ErrBadParity},
		{"ErrBadParity/AllZero37", 0, 37, access.ErrBadParity},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := access.DecodeWiegand(tt.frame, tt.n)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got, want := access.ErrorCode(err), access.Invalid; got != want {
				t.Errorf("ErrorCode = %q, want %q", got, want)
			}
		})
	}
}

// TestDecodeWiegand_SingleBitFlips checks that flipping any one bit of a
// valid frame, in every format, is reported as a parity error.
func TestDecodeWiegand_SingleBitFlips(t *testing.T) {
	creds := []access.WiegandCredential{
		{Format: access.H10301, Facility: 0, Card: 0},
		{Format: access.H10301, Facility: 123, Card: 4567},
		{Format: access.H10301, Facility: 255, Card: 65535},
		{Format: access.Corporate1000, Facility: 0, Card: 0},
		{Format: access.Corporate1000, Facility: 1234, Card: 567890},
		{Format: access.Corporate1000, Facility: 4095, Card: 1048575},
		{Format: access.H10304, Facility: 0, Card: 0},
		{Format: access.H10304, Facility: 4660, Card: 123456},
		{Format: access.H10304, Facility: 65535, Card: 524287},
	}
	for _, c := range creds {
		t.Run(c.String(), func(t *testing.T) {
			frame, n, err := access.EncodeWiegand(c)
			must(t, err)
			for bit := range n {
				_, err := access.DecodeWiegand(frame^1<<bit, n)
				if !errors.Is(err, access.ErrBadParity) {
					t.Errorf("flip of wire position %d: err = %v, want ErrBadParity", n-bit, err)
				}
			}
		})
	}
}

// TestDecodeWiegand_Exhaustive26 decodes every 26-bit frame with facility
// 0 and 7 and checks that exactly a quarter are valid (two parity bits) and
// that those re-encode to themselves.
func TestDecodeWiegand_Exhaustive26(t *testing.T) {
	for _, fac := range []uint64{0, 7} {
		valid := 0
		for card := range uint64(1 << 16) {
			for p := range uint64(4) {
				frame := p>>1<<25 | fac<<17 | card<<1 | p&1
				c, err := access.DecodeWiegand(frame, 26)
				if err != nil {
					continue
				}
				valid++
				again, _, err := access.EncodeWiegand(c)
				if err != nil || again != frame {
					t.Fatalf("frame %#x decodes to %+v which encodes to %#x, %v", frame, c, again, err)
				}
			}
		}
		if got, want := valid, 1<<16; got != want {
			t.Errorf("facility %d: %d valid frames, want %d", fac, got, want)
		}
	}
}

func TestWiegandCredential_Number(t *testing.T) {
	tests := []struct {
		name string
		cred access.WiegandCredential
		want access.CardNumber
	}{
		{"OK/H10301", access.WiegandCredential{Format: access.H10301, Facility: 1, Card: 1}, 281474993487873},
		{"OK/Corporate1000", access.WiegandCredential{Format: access.Corporate1000, Facility: 1, Card: 1}, 2<<48 | 1<<24 | 1},
		{"OK/H10304", access.WiegandCredential{Format: access.H10304, Facility: 65535, Card: 524287}, 3<<48 | 65535<<24 | 524287},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cred.Number()
			if got != tt.want {
				t.Errorf("Number() = %d, want %d", got, tt.want)
			}
			back, err := access.WiegandFromNumber(got)
			must(t, err)
			if back != tt.cred {
				t.Errorf("WiegandFromNumber = %+v, want %+v", back, tt.cred)
			}
		})
	}
	// The same facility and card in different formats never collide.
	a := access.WiegandCredential{Format: access.H10301, Facility: 5, Card: 5}.Number()
	b := access.WiegandCredential{Format: access.H10304, Facility: 5, Card: 5}.Number()
	c := access.WiegandCredential{Format: access.H10301, Facility: 6, Card: 5}.Number()
	if a == b || a == c || b == c {
		t.Errorf("numbers collide: %d, %d, %d", a, b, c)
	}
	errTests := []struct {
		name string
		n    access.CardNumber
		want error
	}{
		{"ErrUnknownFormat/Plain", 12345, access.ErrUnknownFormat},
		{"ErrUnknownFormat/High", 4 << 48, access.ErrUnknownFormat},
		{"ErrOutOfRange/Facility", 1<<48 | 256<<24, access.ErrOutOfRange},
		{"ErrOutOfRange/Card", 1<<48 | 65536, access.ErrOutOfRange},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := access.WiegandFromNumber(tt.n); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWiegandCredential_String(t *testing.T) {
	tests := []struct {
		in      string
		want    access.WiegandCredential
		wantErr error
	}{
		{"H10301:1:1", access.WiegandCredential{Format: access.H10301, Facility: 1, Card: 1}, nil},
		{"Corporate1000:4095:1048575", access.WiegandCredential{Format: access.Corporate1000, Facility: 4095, Card: 1048575}, nil},
		{"H10304:0:524287", access.WiegandCredential{Format: access.H10304, Card: 524287}, nil},
		{"H10302:1:1", access.WiegandCredential{}, access.ErrUnknownFormat},
		{"H10301:256:1", access.WiegandCredential{}, access.ErrOutOfRange},
		{"H10301:1", access.WiegandCredential{}, nil},
		{"H10301:x:1", access.WiegandCredential{}, nil},
	}
	for _, tt := range tests {
		name := "OK/" + tt.in
		if tt.want == (access.WiegandCredential{}) {
			name = "Err/" + tt.in
		}
		t.Run(name, func(t *testing.T) {
			got, err := access.ParseWiegandCredential(tt.in)
			if tt.want == (access.WiegandCredential{}) {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			must(t, err)
			if got != tt.want || got.String() != tt.in {
				t.Errorf("got %+v (%q), want %+v", got, got.String(), tt.want)
			}
		})
	}
	if got, want := access.WiegandFormat(9).String(), "unknown(9)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := access.WiegandFormat(9).Bits(); got != 0 {
		t.Errorf("Bits() = %d, want 0", got)
	}
}

func FuzzDecodeWiegand(f *testing.F) {
	for _, v := range wiegandVectors {
		f.Add(v.frame, v.cred.Format.Bits())
	}
	f.Add(uint64(0), 26)
	f.Add(^uint64(0), 37)
	f.Add(uint64(1), -1)
	f.Fuzz(func(t *testing.T, frame uint64, n int) {
		c, err := access.DecodeWiegand(frame, n)
		if err != nil {
			if access.ErrorCode(err) != access.Invalid {
				t.Fatalf("DecodeWiegand(%#x, %d): error %v has code %q, want invalid", frame, n, err, access.ErrorCode(err))
			}
			return
		}
		again, m, err := access.EncodeWiegand(c)
		if err != nil {
			t.Fatalf("DecodeWiegand(%#x, %d) = %+v, which does not encode: %v", frame, n, c, err)
		}
		if again != frame || m != n {
			t.Fatalf("DecodeWiegand(%#x, %d) = %+v, which encodes to (%#x, %d)", frame, n, c, again, m)
		}
	})
}

func FuzzWiegandRoundTrip(f *testing.F) {
	for _, v := range wiegandVectors {
		f.Add(uint8(v.cred.Format), v.cred.Facility, v.cred.Card)
	}
	f.Add(uint8(0), uint32(1), uint64(1))
	f.Add(uint8(1), uint32(256), uint64(1))
	f.Fuzz(func(t *testing.T, format uint8, facility uint32, card uint64) {
		c := access.WiegandCredential{Format: access.WiegandFormat(format), Facility: facility, Card: card}
		frame, n, err := access.EncodeWiegand(c)
		if err != nil {
			if !errors.Is(err, access.ErrOutOfRange) && !errors.Is(err, access.ErrUnknownFormat) {
				t.Fatalf("EncodeWiegand(%+v): unexpected error %v", c, err)
			}
			// Number keeps 24 bits of each field, so only values that fit
			// there are sure to map to a number that is refused.
			if facility < 1<<24 && card < 1<<24 {
				if _, err := access.WiegandFromNumber(c.Number()); err == nil {
					t.Fatalf("WiegandFromNumber accepted the number of unencodable %+v", c)
				}
			}
			return
		}
		if n != c.Format.Bits() || frame>>n != 0 {
			t.Fatalf("EncodeWiegand(%+v) = (%#x, %d)", c, frame, n)
		}
		got, err := access.DecodeWiegand(frame, n)
		if err != nil || got != c {
			t.Fatalf("DecodeWiegand(EncodeWiegand(%+v)) = %+v, %v", c, got, err)
		}
		back, err := access.WiegandFromNumber(c.Number())
		if err != nil || back != c {
			t.Fatalf("WiegandFromNumber(%d) = %+v, %v; want %+v", c.Number(), back, err, c)
		}
		parsed, err := access.ParseWiegandCredential(c.String())
		if err != nil || parsed != c {
			t.Fatalf("ParseWiegandCredential(%q) = %+v, %v", c.String(), parsed, err)
		}
	})
}
