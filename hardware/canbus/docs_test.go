package canbus

import (
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// specPath is the vendor specification of this protocol.
const specPath = "../../docs/protocol-can.md"

// channelOf is the MQTT channel that carries the messages of type t.
func channelOf(t MsgType) mqttproto.Channel {
	switch t {
	case TypeTap:
		return mqttproto.ChannelTap
	case TypeDecision:
		return mqttproto.ChannelDecision
	case TypeEvent:
		return mqttproto.ChannelEvent
	case TypeState:
		return mqttproto.ChannelState
	}
	return mqttproto.ChannelCmd
}

// TestSpecExamples checks every example of docs/protocol-can.md: a block
// "```can TYPE ADDR" holds a message's MQTT payload, its bytes ("msg:")
// and its frames between controller ADDR and the gateway; the payload
// must decode (with mqttproto), encode to exactly those bytes and frames,
// and the bytes must decode to the same message. Every type needs one.
func TestSpecExamples(t *testing.T) {
	doc := mustRead(t, specPath)
	names := map[string]MsgType{}
	for _, typ := range Types() {
		names[typ.String()] = typ
	}
	seen := map[MsgType]bool{}
	for _, b := range taggedBlocks(doc, "can ") {
		at := fmt.Sprintf("%s:%d", specPath, b.line)
		name, addrHex, _ := strings.Cut(b.tag, " ")
		typ, ok := names[name]
		addr, err := strconv.ParseUint(addrHex, 16, 8)
		if !ok || err != nil || len(b.body) < 3 {
			t.Fatalf("%s: bad block tag %q or body", at, b.tag)
		}
		seen[typ] = true
		topic := mqttproto.Topic{Site: "hq", Kind: mqttproto.KindDoor, Device: "d-17", Channel: channelOf(typ)}
		m, err := mqttproto.Decode(topic, []byte(b.body[0]))
		if err != nil {
			t.Fatalf("%s: MQTT payload: %v", at, err)
		}
		gotType, msg, err := Encode(m)
		if err != nil || gotType != typ {
			t.Fatalf("%s: encodes as %s: %v", at, gotType, err)
		}
		want, ok := strings.CutPrefix(b.body[1], "msg: ")
		if !ok {
			t.Fatalf("%s: no msg: line", at)
		}
		if got := fmt.Sprintf("% X", msg); got != want {
			t.Errorf("%s: message bytes\n got %s\nwant %s", at, got, want)
		}
		back, err := Decode(typ, hexBytes(t, want))
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Errorf("%s: the bytes decode to %#v, %v", at, back, err)
		}
		id := FrameID{Priority: Priority(m), Type: typ, Dst: GatewayAddr, Src: Addr(addr)}
		if !typ.Up() {
			id.Dst, id.Src = id.Src, id.Dst
		}
		frames := mustSegment(t, id, msg)
		var got []string
		for _, f := range frames {
			got = append(got, fmt.Sprintf("%s#% X", f.ID, f.Payload()))
		}
		if !reflect.DeepEqual(got, b.body[2:]) {
			t.Errorf("%s: frames\n got %s\nwant %s", at, strings.Join(got, "\n     "), strings.Join(b.body[2:], "\n     "))
		}
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("no example of type %s in %s", typ, specPath)
		}
	}
}

// TestSpecFacts checks the other numbers the specification states.
func TestSpecFacts(t *testing.T) {
	doc := mustRead(t, specPath)
	mustContain := func(s string) {
		t.Helper()
		if !strings.Contains(doc, s) {
			t.Errorf("%s does not contain %q", specPath, s)
		}
	}
	// The segmentation example.
	id := FrameID{Priority: PrioTap, Type: TypeTap, Dst: GatewayAddr, Src: 0x0A}
	frames := mustSegment(t, id, []byte("12345678"))
	fc := FlowControlFrame(id, FlowContinue, 0, 0)
	for _, f := range []Frame{frames[0], fc, frames[1]} {
		mustContain(fmt.Sprintf("%s#% X", f.ID, f.Payload()))
	}
	if got := crc32.ChecksumIEEE([]byte("123456789")); got != 0xCBF43926 {
		t.Errorf("CRC-32 check value %08X", got)
	}
	mustContain("the CRC of `123456789` is `CBF43926`")
	// The ID encoding and the stream bridge's bytes.
	var w writer
	w.id(tDoor)
	mustContain(fmt.Sprintf("`%s` is `% X`", tDoor, w.b))
	tap := taggedBlocks(doc, "can tap")[0]
	first := strings.Fields(strings.ReplaceAll(tap.body[2], "#", " "))
	raw, _ := strconv.ParseUint(first[0], 16, 32)
	f := Frame{Len: 8}
	f.ID, _ = ParseFrameID(uint32(raw))
	copy(f.Data[:], hexBytes(t, strings.Join(first[1:], "")))
	wire := make([]byte, WireFrameLen)
	MarshalFrame(wire, f.CAN())
	mustContain(fmt.Sprintf("The tap first frame of section 5.1 is `% X`.", wire))
	// Sizes.
	mustContain(fmt.Sprintf("| message | %d bytes (%d transport bytes with the CRC) |", MaxMessage, MaxMessage+4))
	mustContain(fmt.Sprintf("about %d frames", (FrameCount(MaxMessage)+5)/10*10))
	for _, s := range []string{"| `" + hex.EncodeToString([]byte{byte(TypeTap)}) + "` | tap |", "| `14` | heartbeat |"} {
		mustContain(s)
	}
}
