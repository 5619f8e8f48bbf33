package mqttproto

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/access"
)

func TestParseTopic(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		n := 0
		for _, k := range Kinds() {
			for _, c := range k.Channels() {
				s := "gh/Site_1/" + string(k) + "/dev-9/" + string(c)
				got, err := ParseTopic(s)
				if err != nil {
					t.Fatalf("ParseTopic(%q): %v", s, err)
				}
				want := Topic{Site: "Site_1", Kind: k, Device: "dev-9", Channel: c}
				if got != want || got.String() != s {
					t.Fatalf("ParseTopic(%q) = %+v (%s), want %+v", s, got, got, want)
				}
				n++
			}
		}
		if n != 14 {
			t.Fatalf("%d kind/channel pairs, want 14", n)
		}
		long := strings.Repeat("a", MaxNameLen)
		if _, err := ParseTopic("gh/" + long + "/dispenser/" + long + "/event"); err != nil {
			t.Fatalf("longest names: %v", err)
		}
	})
	for _, tc := range []struct {
		name, topic, msg string
	}{
		{"ErrEmpty", "", "1 levels"},
		{"ErrShort", "gh/s/reader/r1", "4 levels"},
		{"ErrLong", "gh/s/reader/r1/tap/x", "more than 5 levels"},
		{"ErrLeadingSlash", "/gh/s/reader/r1/tap", "more than 5 levels"},
		{"ErrTrailingSlash", "gh/s/reader/r1/tap/", "more than 5 levels"},
		{"ErrPrefix", "xx/s/reader/r1/tap", `first level must be "gh"`},
		{"ErrPrefixCase", "GH/s/reader/r1/tap", `first level must be "gh"`},
		{"ErrEmptySite", "gh//reader/r1/tap", `site ""`},
		{"ErrEmptyDevice", "gh/s/reader//tap", `device ""`},
		{"ErrPlus", "gh/s/+/r1/tap", "wildcards"},
		{"ErrHash", "gh/s/reader/#", "wildcards"},
		{"ErrHashLast", "gh/s/reader/r1/#", "wildcards"},
		{"ErrSys", "$SYS/broker/clients/total", "4 levels"},
		{"ErrSysSite", "gh/$SYS/reader/r1/tap", `site "$SYS"`},
		{"ErrKind", "gh/s/robot/r1/tap", `unknown device kind "robot"`},
		{"ErrKindCase", "gh/s/Reader/r1/tap", "unknown device kind"},
		{"ErrChannel", "gh/s/reader/r1/beep", `unknown channel "beep"`},
		{"ErrChannelCase", "gh/s/reader/r1/TAP", "unknown channel"},
		{"ErrReaderCmd", "gh/s/reader/r1/cmd", "a reader has no cmd channel"},
		{"ErrReaderEvent", "gh/s/reader/r1/event", "a reader has no event channel"},
		{"ErrKioskTap", "gh/s/kiosk/k1/tap", "a kiosk has no tap channel"},
		{"ErrDispenserDecision", "gh/s/dispenser/d1/decision", "a dispenser has no decision channel"},
		{"ErrSiteDot", "gh/s.x/reader/r1/tap", `site "s.x"`},
		{"ErrDeviceSpace", "gh/s/reader/r 1/tap", `device "r 1"`},
		{"ErrDeviceUnicode", "gh/s/reader/lobbyé/tap", "device"},
		{"ErrDeviceNUL", "gh/s/reader/r\x001/tap", "device"},
		{"ErrDeviceTooLong", "gh/s/reader/" + strings.Repeat("d", MaxNameLen+1) + "/tap", "device"},
		{"ErrTooLong", "gh/s/reader/" + strings.Repeat("d", 300) + "/tap", "longer than any topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTopic(tc.topic)
			if !errors.Is(err, ErrBadTopic) || access.ErrorCode(err) != access.Invalid {
				t.Fatalf("ParseTopic(%q) = %v, want ErrBadTopic", tc.topic, err)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "mqttproto: topic ") {
				t.Fatalf("ParseTopic(%q): error %q does not say %q", tc.topic, err, tc.msg)
			}
		})
	}
}

func TestKindsAndChannels(t *testing.T) {
	for _, k := range Kinds() {
		if !k.Valid() {
			t.Errorf("%s not valid", k)
		}
		var fromDevice, toDevice int
		for _, c := range Channels() {
			in := containsChannel(k.Channels(), c)
			if k.Uses(c) != in {
				t.Errorf("%s.Uses(%s) = %t but Channels() has it: %t", k, c, k.Uses(c), in)
			}
			if in && c.FromDevice() {
				fromDevice++
			} else if in {
				toDevice++
			}
		}
		if fromDevice == 0 || toDevice == 0 || !k.Uses(ChannelState) {
			t.Errorf("%s: %d device-to-site and %d site-to-device channels", k, fromDevice, toDevice)
		}
	}
	if Kind("robot").Valid() || Kind("robot").Channels() != nil || Kind("robot").Uses(ChannelState) || Channel("x").Valid() {
		t.Error("unknown kind or channel accepted")
	}
	for _, c := range Channels() {
		if c.Retained() != (c == ChannelState) {
			t.Errorf("%s.Retained() = %t", c, c.Retained())
		}
	}
}

func containsChannel(cs []Channel, c Channel) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

func TestFilters(t *testing.T) {
	f, err := SiteFilter("s1", ChannelTap)
	if err != nil || f != "gh/s1/+/+/tap" {
		t.Fatalf("SiteFilter = %q, %v", f, err)
	}
	fs, err := SiteSubscriptions("s1")
	if want := []string{"gh/s1/+/+/tap", "gh/s1/+/+/state", "gh/s1/+/+/event"}; err != nil || !reflect.DeepEqual(fs, want) {
		t.Fatalf("SiteSubscriptions = %q, %v; want %q", fs, err, want)
	}
	for _, f := range fs {
		if !SiteMaySubscribe("s1", f) {
			t.Errorf("the site may not subscribe to its own filter %q", f)
		}
	}
	for _, site := range []string{"", "s/1", "+", "#", "s 1"} {
		if _, err := SiteFilter(site, ChannelTap); !errors.Is(err, ErrBadTopic) {
			t.Errorf("SiteFilter(%q): %v", site, err)
		}
		if _, err := SiteSubscriptions(site); !errors.Is(err, ErrBadTopic) {
			t.Errorf("SiteSubscriptions(%q): %v", site, err)
		}
	}
	if _, err := SiteFilter("s1", "beep"); !errors.Is(err, ErrBadTopic) {
		t.Errorf("SiteFilter with unknown channel: %v", err)
	}

	door := Device{Site: "s1", Kind: KindDoor, ID: "lobby-in"}
	f, err = DeviceFilter(door)
	if err != nil || f != "gh/s1/door/lobby-in/+" {
		t.Fatalf("DeviceFilter = %q, %v", f, err)
	}
	subs, err := door.Subscriptions()
	if want := []string{"gh/s1/door/lobby-in/decision", "gh/s1/door/lobby-in/cmd"}; err != nil || !reflect.DeepEqual(subs, want) {
		t.Fatalf("Subscriptions = %q, %v; want %q", subs, err, want)
	}
	for _, k := range Kinds() {
		d := Device{Site: "s1", Kind: k, ID: "x"}
		subs, err := d.Subscriptions()
		if err != nil || len(subs) == 0 {
			t.Fatalf("%s: %q, %v", k, subs, err)
		}
		for _, s := range subs {
			if !DeviceMaySubscribe(d, s) {
				t.Errorf("%s may not subscribe to its own %q", k, s)
			}
		}
		for _, c := range k.Channels() {
			if c.FromDevice() && !DeviceMayPublish(d, d.Topic(c).String()) {
				t.Errorf("%s may not publish on its own %s", k, c)
			}
		}
	}
	bad := Device{Site: "s1", Kind: KindDoor, ID: "a/b"}
	if _, err := DeviceFilter(bad); !errors.Is(err, ErrBadTopic) {
		t.Errorf("DeviceFilter(%v): %v", bad, err)
	}
	if _, err := bad.Subscriptions(); !errors.Is(err, ErrBadTopic) {
		t.Errorf("Subscriptions(%v): %v", bad, err)
	}
}

func TestUsername(t *testing.T) {
	d := Device{Site: "site-1", Kind: KindDispenser, ID: "lobby_2"}
	if got := d.Username(); got != "site-1.dispenser.lobby_2" {
		t.Fatalf("Username = %q", got)
	}
	got, err := ParseUsername(d.Username())
	if err != nil || got != d {
		t.Fatalf("ParseUsername = %+v, %v", got, err)
	}
	for _, s := range []string{"", "site-1", "site-1.door", "site-1.robot.x", "s.door.a.b", "s.door.", ".door.x", "s/1.door.x", "s.door.x/cmd", strings.Repeat("x", 500)} {
		if _, err := ParseUsername(s); !errors.Is(err, ErrBadTopic) {
			t.Errorf("ParseUsername(%q): %v", s, err)
		}
	}
}

func TestWill(t *testing.T) {
	d := Device{Site: "s1", Kind: KindReader, ID: "r1"}
	topic, payload, err := Will(d)
	if err != nil {
		t.Fatal(err)
	}
	if topic != "gh/s1/reader/r1/state" || string(payload) != `{"v":1,"online":false}` {
		t.Fatalf("Will = %q %s", topic, payload)
	}
	tp, err := ParseTopic(topic)
	if err != nil || !tp.Channel.Retained() || !DeviceMayPublish(d, topic) {
		t.Fatalf("will topic %q: %v", topic, err)
	}
	st, err := DecodeState(KindReader, payload)
	if err != nil || st.Online {
		t.Fatalf("will payload decodes to %+v, %v", st, err)
	}
	if _, _, err := Will(Device{Site: "s1", Kind: "robot", ID: "r1"}); !errors.Is(err, ErrBadTopic) {
		t.Fatalf("Will of an invalid device: %v", err)
	}
}

func TestDecodeByTopic(t *testing.T) {
	if _, err := Decode(Topic{Site: "s", Kind: KindReader, Device: "r", Channel: ChannelCmd}, []byte(`{"v":1}`)); !errors.Is(err, ErrBadTopic) {
		t.Fatalf("reader cmd: %v", err)
	}
	// The same payload is a valid door event but not a dispenser event.
	if _, err := Decode(topicOf(KindDispenser, ChannelEvent), []byte(doorEventBase)); !errors.Is(err, ErrBadValue) {
		t.Fatalf("door event on a dispenser topic: %v", err)
	}
}
