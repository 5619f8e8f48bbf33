package access

import (
	"strconv"
	"time"
)

// CardNumber is the numeric ID of a card, unique across the platform. Zero
// is not a valid card number. Wiegand credentials map to card numbers
// through WiegandCredential.Number.
type CardNumber uint64

// ParseCardNumber parses a non-zero decimal card number. It returns an
// Invalid error wrapping ErrBadCardNumber for anything else.
func ParseCardNumber(s string) (CardNumber, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, Errorf(Invalid, "card number %q: %w", s, ErrBadCardNumber)
	}
	return CardNumber(n), nil
}

// String returns n in decimal.
func (n CardNumber) String() string { return strconv.FormatUint(uint64(n), 10) }

// Redacted returns n with all but its last four decimal digits replaced by
// '*', for logs at levels that must not carry full card IDs.
func (n CardNumber) Redacted() string {
	s := n.String()
	if len(s) <= 4 {
		return s
	}
	b := []byte(s)
	for i := 0; i < len(b)-4; i++ {
		b[i] = '*'
	}
	return string(b)
}

// CardStatus is the lifecycle status of a card. Only CardActive cards open
// doors. The zero value is not a valid status.
type CardStatus uint8

// The card statuses.
const (
	// CardActive is a card in use.
	CardActive CardStatus = iota + 1
	// CardSuspended is a card temporarily blocked, by security or because
	// a merge found its number bound to two holders.
	CardSuspended
	// CardLost is a card reported lost or stolen.
	CardLost
	// CardReturned is a card handed back, such as a visitor card at
	// checkout.
	CardReturned
)

var cardStatusNames = []string{CardActive: "active", CardSuspended: "suspended", CardLost: "lost", CardReturned: "returned"}

// String returns "active", "suspended", "lost" or "returned".
func (s CardStatus) String() string { return enumName(cardStatusNames, int(s)) }

// MarshalText returns the String form of s.
func (s CardStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses the String form of a card status into s, returning an
// Invalid error for any other text.
func (s *CardStatus) UnmarshalText(b []byte) error {
	v, err := parseEnum("card status", cardStatusNames, string(b))
	if err == nil {
		*s = CardStatus(v)
	}
	return err
}

// Card binds a card number to its holder. VisitID is set for a visitor card,
// whose access comes from the visit's grants rather than the person's.
// SiteID is the card's home, the only place that may assign its number; zero
// means the hub. The card opens doors only while its Status is CardActive and
// t is within [ValidFrom, ValidUntil) (a zero bound is unbounded).
type Card struct {
	Number     CardNumber
	PersonID   ID
	VisitID    ID
	SiteID     ID
	Status     CardStatus
	ValidFrom  time.Time
	ValidUntil time.Time
}

// Validate returns an Invalid error describing the first problem with c: a
// zero number, a malformed person, visit or site ID, an unknown status, or a
// validity window that ends before it starts.
func (c Card) Validate() error {
	if c.Number == 0 {
		return Errorf(Invalid, "card: number is required: %w", ErrBadCardNumber)
	}
	what := "card " + c.Number.Redacted()
	if err := requireID(what+": person id", c.PersonID); err != nil {
		return err
	}
	if err := optionalID(what+": visit id", c.VisitID); err != nil {
		return err
	}
	if err := optionalID(what+": site id", c.SiteID); err != nil {
		return err
	}
	if c.Status < CardActive || c.Status > CardReturned {
		return Errorf(Invalid, "%s: unknown status %d", what, c.Status)
	}
	return checkValidity(what, c.ValidFrom, c.ValidUntil)
}
