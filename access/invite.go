package access

import (
	"slices"
	"strings"
	"time"
)

// The rules of a visitor type, applied when a host invites a guest and again
// when the guest checks in, and the watchlist (or blocklist) security keeps.

// Invite is what a host asks for: a visit of a visitor type with access
// profiles (groups).
type Invite struct {
	Type     VisitorType
	From     time.Time
	Until    time.Time
	Escort   bool
	Profiles []ID
}

// CheckInvite applies the visitor type's rules to an invitation and returns
// every broken rule as one Denied error (nil when none is broken): each
// profile must be allowed for the type, the visit no longer than the type's
// maximum, and escorted when the type requires it. A malformed invitation
// (empty window, malformed or repeated profile IDs) is an Invalid error.
func CheckInvite(in Invite) error {
	if in.From.IsZero() || !in.Until.After(in.From) {
		return Errorf(Invalid, "invite: the visit window is empty")
	}
	for i, p := range in.Profiles {
		if err := requireID("invite: profile", p); err != nil {
			return err
		}
		if slices.Contains(in.Profiles[:i], p) {
			return Errorf(Invalid, "invite: profile %s given twice", p)
		}
	}
	var broken []string
	for _, p := range in.Profiles {
		if !slices.Contains(in.Type.AllowedGroups, p) {
			broken = append(broken, "profile "+string(p)+" is not allowed for "+in.Type.Name+" visitors")
		}
	}
	if limit := in.Type.MaxDuration; limit > 0 && in.Until.Sub(in.From) > limit {
		broken = append(broken, "the visit lasts "+in.Until.Sub(in.From).String()+", longer than "+limit.String()+" allowed for "+in.Type.Name+" visitors")
	}
	if in.Type.EscortRequired && !in.Escort {
		broken = append(broken, in.Type.Name+" visitors must be escorted")
	}
	if len(broken) > 0 {
		return Errorf(Denied, "invite: %s", strings.Join(broken, "; "))
	}
	return nil
}

// MissingDocuments returns the documents the visitor type requires that are
// not among provided (names compared without regard to case and
// surrounding space), in the type's order. A guest with missing documents
// cannot check in.
func MissingDocuments(vt VisitorType, provided []string) []string {
	have := map[string]bool{}
	for _, p := range provided {
		have[strings.ToLower(strings.TrimSpace(p))] = true
	}
	var missing []string
	for _, d := range vt.RequiredDocuments {
		if !have[strings.ToLower(strings.TrimSpace(d))] {
			missing = append(missing, d)
		}
	}
	return missing
}

// WatchAction is what a watchlist hit does to a visit.
type WatchAction uint8

// The watchlist actions.
const (
	// WatchHold holds the visit for security to decide: no invitation is
	// sent, no card is issued, until security releases or denies it.
	WatchHold WatchAction = iota + 1
	// WatchDeny denies the visit at once.
	WatchDeny
)

var watchActionNames = []string{WatchHold: "hold", WatchDeny: "deny"}

// String returns "hold" or "deny".
func (a WatchAction) String() string { return enumName(watchActionNames, int(a)) }

// WatchEntry is a person security wants to know about. Names are required;
// the birth date and document number, when set, must also match for a hit
// (they make a hit certain rather than likely).
type WatchEntry struct {
	ID             ID
	GivenNames     string
	Surname        string
	BirthDate      time.Time // date only; zero when unknown
	DocumentNumber string    // as in the document's MRZ; empty when unknown
	Action         WatchAction
	Reason         string
}

// Validate returns an Invalid error for an entry without an ID, a surname
// or a known action.
func (e WatchEntry) Validate() error {
	if err := requireID("watchlist entry id", e.ID); err != nil {
		return err
	}
	if len(mrzLetters(e.Surname, true)) == 0 {
		return Errorf(Invalid, "watchlist entry %s: surname is required", e.ID)
	}
	if e.Action != WatchHold && e.Action != WatchDeny {
		return Errorf(Invalid, "watchlist entry %s: unknown action %d", e.ID, e.Action)
	}
	return nil
}

// WatchSubject is who is checked against the watchlist: at invitation the
// names the host typed, at check-in the document's (with birth date and
// document number from its MRZ).
type WatchSubject struct {
	GivenNames     string
	Surname        string
	BirthDate      time.Time
	DocumentNumber string
}

// SubjectOf returns the watch subject of a parsed document.
func SubjectOf(m MRZ) WatchSubject {
	return WatchSubject{GivenNames: m.GivenNames, Surname: m.Surname, BirthDate: m.BirthDate, DocumentNumber: m.DocumentNumber}
}

// WatchHit is an entry that matched.
type WatchHit struct {
	Entry WatchEntry
	// Certain is set when a birth date or document number matched as well
	// as the name.
	Certain bool
}

// CheckWatchlist returns the entries that match s, the strongest action
// first. Names match as in MRZ.Verify (transliterated, a typo tolerated,
// first given names only). An entry's birth date or document number,
// when both sides have it, must match exactly; a document number alone
// matching is a hit whatever the name (the same document under another
// name is exactly what a watchlist is for).
func CheckWatchlist(list []WatchEntry, s WatchSubject) []WatchHit {
	var hits []WatchHit
	doc := normDoc(s.DocumentNumber)
	for _, e := range list {
		edoc := normDoc(e.DocumentNumber)
		if edoc != "" && edoc == doc {
			hits = append(hits, WatchHit{Entry: e, Certain: true})
			continue
		}
		if !watchNamesMatch(e, s) {
			continue
		}
		if !e.BirthDate.IsZero() && !s.BirthDate.IsZero() && !sameDate(e.BirthDate, s.BirthDate) {
			continue
		}
		if edoc != "" && doc != "" { // both known and different
			continue
		}
		certain := !e.BirthDate.IsZero() && !s.BirthDate.IsZero()
		hits = append(hits, WatchHit{Entry: e, Certain: certain})
	}
	slices.SortStableFunc(hits, func(a, b WatchHit) int { return int(b.Entry.Action) - int(a.Entry.Action) })
	return hits
}

func watchNamesMatch(e WatchEntry, s WatchSubject) bool {
	m := MRZ{Surname: strings.Join(mrzLetters(e.Surname, true), " "), GivenNames: strings.Join(mrzLetters(e.GivenNames, true), " ")}
	if namesMatch(m, s.GivenNames, s.Surname) {
		return true
	}
	m = MRZ{Surname: strings.Join(mrzLetters(e.Surname, false), " "), GivenNames: strings.Join(mrzLetters(e.GivenNames, false), " ")}
	return namesMatch(m, s.GivenNames, s.Surname)
}

func normDoc(s string) string {
	return strings.ToUpper(strings.NewReplacer(" ", "", "<", "", "-", "").Replace(s))
}

func sameDate(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd
}
