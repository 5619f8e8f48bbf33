package mqttproto

import (
	"os"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

// specPath is the vendor specification of this protocol.
const specPath = "../../docs/protocol-mqtt.md"

// example is one payload shown in the specification, with the topic kind
// and channel its code block is tagged with ("```json door/event").
type example struct {
	line    int
	topic   Topic
	payload string
}

// specExamples returns the payloads of the tagged JSON blocks of the
// specification. A block holds one pretty-printed payload, or one payload
// per line.
func specExamples(t *testing.T, doc string) []example {
	t.Helper()
	var out []example
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		tag, ok := strings.CutPrefix(lines[i], "```json ")
		if !ok {
			continue
		}
		kind, channel, ok := strings.Cut(strings.TrimSpace(tag), "/")
		if !ok {
			t.Fatalf("%s:%d: tag %q is not KIND/CHANNEL", specPath, i+1, tag)
		}
		topic := Topic{Site: "hq", Kind: Kind(kind), Device: "dev-1", Channel: Channel(channel)}
		if err := topic.Validate(); err != nil {
			t.Fatalf("%s:%d: %v", specPath, i+1, err)
		}
		start := i + 1
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		if len(body) > 0 && body[0] == "{" {
			out = append(out, example{start + 1, topic, strings.Join(body, "\n")})
			continue
		}
		for j, l := range body {
			if strings.TrimSpace(l) != "" {
				out = append(out, example{start + j + 1, topic, l})
			}
		}
	}
	return out
}

// TestSpecExamples decodes every example of docs/protocol-mqtt.md with the decoder
// of its topic, and checks that every message type and every state has one.
func TestSpecExamples(t *testing.T) {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	examples := specExamples(t, doc)
	if len(examples) < 40 {
		t.Fatalf("only %d examples in %s", len(examples), specPath)
	}
	seen := map[string]bool{}
	for _, e := range examples {
		m, err := Decode(e.topic, []byte(e.payload))
		if err != nil {
			t.Errorf("%s:%d: example does not decode as %s/%s: %v", specPath, e.line, e.topic.Kind, e.topic.Channel, err)
			continue
		}
		switch m := m.(type) {
		case Tap:
			seen["tap"] = true
			if !m.Wiegand.IsZero() {
				seen["tap/wiegand"] = true
			}
		case Decision:
			seen["decision"] = true
		case DoorEvent:
			seen["door event/"+string(m.Type)] = true
		case DoorCmd:
			seen["door cmd/"+string(m.Type)] = true
		case KioskEvent:
			seen["kiosk event/"+string(m.Type)] = true
		case KioskCmd:
			seen["kiosk cmd/"+string(m.Type)] = true
		case DispenserEvent:
			seen["dispenser event/"+string(m.Type)] = true
		case DispenserCmd:
			seen["dispenser cmd/"+string(m.Type)] = true
		case State:
			k, _ := m.kind()
			seen["state/"+string(k)] = true
		}
	}
	want := []string{"tap", "tap/wiegand", "decision", "state/"}
	for _, k := range Kinds() {
		want = append(want, "state/"+string(k))
	}
	for _, f := range families() {
		for _, n := range f.names {
			want = append(want, f.what+"/"+n)
		}
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("%s has no example of %s", specPath, w)
		}
	}
}

// TestSpecNamesEveryField checks that the specification names every field,
// type, enumeration value, decision reason and limit the code knows.
func TestSpecNamesEveryField(t *testing.T) {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	var names []string
	for _, sp := range []spec{tapSpec, wiegandSpec, decisionSpec, cacheEntrySpec, stateSpec, readerStatusSpec,
		doorStatusSpec, doorStateSpec, kioskStatusSpec, dispenserStatusSpec} {
		names = append(append(names, sp.req...), sp.opt...)
	}
	for _, f := range families() {
		names = append(append(names, f.keys...), f.names...)
	}
	for _, v := range []string{string(DoorNormal), string(DoorUnlocked), string(DoorLocked), string(StackOK), string(StackLow),
		string(StackEmpty), string(DocPassport), string(DocIDCard), string(DocResidencePermit), string(DocVisa), string(DocOther),
		"online", "offline"} {
		names = append(names, v)
	}
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	for _, r := range access.Reasons() {
		names = append(names, r.String())
	}
	for _, c := range Channels() {
		names = append(names, string(c))
	}
	for _, n := range names {
		if !strings.Contains(doc, "`"+n+"`") && !strings.Contains(doc, "`"+n+"[]") && !strings.Contains(doc, "`doors[]."+n+"`") &&
			!strings.Contains(doc, "`entries[]."+n+"`") {
			t.Errorf("%s does not name %q", specPath, n)
		}
	}
	for _, s := range []string{"4096", "9007199254740991", "600000", "31536000000", "65535", "2048 bytes", "512 bytes", "256 bytes",
		"1 s", "10 s", "30 s"} {
		if !strings.Contains(doc, s) {
			t.Errorf("%s does not state the limit %q", specPath, s)
		}
	}
	// The constants the text states match the code.
	if MaxPayload != 4096 || MaxInteger != 9007199254740991 || MaxUnlock.Milliseconds() != 600000 ||
		MaxOfflineLimit.Milliseconds() != 31536000000 || MaxCacheParts != 65535 || MaxToken != 2048 || MaxText != 512 ||
		MaxErrorText != 256 || DecisionTimeout.Seconds() != 1 || HeartbeatInterval.Seconds() != 10 || MaxDoors != 16 || MaxFaults != 16 {
		t.Error("a limit changed in the code: update docs/protocol-mqtt.md and this test")
	}
}
