package access

import (
	"errors"
	"strings"
	"time"
	"unicode"
)

// The machine-readable zone (MRZ) of identity documents, ICAO Doc 9303:
// TD1 (ID cards: three lines of 30 characters) and TD3 (passports: two lines
// of 44). The site reads it from the kiosk's document scanner and checks it
// before it issues a visitor card: every check digit, that the document has
// not expired, and that the holder's name matches the invitation within a
// tolerance (ParseMRZ, then MRZ.Verify).

// MRZFormat is the layout of a machine-readable zone.
type MRZFormat uint8

// The supported layouts.
const (
	// TD1 is the ID-card layout: 3 lines of 30 characters.
	TD1 MRZFormat = iota + 1
	// TD3 is the passport layout: 2 lines of 44 characters.
	TD3
)

var mrzFormatNames = []string{TD1: "TD1", TD3: "TD3"}

// String returns "TD1" or "TD3".
func (f MRZFormat) String() string { return enumName(mrzFormatNames, int(f)) }

// The MRZ errors, wrapped in Invalid errors (Denied for ErrDocumentExpired
// and ErrNameMismatch) by ParseMRZ and MRZ.Verify.
var (
	// ErrMRZFormat: the text is not a TD1 or TD3 zone (line count, length,
	// characters, a field that is not a date or a code).
	ErrMRZFormat = errors.New("not a valid machine-readable zone")
	// ErrMRZCheckDigit: a check digit does not match its field, which is
	// how a misread or forged zone shows.
	ErrMRZCheckDigit = errors.New("check digit mismatch")
	// ErrDocumentExpired: the document's expiry date has passed.
	ErrDocumentExpired = errors.New("document expired")
	// ErrNameMismatch: the document's holder is not the invited person.
	ErrNameMismatch = errors.New("name does not match the invitation")
)

// MaxMRZInput bounds the text ParseMRZ accepts, whitespace included.
const MaxMRZInput = 512

// MRZ is a parsed and checked machine-readable zone. Names are as printed
// in the zone: upper-case A–Z, words separated by single spaces.
type MRZ struct {
	Format         MRZFormat
	DocumentType   string // "P", "ID", "I", "A", "C"…: the first two characters without fillers
	IssuingState   string // three-letter code (ICAO 9303 Part 3), fillers removed
	DocumentNumber string
	Surname        string
	GivenNames     string
	// NameTruncated is set when the name filled its field, so the zone may
	// hold only the start of the holder's name.
	NameTruncated bool
	Nationality   string
	BirthDate     time.Time // UTC midnight; zero when the zone leaves it unknown
	Sex           byte      // 'M', 'F' or 'X' (unspecified)
	Expiry        time.Time // UTC midnight of the last valid day
	Optional      string    // optional data, fillers removed
}

// ParseMRZ parses a TD1 or TD3 machine-readable zone from text: its lines
// separated by newlines (surrounding spaces and carriage returns are
// ignored), or concatenated. Every check digit is verified. Two-digit years
// are placed in the century that puts the birth date in the past and the
// expiry within 50 years of now. The error is Invalid, wrapping
// ErrMRZFormat or ErrMRZCheckDigit, and names the field at fault.
func ParseMRZ(text string, now time.Time) (MRZ, error) {
	if len(text) > MaxMRZInput {
		return MRZ{}, Errorf(Invalid, "mrz: %d bytes, more than %d: %w", len(text), MaxMRZInput, ErrMRZFormat)
	}
	var lines []string
	for l := range strings.SplitSeq(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	joined := strings.Join(lines, "")
	for i := 0; i < len(joined); i++ {
		if c := joined[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '<') {
			return MRZ{}, Errorf(Invalid, "mrz: character %q at %d is not A-Z, 0-9 or '<': %w", c, i, ErrMRZFormat)
		}
	}
	switch {
	case len(joined) == 90 && (len(lines) == 1 || len(lines) == 3 && len(lines[0]) == 30 && len(lines[1]) == 30):
		return parseTD1(joined[:30], joined[30:60], joined[60:], now)
	case len(joined) == 88 && (len(lines) == 1 || len(lines) == 2 && len(lines[0]) == 44):
		return parseTD3(joined[:44], joined[44:], now)
	}
	return MRZ{}, Errorf(Invalid, "mrz: %d lines of %d characters in all; want 3×30 (TD1) or 2×44 (TD3): %w", len(lines), len(joined), ErrMRZFormat)
}

func parseTD3(l1, l2 string, now time.Time) (MRZ, error) {
	m := MRZ{Format: TD3}
	if err := m.header(l1[:5]); err != nil {
		return MRZ{}, err
	}
	m.Surname, m.GivenNames, m.NameTruncated = mrzName(l1[5:])
	if err := checkField("document number", l2[0:9], l2[9]); err != nil {
		return MRZ{}, err
	}
	m.DocumentNumber = unfill(l2[0:9])
	var err error
	if m.Nationality, err = mrzCode("nationality", l2[10:13]); err != nil {
		return MRZ{}, err
	}
	if err := m.dates(l2[13:19], l2[19], l2[20], l2[21:27], l2[27], now); err != nil {
		return MRZ{}, err
	}
	// The personal number's check digit may be a filler when the field is
	// empty.
	if !(l2[42] == '<' && strings.Trim(l2[28:42], "<") == "") {
		if err := checkField("personal number", l2[28:42], l2[42]); err != nil {
			return MRZ{}, err
		}
	}
	m.Optional = unfill(l2[28:42])
	if err := checkField("composite", l2[0:10]+l2[13:20]+l2[21:43], l2[43]); err != nil {
		return MRZ{}, err
	}
	if m.DocumentNumber == "" || m.Surname == "" {
		return MRZ{}, Errorf(Invalid, "mrz: document number and surname are required: %w", ErrMRZFormat)
	}
	return m, nil
}

func parseTD1(l1, l2, l3 string, now time.Time) (MRZ, error) {
	m := MRZ{Format: TD1}
	if err := m.header(l1[:5]); err != nil {
		return MRZ{}, err
	}
	opt1 := l1[15:30]
	if l1[14] == '<' && opt1[0] != '<' {
		// A document number longer than 9 characters continues in the
		// optional data, up to its check digit before the first filler.
		end := strings.IndexByte(opt1, '<')
		if end < 2 {
			return MRZ{}, Errorf(Invalid, "mrz: long document number has no check digit: %w", ErrMRZFormat)
		}
		if err := checkField("document number", l1[5:14]+opt1[:end-1], opt1[end-1]); err != nil {
			return MRZ{}, err
		}
		m.DocumentNumber = l1[5:14] + opt1[:end-1]
		opt1 = opt1[end:]
	} else {
		if err := checkField("document number", l1[5:14], l1[14]); err != nil {
			return MRZ{}, err
		}
		m.DocumentNumber = unfill(l1[5:14])
	}
	if err := m.dates(l2[0:6], l2[6], l2[7], l2[8:14], l2[14], now); err != nil {
		return MRZ{}, err
	}
	var err error
	if m.Nationality, err = mrzCode("nationality", l2[15:18]); err != nil {
		return MRZ{}, err
	}
	m.Optional = strings.TrimSpace(unfill(opt1) + " " + unfill(l2[18:29]))
	if err := checkField("composite", l1[5:30]+l2[0:7]+l2[8:15]+l2[18:29], l2[29]); err != nil {
		return MRZ{}, err
	}
	m.Surname, m.GivenNames, m.NameTruncated = mrzName(l3)
	if m.DocumentNumber == "" || m.Surname == "" {
		return MRZ{}, Errorf(Invalid, "mrz: document number and surname are required: %w", ErrMRZFormat)
	}
	return m, nil
}

// header reads the document type and issuing state.
func (m *MRZ) header(s string) error {
	if s[0] < 'A' || s[0] > 'Z' {
		return Errorf(Invalid, "mrz: document type %q must start with a letter: %w", s[:2], ErrMRZFormat)
	}
	m.DocumentType = unfill(s[:2])
	var err error
	m.IssuingState, err = mrzCode("issuing state", s[2:5])
	return err
}

// dates reads birth date, sex and expiry with their check digits.
func (m *MRZ) dates(birth string, birthCheck, sex byte, expiry string, expiryCheck byte, now time.Time) error {
	if err := checkField("birth date", birth, birthCheck); err != nil {
		return err
	}
	if err := checkField("expiry date", expiry, expiryCheck); err != nil {
		return err
	}
	switch sex {
	case 'M', 'F', 'X':
		m.Sex = sex
	case '<':
		m.Sex = 'X'
	default:
		return Errorf(Invalid, "mrz: sex %q is not M, F, X or '<': %w", sex, ErrMRZFormat)
	}
	now = now.UTC()
	if strings.Trim(birth, "<") != "" { // an unknown birth date is all fillers
		b, err := mrzDate("birth date", birth)
		if err != nil {
			return err
		}
		if b.After(now) {
			b = b.AddDate(-100, 0, 0)
		}
		m.BirthDate = b
	}
	e, err := mrzDate("expiry date", expiry)
	if err != nil {
		return err
	}
	if e.After(now.AddDate(50, 0, 0)) {
		e = e.AddDate(-100, 0, 0)
	} else if e.Before(now.AddDate(-50, 0, 0)) {
		e = e.AddDate(100, 0, 0)
	}
	m.Expiry = e
	return nil
}

// mrzDate parses YYMMDD as a date in 2000–2099.
func mrzDate(field, s string) (time.Time, error) {
	for i := 0; i < 6; i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, Errorf(Invalid, "mrz: %s %q is not YYMMDD: %w", field, s, ErrMRZFormat)
		}
	}
	n := func(i int) int { return int(s[i]-'0')*10 + int(s[i+1]-'0') }
	y, mo, d := 2000+n(0), n(2), n(4)
	t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
	if mo < 1 || mo > 12 || d < 1 || t.Day() != d {
		return time.Time{}, Errorf(Invalid, "mrz: %s %q is not a date: %w", field, s, ErrMRZFormat)
	}
	return t, nil
}

// mrzCode reads a three-letter state code; fillers pad short codes ("D<<").
func mrzCode(field, s string) (string, error) {
	c := unfill(s)
	if c == "" || strings.ContainsAny(c, "0123456789") || strings.Contains(c, " ") {
		return "", Errorf(Invalid, "mrz: %s %q is not a state code: %w", field, s, ErrMRZFormat)
	}
	return c, nil
}

// mrzName splits a name field: SURNAME<<GIVEN<NAMES, fillers to the end.
func mrzName(s string) (surname, given string, truncated bool) {
	truncated = s[len(s)-1] != '<'
	sur, giv, _ := strings.Cut(strings.TrimRight(s, "<"), "<<")
	return unfill(sur), unfill(giv), truncated
}

// unfill turns fillers into single spaces and trims them.
func unfill(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '<' }), " ")
}

// checkField verifies field's check digit.
func checkField(name, field string, check byte) error {
	want, ok := mrzCheckDigit(field)
	if !ok || check < '0' || check > '9' {
		return Errorf(Invalid, "mrz: %s: %w", name, ErrMRZFormat)
	}
	if check-'0' != want {
		return Errorf(Invalid, "mrz: %s %q: %w (have %c, want %d)", name, strings.TrimRight(field, "<"), ErrMRZCheckDigit, check, want)
	}
	return nil
}

// mrzCheckDigit computes the ICAO 9303 check digit of s: character values
// (0–9, A=10…Z=35, '<'=0) weighted 7, 3, 1 repeating, summed, modulo 10.
func mrzCheckDigit(s string) (byte, bool) {
	weights := [3]int{7, 3, 1}
	sum := 0
	for i := 0; i < len(s); i++ {
		var v int
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			v = int(c - '0')
		case c >= 'A' && c <= 'Z':
			v = int(c-'A') + 10
		case c == '<':
		default:
			return 0, false
		}
		sum += v * weights[i%3]
	}
	return byte(sum % 10), true
}

// Verify checks that the document is valid on now's date (it expires at
// the end of its expiry day, UTC) and that its holder is the person
// invited as given and family names. Names match when, after
// transliteration to the MRZ alphabet (ICAO 9303 Part 3: Ä→AE or A, ß→SS,
// accents dropped, hyphens and apostrophes as separators), the surnames
// are the same give or take a typo (no edit under 4 letters, one under 12,
// two from 12), and the first given names are too (middle names may be
// left out on either side). Each part of a truncated zone's name is
// compared with the same number of letters of the invitation's. The
// error is Denied, wrapping ErrDocumentExpired or ErrNameMismatch.
func (m MRZ) Verify(now time.Time, given, family string) error {
	if !now.UTC().Before(m.Expiry.AddDate(0, 0, 1)) {
		return Errorf(Denied, "document %s expired on %s: %w", redactDoc(m.DocumentNumber), m.Expiry.Format(time.DateOnly), ErrDocumentExpired)
	}
	if !namesMatch(m, given, family) {
		return Errorf(Denied, "document holder %s %s: %w", m.GivenNames, m.Surname, ErrNameMismatch)
	}
	return nil
}

func redactDoc(n string) string {
	if len(n) <= 3 {
		return "***"
	}
	return strings.Repeat("*", len(n)-3) + n[len(n)-3:]
}

func namesMatch(m MRZ, given, family string) bool {
	for _, de := range []bool{true, false} {
		fam, giv := mrzLetters(family, de), mrzLetters(given, de)
		if len(fam) == 0 {
			return false
		}
		if m.NameTruncated {
			// The issuer shortened the name to fit: each part of the zone's
			// name is compared with as many letters of the invitation's.
			if !nameClose(m.Surname, cut(strings.Join(fam, " "), len(m.Surname))) {
				continue
			}
			mg := strings.Fields(m.GivenNames)
			if len(mg) == 0 || len(giv) > 0 && nameClose(mg[0], cut(giv[0], len(mg[0]))) {
				return true
			}
			continue
		}
		if !nameClose(m.Surname, strings.Join(fam, " ")) {
			continue
		}
		mg := strings.Fields(m.GivenNames)
		switch {
		case len(mg) == 0 && len(giv) == 0:
			return true
		case len(mg) > 0 && len(giv) > 0 && nameClose(mg[0], giv[0]):
			return true
		}
	}
	return false
}

// nameClose reports whether a and b are the same name give or take a typo:
// no edit for names under 4 letters, one under 12, two from 12.
func nameClose(a, b string) bool {
	n, d := max(len(a), len(b)), editDistance(a, b)
	switch {
	case n < 4:
		return d == 0
	case n < 12:
		return d <= 1
	}
	return d <= 2
}

// cut returns at most the first n bytes of s.
func cut(s string, n int) string { return s[:min(n, len(s))] }

// mrzLetters transliterates a printed name to MRZ words (A–Z). With de,
// umlauts become two letters (Ä→AE); without, the base letter (Ä→A).
func mrzLetters(name string, de bool) []string {
	var b strings.Builder
	for _, r := range strings.ToUpper(name) {
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '\'' || r == '’' || r == ',' || r == '.' || r == '<':
			b.WriteByte(' ')
		default:
			if t, ok := translit[r]; ok {
				if !de && len(t) == 2 && (r == 'Ä' || r == 'Ö' || r == 'Ü') {
					t = t[:1]
				}
				b.WriteString(t)
			} else if unicode.IsLetter(r) {
				b.WriteByte('X') // a letter outside the table still counts as one
			}
		}
	}
	return strings.Fields(b.String())
}

// translit maps accented capitals to the MRZ alphabet (ICAO 9303 Part 3,
// the common Latin subset).
var translit = map[rune]string{
	'Ä': "AE", 'Ö': "OE", 'Ü': "UE", 'ß': "SS", 'ẞ': "SS", 'Å': "AA", 'Æ': "AE", 'Ø': "OE", 'Œ': "OE",
	'Þ': "TH", 'Ĳ': "IJ", 'Ð': "D", 'Đ': "D", 'Ł': "L", 'Ñ': "N",
	'À': "A", 'Á': "A", 'Â': "A", 'Ã': "A", 'Ą': "A", 'Ă': "A", 'Ā': "A",
	'Ç': "C", 'Ć': "C", 'Č': "C", 'Ĉ': "C", 'Ċ': "C",
	'Ď': "D", 'È': "E", 'É': "E", 'Ê': "E", 'Ë': "E", 'Ę': "E", 'Ě': "E", 'Ē': "E", 'Ė': "E",
	'Ğ': "G", 'Ģ': "G", 'Ì': "I", 'Í': "I", 'Î': "I", 'Ï': "I", 'Ī': "I", 'İ': "I", 'Į': "I",
	'Ķ': "K", 'Ĺ': "L", 'Ľ': "L", 'Ļ': "L", 'Ń': "N", 'Ň': "N", 'Ņ': "N",
	'Ò': "O", 'Ó': "O", 'Ô': "O", 'Õ': "O", 'Ő': "O", 'Ō': "O",
	'Ŕ': "R", 'Ř': "R", 'Ś': "S", 'Š': "S", 'Ş': "S", 'Ș': "S", 'Ť': "T", 'Ţ': "T", 'Ț': "T",
	'Ù': "U", 'Ú': "U", 'Û': "U", 'Ů': "U", 'Ű': "U", 'Ū': "U", 'Ų': "U",
	'Ý': "Y", 'Ÿ': "Y", 'Ź': "Z", 'Ž': "Z", 'Ż': "Z",
}

// editDistance is the Levenshtein distance between two ASCII strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
