package mqttproto

import "testing"

func TestDeviceACL(t *testing.T) {
	reader := Device{Site: "s1", Kind: KindReader, ID: "r1"}
	door := Device{Site: "s1", Kind: KindDoor, ID: "d1"}
	kiosk := Device{Site: "s1", Kind: KindKiosk, ID: "k1"}
	disp := Device{Site: "s1", Kind: KindDispenser, ID: "x1"}
	for _, tc := range []struct {
		name  string
		dev   Device
		topic string
		pub   bool // may publish
		sub   bool // may subscribe
	}{
		{"ReaderTap", reader, "gh/s1/reader/r1/tap", true, false},
		{"ReaderState", reader, "gh/s1/reader/r1/state", true, false},
		{"ReaderDecision", reader, "gh/s1/reader/r1/decision", false, true},
		{"ReaderCmdNoSuchChannel", reader, "gh/s1/reader/r1/cmd", false, false},
		{"ReaderEventNoSuchChannel", reader, "gh/s1/reader/r1/event", false, false},
		{"DoorTap", door, "gh/s1/door/d1/tap", true, false},
		{"DoorEvent", door, "gh/s1/door/d1/event", true, false},
		{"DoorState", door, "gh/s1/door/d1/state", true, false},
		{"DoorDecision", door, "gh/s1/door/d1/decision", false, true},
		{"DoorCmd", door, "gh/s1/door/d1/cmd", false, true},
		{"KioskEvent", kiosk, "gh/s1/kiosk/k1/event", true, false},
		{"KioskCmd", kiosk, "gh/s1/kiosk/k1/cmd", false, true},
		{"KioskTapNoSuchChannel", kiosk, "gh/s1/kiosk/k1/tap", false, false},
		{"DispenserEvent", disp, "gh/s1/dispenser/x1/event", true, false},
		{"DispenserCmd", disp, "gh/s1/dispenser/x1/cmd", false, true},

		{"OtherDevice", reader, "gh/s1/reader/r2/tap", false, false},
		{"OtherDeviceDecision", reader, "gh/s1/reader/r2/decision", false, false},
		{"OtherDevicePrefix", reader, "gh/s1/reader/r10/tap", false, false},
		{"OtherKindSameID", reader, "gh/s1/door/r1/tap", false, false},
		{"OtherSite", reader, "gh/s2/reader/r1/tap", false, false},
		{"OtherSiteDecision", reader, "gh/s2/reader/r1/decision", false, false},
		{"CaseOfID", reader, "gh/s1/reader/R1/tap", false, false},
		{"WildcardDevice", reader, "gh/s1/reader/+/decision", false, false},
		{"WildcardChannel", door, "gh/s1/door/d1/+", false, false},
		{"WildcardHash", door, "gh/s1/door/d1/#", false, false},
		{"WildcardSite", reader, "gh/+/reader/r1/decision", false, false},
		{"WildcardAll", reader, "#", false, false},
		{"WildcardSiteAll", reader, "gh/s1/#", false, false},
		{"Sys", reader, "$SYS/#", false, false},
		{"SysTopic", reader, "$SYS/broker/clients/connected", false, false},
		{"Shared", door, "$share/g/gh/s1/door/d1/cmd", false, false},
		{"ExtraLevel", reader, "gh/s1/reader/r1/tap/x", false, false},
		{"EmptyLevel", reader, "gh/s1/reader/r1//tap", false, false},
		{"Empty", reader, "", false, false},
		{"OtherPrefix", reader, "xx/s1/reader/r1/tap", false, false},
		{"InjectionInID", Device{Site: "s1", Kind: KindReader, ID: "r1/tap"}, "gh/s1/reader/r1/tap/tap", false, false},
		{"InjectionInIDToOther", Device{Site: "s1", Kind: KindReader, ID: "r2/decision/x"}, "gh/s1/reader/r2/decision", false, false},
		{"InjectionInSite", Device{Site: "s1/reader/r2", Kind: KindReader, ID: "r1"}, "gh/s1/reader/r2/reader/r1/tap", false, false},
		{"WildcardInID", Device{Site: "s1", Kind: KindReader, ID: "+"}, "gh/s1/reader/+/decision", false, false},
		{"HashInSite", Device{Site: "#", Kind: KindReader, ID: "r1"}, "gh/#", false, false},
		{"EmptyDevice", Device{}, "gh///tap", false, false},
		{"UnknownKind", Device{Site: "s1", Kind: "robot", ID: "r1"}, "gh/s1/robot/r1/tap", false, false},
		{"NUL", reader, "gh/s1/reader/r1/tap\x00", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DeviceMayPublish(tc.dev, tc.topic); got != tc.pub {
				t.Errorf("DeviceMayPublish(%v, %q) = %t, want %t", tc.dev, tc.topic, got, tc.pub)
			}
			if got := DeviceMaySubscribe(tc.dev, tc.topic); got != tc.sub {
				t.Errorf("DeviceMaySubscribe(%v, %q) = %t, want %t", tc.dev, tc.topic, got, tc.sub)
			}
		})
	}
}

func TestSiteACL(t *testing.T) {
	for _, tc := range []struct {
		name, site, topic string
		pub, sub          bool
	}{
		{"Decision", "s1", "gh/s1/reader/r1/decision", true, true},
		{"Cmd", "s1", "gh/s1/door/d1/cmd", true, true},
		{"AnyTopicBelow", "s1", "gh/s1/site/node-1/status", true, true},
		{"AllOfSite", "s1", "gh/s1/#", false, true},
		{"SiteFilter", "s1", "gh/s1/+/+/tap", false, true},
		{"DeviceFilter", "s1", "gh/s1/door/d1/+", false, true},
		{"SharedTaps", "s1", "$share/edge/gh/s1/+/+/tap", false, true},
		{"SharedOtherSite", "s1", "$share/edge/gh/s2/+/+/tap", false, false},
		{"SharedNoGroup", "s1", "$share//gh/s1/+/+/tap", false, false},
		{"SharedWildcardGroup", "s1", "$share/+/gh/s1/+/+/tap", false, false},
		{"SharedNoFilter", "s1", "$share/edge", false, false},
		{"OtherSite", "s1", "gh/s2/reader/r1/decision", false, false},
		{"OtherSitePrefix", "s1", "gh/s10/reader/r1/decision", false, false},
		{"SiteItself", "s1", "gh/s1", false, false},
		{"SiteSlash", "s1", "gh/s1/", false, false},
		{"WildcardSite", "s1", "gh/+/reader/r1/decision", false, false},
		{"Everything", "s1", "#", false, false},
		{"AllSites", "s1", "gh/#", false, false},
		{"Sys", "s1", "$SYS/#", false, false},
		{"HashNotLast", "s1", "gh/s1/#/tap", false, false},
		{"HashInLevel", "s1", "gh/s1/door/d#", false, false},
		{"PlusInLevel", "s1", "gh/s1/door/d+/cmd", false, false},
		{"NUL", "s1", "gh/s1/door/d1/cmd\x00", false, false},
		{"BadUTF8", "s1", "gh/s1/door/\xff/cmd", false, false},
		{"InvalidSite", "s/1", "gh/s/1/door/d1/cmd", false, false},
		{"EmptySite", "", "gh//door/d1/cmd", false, false},
		{"WildcardAsSite", "+", "gh/+/door/d1/cmd", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SiteMayPublish(tc.site, tc.topic); got != tc.pub {
				t.Errorf("SiteMayPublish(%q, %q) = %t, want %t", tc.site, tc.topic, got, tc.pub)
			}
			if got := SiteMaySubscribe(tc.site, tc.topic); got != tc.sub {
				t.Errorf("SiteMaySubscribe(%q, %q) = %t, want %t", tc.site, tc.topic, got, tc.sub)
			}
		})
	}
}
