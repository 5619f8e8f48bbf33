package mqttproto

import (
	"strconv"
	"strings"
)

// Prefix is the first level of every topic of the protocol.
const Prefix = "gh"

// QoS is the MQTT quality of service of every message of the protocol: at
// least once. Receivers make repeats harmless (request IDs and sequence
// numbers, see docs/protocol-mqtt.md).
const QoS byte = 1

// maxTopicLen is the longest valid topic: gh/{site}/{kind}/{device}/{channel}
// with the longest names.
const maxTopicLen = len(Prefix) + 1 + MaxNameLen + 1 + len("dispenser") + 1 + MaxNameLen + 1 + len("decision")

// Kind is the kind of a device. Its value is its topic level.
type Kind string

// The device kinds.
const (
	// KindReader is a card reader that reports taps and shows decisions;
	// it drives no lock.
	KindReader Kind = "reader"
	// KindDoor is a door controller: it drives a strike or lock, watches the
	// door sensor and request-to-exit button, may have readers of its own,
	// and keeps deciding from its offline cache when cut off from its site.
	KindDoor Kind = "door"
	// KindKiosk is a visitor kiosk: it scans QR invitations and ID documents
	// and asks the site to check visitors in and out.
	KindKiosk Kind = "kiosk"
	// KindDispenser is a card dispenser and encoder: it writes card numbers,
	// hands cards out and captures returned ones.
	KindDispenser Kind = "dispenser"
)

// Kinds returns every device kind.
func Kinds() []Kind { return []Kind{KindReader, KindDoor, KindKiosk, KindDispenser} }

// Valid reports whether k is one of the device kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindReader, KindDoor, KindKiosk, KindDispenser:
		return true
	}
	return false
}

// Channels returns the channels a device of kind k uses, device-to-site
// channels first, or nil for an unknown kind.
func (k Kind) Channels() []Channel {
	switch k {
	case KindReader:
		return []Channel{ChannelTap, ChannelState, ChannelDecision}
	case KindDoor:
		return []Channel{ChannelTap, ChannelEvent, ChannelState, ChannelDecision, ChannelCmd}
	case KindKiosk, KindDispenser:
		return []Channel{ChannelEvent, ChannelState, ChannelCmd}
	}
	return nil
}

// Uses reports whether a device of kind k uses channel c.
func (k Kind) Uses(c Channel) bool {
	switch c {
	case ChannelState:
		return k.Valid()
	case ChannelTap, ChannelDecision:
		return k == KindReader || k == KindDoor
	case ChannelEvent, ChannelCmd:
		return k == KindDoor || k == KindKiosk || k == KindDispenser
	}
	return false
}

// Channel is the last topic level: what a message is. Every channel flows
// in one direction only.
type Channel string

// The channels.
const (
	// ChannelTap carries Tap, device to site: a credential presented at a
	// reader (readers and door controllers).
	ChannelTap Channel = "tap"
	// ChannelDecision carries Decision, site to device: the answer to a tap
	// (readers and door controllers).
	ChannelDecision Channel = "decision"
	// ChannelCmd carries DoorCmd, KioskCmd or DispenserCmd, site to device.
	ChannelCmd Channel = "cmd"
	// ChannelState carries State, device to site, retained: whether the
	// device is online, and its status. The device's last will publishes
	// an offline State here.
	ChannelState Channel = "state"
	// ChannelEvent carries DoorEvent, KioskEvent or DispenserEvent, device to
	// site, each with a per-device sequence number.
	ChannelEvent Channel = "event"
)

// Channels returns every channel.
func Channels() []Channel {
	return []Channel{ChannelTap, ChannelDecision, ChannelCmd, ChannelState, ChannelEvent}
}

// Valid reports whether c is one of the channels.
func (c Channel) Valid() bool {
	switch c {
	case ChannelTap, ChannelDecision, ChannelCmd, ChannelState, ChannelEvent:
		return true
	}
	return false
}

// FromDevice reports whether messages on c flow from the device to the site
// (tap, state, event); otherwise they flow from the site to the device
// (decision, cmd).
func (c Channel) FromDevice() bool {
	return c == ChannelTap || c == ChannelState || c == ChannelEvent
}

// Retained reports whether messages on c are published with the MQTT retain
// flag: only state is.
func (c Channel) Retained() bool { return c == ChannelState }

// ValidName reports whether s may be a site or device ID in a topic: 1 to
// MaxNameLen characters of A-Z a-z 0-9 _ -. Such a name can hold neither a
// level separator nor a wildcard.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// Topic is a parsed topic gh/{Site}/{Kind}/{Device}/{Channel}. A Topic is a
// plain value; make one with ParseTopic or Device.Topic, or as a literal and
// then check it with Validate.
type Topic struct {
	// Site is the site's ID (see ValidName).
	Site string
	// Kind is the device's kind.
	Kind Kind
	// Device is the device's ID within its site and kind (see ValidName).
	Device string
	// Channel is what the message is.
	Channel Channel
}

// String returns the topic text. It does not validate t; a topic built from
// unchecked parts must pass Validate before it is used.
func (t Topic) String() string {
	return Prefix + "/" + t.Site + "/" + string(t.Kind) + "/" + t.Device + "/" + string(t.Channel)
}

// Dev returns the device that t belongs to.
func (t Topic) Dev() Device { return Device{Site: t.Site, Kind: t.Kind, ID: t.Device} }

// Validate returns an error wrapping ErrBadTopic when t's site or device is
// not a valid name, its kind or channel is unknown, or its kind does not use
// its channel.
func (t Topic) Validate() error {
	switch {
	case !ValidName(t.Site):
		return topicErr(t.String(), "site %s is not 1 to %d characters of A-Z a-z 0-9 _ -", strconv.Quote(t.Site), MaxNameLen)
	case !t.Kind.Valid():
		return topicErr(t.String(), "unknown device kind %s (want reader, door, kiosk or dispenser)", strconv.Quote(string(t.Kind)))
	case !ValidName(t.Device):
		return topicErr(t.String(), "device %s is not 1 to %d characters of A-Z a-z 0-9 _ -", strconv.Quote(t.Device), MaxNameLen)
	case !t.Channel.Valid():
		return topicErr(t.String(), "unknown channel %s (want tap, decision, cmd, state or event)", strconv.Quote(string(t.Channel)))
	case !t.Kind.Uses(t.Channel):
		return topicErr(t.String(), "a %s has no %s channel", t.Kind, t.Channel)
	}
	return nil
}

// topicErr returns an ErrBadTopic error about topic s.
func topicErr(s, format string, args ...any) error {
	if len(s) > 2*maxTopicLen {
		s = s[:2*maxTopicLen] + "..."
	}
	return errorf("topic "+strings.ReplaceAll(strconv.Quote(s), "%", "%%"), ErrBadTopic, format, args...)
}

// ParseTopic parses a topic of the protocol. It is strict: the topic must
// have exactly the five levels gh/{site}/{kind}/{device}/{channel}, site and
// device must be valid names (see ValidName), kind and channel must be known
// and the kind must use the channel. Wildcards, empty levels, $-topics and
// anything else are refused with an error wrapping ErrBadTopic. ParseTopic
// does not allocate for a valid topic (the Topic's strings share s).
func ParseTopic(s string) (Topic, error) {
	if len(s) > maxTopicLen {
		return Topic{}, topicErr(s, "%d bytes, longer than any topic of the protocol (%d)", len(s), maxTopicLen)
	}
	if strings.ContainsAny(s, "+#") {
		return Topic{}, topicErr(s, "wildcards are not allowed in a topic")
	}
	var lv [5]string
	n, rest := 0, s
	for {
		i := strings.IndexByte(rest, '/')
		if n == len(lv) {
			return Topic{}, topicErr(s, "more than 5 levels, want gh/{site}/{kind}/{device}/{channel}")
		}
		if i < 0 {
			lv[n] = rest
			n++
			break
		}
		lv[n] = rest[:i]
		n++
		rest = rest[i+1:]
	}
	if n != len(lv) {
		return Topic{}, topicErr(s, "%d levels, want 5: gh/{site}/{kind}/{device}/{channel}", n)
	}
	if lv[0] != Prefix {
		return Topic{}, topicErr(s, "first level must be %q", Prefix)
	}
	t := Topic{Site: lv[1], Kind: Kind(lv[2]), Device: lv[3], Channel: Channel(lv[4])}
	if err := t.Validate(); err != nil {
		return Topic{}, err
	}
	return t, nil
}

// SiteFilter returns the subscription filter gh/{site}/+/+/{channel} with
// which the site receives channel c from all its devices. It returns an
// error wrapping ErrBadTopic when site is not a valid name or c is unknown.
func SiteFilter(site string, c Channel) (string, error) {
	if !ValidName(site) {
		return "", topicErr(Prefix+"/"+site+"/+/+/"+string(c), "site %s is not 1 to %d characters of A-Z a-z 0-9 _ -", strconv.Quote(site), MaxNameLen)
	}
	if !c.Valid() {
		return "", topicErr(Prefix+"/"+site+"/+/+/"+string(c), "unknown channel %s", strconv.Quote(string(c)))
	}
	return Prefix + "/" + site + "/+/+/" + string(c), nil
}

// SiteSubscriptions returns the filters the site subscribes to, one per
// device-to-site channel: gh/{site}/+/+/tap, .../event and .../state. It
// returns an error wrapping ErrBadTopic when site is not a valid name.
func SiteSubscriptions(site string) ([]string, error) {
	var fs []string
	for _, c := range Channels() {
		if !c.FromDevice() {
			continue
		}
		f, err := SiteFilter(site, c)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// DeviceFilter returns the filter gh/{site}/{kind}/{device}/+ with which the
// site (or a monitoring tool of the site) receives everything of one
// device. It returns an error wrapping ErrBadTopic when d is not valid.
func DeviceFilter(d Device) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	return Prefix + "/" + d.Site + "/" + string(d.Kind) + "/" + d.ID + "/+", nil
}

// Device identifies one device: its site, kind and ID. The ID is unique
// within the site and kind, and is the device's topic level.
type Device struct {
	// Site is the ID of the device's site (see ValidName).
	Site string
	// Kind is the device's kind.
	Kind Kind
	// ID is the device's ID within its site and kind (see ValidName).
	ID string
}

// Validate returns an error wrapping ErrBadTopic when d's site or ID is not a
// valid name or its kind is unknown.
func (d Device) Validate() error {
	return Topic{Site: d.Site, Kind: d.Kind, Device: d.ID, Channel: ChannelState}.Validate()
}

// String returns d as SITE/KIND/ID, for logs.
func (d Device) String() string { return d.Site + "/" + string(d.Kind) + "/" + d.ID }

// Topic returns d's topic on channel c. It does not validate; see Topic.
func (d Device) Topic(c Channel) Topic {
	return Topic{Site: d.Site, Kind: d.Kind, Device: d.ID, Channel: c}
}

// Subscriptions returns the exact topics device d subscribes to: one per
// site-to-device channel its kind uses (decision and/or cmd), without
// wildcards. It returns an error wrapping ErrBadTopic when d is not valid.
func (d Device) Subscriptions() ([]string, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	var ts []string
	for _, c := range d.Kind.Channels() {
		if !c.FromDevice() {
			ts = append(ts, d.Topic(c).String())
		}
	}
	return ts, nil
}

// Username returns the MQTT user name of d, SITE.KIND.ID; devices connect
// with it (and use it as their client ID), each with its own password.
func (d Device) Username() string { return d.Site + "." + string(d.Kind) + "." + d.ID }

// ParseUsername parses a user name made by Device.Username. It returns an
// error wrapping ErrBadTopic when s does not name a valid device.
func ParseUsername(s string) (Device, error) {
	site, rest, ok1 := strings.Cut(s, ".")
	kind, id, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		if len(s) > 3*MaxNameLen {
			s = s[:3*MaxNameLen] + "..."
		}
		return Device{}, errorf("username "+strings.ReplaceAll(strconv.Quote(s), "%", "%%"), ErrBadTopic, "want SITE.KIND.ID")
	}
	d := Device{Site: site, Kind: Kind(kind), ID: id}
	if err := d.Validate(); err != nil {
		return Device{}, err
	}
	return d, nil
}

// Will returns the last-will message of device d: its state topic and an
// offline State payload ({"v":1,"online":false}), to be set at connect time
// with QoS 1 and the retain flag, so that the broker marks d offline when it
// goes away without disconnecting. It returns an error wrapping ErrBadTopic
// when d is not valid.
func Will(d Device) (topic string, payload []byte, err error) {
	if err := d.Validate(); err != nil {
		return "", nil, err
	}
	b, err := State{}.Marshal()
	if err != nil {
		return "", nil, err
	}
	return d.Topic(ChannelState).String(), b, nil
}
