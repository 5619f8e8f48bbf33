package mqttproto

import (
	"strings"
	"unicode/utf8"
)

// The broker's access rules. A broker (the edge's embedded one through its
// auth hook, or an external one through generated ACLs) authenticates each
// device with its own user name (Device.Username) and password, and then
// lets it publish and subscribe only as these functions allow. The site
// service has its own identity and may do anything under gh/{site}/.
//
// The functions are pure and safe for concurrent use. They answer false for
// anything malformed; they never panic.

// DeviceMayPublish reports whether device dev may publish on topic: only on
// its own topics of the device-to-site channels its kind uses (tap, event,
// state), exactly, with no wildcard.
func DeviceMayPublish(dev Device, topic string) bool {
	t, err := ParseTopic(topic)
	return err == nil && dev.Validate() == nil && t.Dev() == dev && t.Channel.FromDevice()
}

// DeviceMaySubscribe reports whether device dev may subscribe to filter:
// only to its own topics of the site-to-device channels its kind uses
// (decision, cmd), exactly. A filter with any wildcard is refused, as is a
// shared subscription ($share/...).
func DeviceMaySubscribe(dev Device, filter string) bool {
	t, err := ParseTopic(filter)
	return err == nil && dev.Validate() == nil && t.Dev() == dev && !t.Channel.FromDevice()
}

// SiteMayPublish reports whether the site service of site may publish on
// topic: any topic under gh/{site}/ (one or more levels below it), without
// wildcards.
func SiteMayPublish(site, topic string) bool {
	rest, ok := underSite(site, topic)
	return ok && !strings.ContainsAny(rest, "+#")
}

// SiteMaySubscribe reports whether the site service of site may subscribe
// to filter: a valid MQTT filter whose first two levels are literally gh
// and site, with at least one level below them (gh/{site}/# is the
// widest), optionally as a shared subscription $share/{group}/{filter} so
// that several edge nodes split the load.
func SiteMaySubscribe(site, filter string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		group, f, ok := strings.Cut(rest, "/")
		if !ok || group == "" || strings.ContainsAny(group, "+#") {
			return false
		}
		filter = f
	}
	rest, ok := underSite(site, filter)
	if !ok {
		return false
	}
	levels := strings.Split(rest, "/")
	for i, l := range levels {
		switch {
		case l == "#":
			if i != len(levels)-1 {
				return false
			}
		case l == "+":
		case strings.ContainsAny(l, "+#"):
			return false
		}
	}
	return true
}

// underSite checks that s is a well-formed MQTT topic or filter (1 to
// 65535 bytes of UTF-8 without NUL) of the form gh/{site}/REST with REST
// not empty, and returns REST.
func underSite(site, s string) (string, bool) {
	if !ValidName(site) || len(s) > 65535 || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return "", false
	}
	rest, ok := strings.CutPrefix(s, Prefix+"/"+site+"/")
	return rest, ok && rest != ""
}
