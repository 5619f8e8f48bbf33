package site

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/canbus"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

func TestParseExample(t *testing.T) {
	b, err := os.ReadFile("testdata/example.site")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("example.site", b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := f.Site, "demo-hq"; got != want {
		t.Errorf("site = %q, want %q", got, want)
	}
	if got, want := len(f.Doors), 2; got != want {
		t.Fatalf("%d doors, want %d", got, want)
	}
	if d := f.Doors[0]; d.ID != DoorID("lobby") || !d.Derived || d.Version != 1 {
		t.Errorf("lobby = %+v", d)
	}
	if d := f.Doors[1]; d.ID != "01JD8X5Q4K3M2N1P0R9S8T7V6W" || !d.HighSecurity || d.MaxOffline != time.Hour || d.Version != 17 {
		t.Errorf("server-room = %+v", d)
	}
	if d := f.Devices[2]; d.CAN != canbus.Addr(0x11) || d.Kind != mqttproto.KindDoor {
		t.Errorf("rack-ctl = %+v", d)
	}
	if c := f.Cards[3]; c.Delay != 2*time.Second || c.Reason != access.ReasonGranted {
		t.Errorf("card 5555 = %+v", c)
	}
	if got, want := len(f.Script), 6; got != want {
		t.Errorf("%d script lines, want %d", got, want)
	}
	if c := f.Script[0]; c.Op != OpUnlock || c.Door != "lobby" || c.Dur != 3*time.Second || c.At != 5*time.Second {
		t.Errorf("first command = %+v", c)
	}
}

func TestDoorID(t *testing.T) {
	a, b := DoorID("lobby"), DoorID("lobby")
	if a != b {
		t.Fatalf("DoorID is not deterministic: %s, %s", a, b)
	}
	if id, err := access.ParseID(string(a)); err != nil || id != a {
		t.Fatalf("DoorID(lobby) = %s is not a canonical ULID: %v", a, err)
	}
	if DoorID("lobby") == DoorID("lobby2") {
		t.Fatal("two names, one ID")
	}
	if got, want := a.Time(), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("time of the ID = %v, want %v", got, want)
	}
}

// TestParseErrors checks that each error names its line.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"NoSite", "door d\n", []string{"test.site:0: no \"site NAME\" line"}},
		{"UnknownStatement", "site s\n\ndevise reader r\n", []string{"test.site:3: unknown statement \"devise\""}},
		{"BadReason", "site s\ncard 5 deny nope\n", []string{"test.site:2: card 5: reason \"nope\""}},
		{"LeadingZero", "site s\ncard 05 grant\n", []string{"test.site:2: card \"05\""}},
		{"DuplicateCard", "site s\ncard 5 grant\ncard 5 grant\n", []string{"test.site:3: card 5 is already given a decision at line 2"}},
		{"UnknownDoor", "site s\ndevice reader r secret x door nowhere\n", []string{"test.site:2: device r: no door \"nowhere\""}},
		{"NoSecret", "site s\ndoor d\ndevice reader r door d\n", []string{"test.site:3: device r: an MQTT device needs a secret"}},
		{"CANReader", "site s\ndoor d\ndevice reader r can 11 door d\n", []string{"test.site:3: device r: only door controllers talk CAN"}},
		{"BadULID", "site s\ndoor d 01JD8X5Q4K3M2N1P0R9S8T7V6U\n", []string{"test.site:2: door d: \"01JD8X5Q4K3M2N1P0R9S8T7V6U\" is not a ULID"}},
		{"CacheNoUntil", "site s\ndoor d\ncache d 5 from +1h\n", []string{"test.site:3: cache: until is required"}},
		{"ScriptDoor", "site s\nat 5s unlock door x\ndoor d\n", []string{"test.site:2: unlock: no door \"x\""}},
		{"ScriptDispenser", "site s\nat 5s dispense dispenser p\n", []string{"test.site:2: dispense: no dispenser \"p\""}},
		{"BadMode", "site s\ndoor d\nat 1s set_mode door d open\n", []string{"test.site:3: want: set_mode door NAME normal|unlocked|locked"}},
		{"Several", "site s\nbogus\ncard x grant\n", []string{"test.site:2:", "test.site:3:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("test.site", []byte(tc.src))
			if err == nil {
				t.Fatalf("Parse accepted %q: %+v", tc.src, f)
			}
			es, ok := err.(Errors)
			if !ok {
				t.Fatalf("error %T, want Errors", err)
			}
			if len(es) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(es), len(tc.want), err)
			}
			for i, w := range tc.want {
				if got := es[i].Error(); !strings.HasPrefix(got, w) {
					t.Errorf("error %d = %q, want prefix %q", i, got, w)
				}
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	f, err := Parse("t", []byte("site s\ndoor d\ndevice door c secret x door d\ndevice dispenser p secret y\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text string
		ok   bool
	}{
		{"unlock door d", true},
		{"unlock door d for 2s", true},
		{"unlock door nowhere", false},
		{"set_mode door d unlocked", true},
		{"push cache", true},
		{"push cache door d", true},
		{"heartbeat", true},
		{"encode dispenser p card 42", true},
		{"encode dispenser q card 42", false},
		{"capture dispenser p", true},
		{"card 42 deny anti_passback delay 2s", true},
		{"fly away", false},
	} {
		_, err := ParseCommand(f, tc.text)
		if (err == nil) != tc.ok {
			t.Errorf("ParseCommand(%q) = %v, want ok %v", tc.text, err, tc.ok)
		}
	}
}
