package mqttproto

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// BenchmarkDecodeTap measures decoding a tap, which sits on the door's hot
// path (tap, decide, answer).
func BenchmarkDecodeTap(b *testing.B) {
	for _, bc := range []struct{ name, payload string }{
		{"card", tapBase},
		{"wiegand", wiegandBase},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := []byte(bc.payload)
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := DecodeTap(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMarshalDecision measures encoding the answer to a tap.
func BenchmarkMarshalDecision(b *testing.B) {
	d := Decision{RequestID: "r1-000042", Door: tDoor, Grant: true, Reason: access.ReasonGranted,
		Unlock: 5 * time.Second, Mode: access.Online, Node: "edge-1", Time: t0}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeDecision measures a device decoding the answer.
func BenchmarkDecodeDecision(b *testing.B) {
	p := []byte(decisionBase)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeDecision(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseTopic measures parsing the topic of an incoming message.
func BenchmarkParseTopic(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTopic("gh/site-1/reader/lobby-in-1/tap"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHotPathAllocs keeps the tap path lean: decoding a tap allocates only
// its request ID and door ID strings, and parsing a topic nothing.
func TestHotPathAllocs(t *testing.T) {
	p := []byte(tapBase)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeTap(p) }); n > 2 {
		t.Errorf("DecodeTap allocates %.0f times, want at most 2", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseTopic("gh/site-1/reader/lobby-in-1/tap") }); n > 0 {
		t.Errorf("ParseTopic allocates %.0f times, want 0", n)
	}
}
