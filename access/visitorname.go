package access

import "strings"

// VisitorName returns the Person.Name of a visitor invited with given and
// family names: "Family, Given", or "Family" alone. The form is what
// replicates to the site, so that its kiosk can split it again
// (SplitVisitorName) and verify the guest's identity document against the
// invitation (MRZ.Verify) without the hub. Surrounding space is trimmed.
func VisitorName(given, family string) string {
	given, family = strings.TrimSpace(given), strings.TrimSpace(family)
	if given == "" {
		return family
	}
	return family + ", " + given
}

// SplitVisitorName splits a visitor's Person.Name made by VisitorName into
// given and family names. A name without a comma (a visitor registered
// some other way) is split before its last word.
func SplitVisitorName(name string) (given, family string) {
	name = strings.TrimSpace(name)
	if f, g, ok := strings.Cut(name, ","); ok {
		return strings.TrimSpace(g), strings.TrimSpace(f)
	}
	if i := strings.LastIndexByte(name, ' '); i >= 0 {
		return strings.TrimSpace(name[:i]), name[i+1:]
	}
	return "", name
}
