package access

import (
	"strconv"
	"time"
)

// requireID returns an Invalid error unless id is a canonical ID.
func requireID(what string, id ID) error {
	if id.IsZero() {
		return Errorf(Invalid, "%s is required", what)
	}
	if !id.valid() {
		return Errorf(Invalid, "%s %q: %w", what, string(id), ErrBadID)
	}
	return nil
}

// optionalID returns an Invalid error unless id is zero or a canonical ID.
func optionalID(what string, id ID) error {
	if id.IsZero() {
		return nil
	}
	return requireID(what, id)
}

// checkValidity returns an Invalid error when both bounds of a validity
// window are set and until is not after from.
func checkValidity(what string, from, until time.Time) error {
	if !from.IsZero() && !until.IsZero() && !until.After(from) {
		return Errorf(Invalid, "%s: valid until %s is not after valid from %s",
			what, until.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	return nil
}

// within reports whether t lies in the half-open window [from, until), where
// a zero bound is unbounded.
func within(t, from, until time.Time) bool {
	return (from.IsZero() || !t.Before(from)) && (until.IsZero() || t.Before(until))
}

// enumName returns names[v], or "unknown(v)" when v has no name.
func enumName(names []string, v int) string {
	if v >= 0 && v < len(names) && names[v] != "" {
		return names[v]
	}
	return "unknown(" + strconv.Itoa(v) + ")"
}

// enumValue returns the index of s in names, ignoring empty names.
func enumValue(names []string, s string) (int, bool) {
	for i, n := range names {
		if n != "" && n == s {
			return i, true
		}
	}
	return 0, false
}

// parseEnum parses s as one of names for the type called typ, returning an
// Invalid error that lists the accepted names otherwise.
func parseEnum(typ string, names []string, s string) (int, error) {
	if v, ok := enumValue(names, s); ok {
		return v, nil
	}
	var list string
	for _, n := range names {
		if n == "" {
			continue
		}
		if list != "" {
			list += ", "
		}
		list += n
	}
	return 0, Errorf(Invalid, "unknown %s %q (want one of %s)", typ, s, list)
}
