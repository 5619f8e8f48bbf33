package device

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// Document is an identity document a simulated kiosk scans: what its
// machine-readable zone (ICAO 9303) says. MRZ writes the zone.
type Document struct {
	// Type is passport (a TD3 zone, 2 lines of 44) or id_card (TD1, 3
	// lines of 30); the zero value is a passport.
	Type mqttproto.DocType
	// GivenNames and Surname are the holder's names as printed; MRZ
	// transliterates them to A-Z (Ä→AE, ß→SS, accents dropped) and
	// truncates what does not fit, as issuers do.
	GivenNames, Surname string
	// Number is the document number, 1 to 9 characters of A-Z 0-9.
	Number string
	// Issuer and Nationality are state codes of one to three letters
	// (default "UTO", ICAO's specimen state; "D" is written "D<<").
	Issuer, Nationality string
	// Birth is the holder's date of birth; the zero time writes it as
	// unknown (fillers).
	Birth time.Time
	// Sex is 'M', 'F' or 'X' (default 'X': unspecified, a filler).
	Sex byte
	// Expiry is the last day the document is valid.
	Expiry time.Time
}

// ErrDocument reports a Document that cannot be written as a zone.
var ErrDocument = errors.New("device: bad document")

// MRZ returns the lines of d's machine-readable zone with every check
// digit computed, as a document scanner reads them. It returns an error
// wrapping ErrDocument for a missing surname, number or expiry, a number
// or code outside A-Z 0-9, or a type other than passport and id_card.
func (d Document) MRZ() ([]string, error) {
	if d.Type == "" {
		d.Type = mqttproto.DocPassport
	}
	if d.Issuer == "" {
		d.Issuer = "UTO"
	}
	if d.Nationality == "" {
		d.Nationality = "UTO"
	}
	sex := d.Sex
	switch sex {
	case 0, 'X':
		sex = '<'
	case 'M', 'F':
	default:
		return nil, fmt.Errorf("%w: sex %q is not M, F or X", ErrDocument, d.Sex)
	}
	surname := mrzWords(d.Surname)
	switch {
	case surname == "":
		return nil, fmt.Errorf("%w: the surname has no letter", ErrDocument)
	case d.Number == "" || len(d.Number) > 9 || !mrzChars(d.Number):
		return nil, fmt.Errorf("%w: document number %q: want 1 to 9 characters of A-Z 0-9", ErrDocument, d.Number)
	case len(d.Issuer) > 3 || !mrzLetters(d.Issuer) || len(d.Nationality) > 3 || !mrzLetters(d.Nationality):
		return nil, fmt.Errorf("%w: issuer %q and nationality %q must be one to three letters A-Z", ErrDocument, d.Issuer, d.Nationality)
	case d.Expiry.IsZero():
		return nil, fmt.Errorf("%w: no expiry date", ErrDocument)
	}
	name := surname + "<<" + mrzWords(d.GivenNames)
	birth := "<<<<<<"
	if !d.Birth.IsZero() {
		birth = d.Birth.UTC().Format("060102")
	}
	expiry := d.Expiry.UTC().Format("060102")
	number := fill(d.Number, 9)
	issuer, nationality := fill(d.Issuer, 3), fill(d.Nationality, 3) // "D" is written "D<<"
	switch d.Type {
	case mqttproto.DocPassport:
		l1 := fill("P<"+issuer+name, 44)
		personal := fill("", 14)
		l2 := number + check(number) + nationality + birth + check(birth) + string(sex) + expiry + check(expiry) + personal + "<"
		l2 += check(l2[0:10] + l2[13:20] + l2[21:43])
		return []string{l1, l2}, nil
	case mqttproto.DocIDCard:
		l1 := "I<" + issuer + number + check(number) + fill("", 15)
		l2 := birth + check(birth) + string(sex) + expiry + check(expiry) + nationality + fill("", 11)
		l2 += check(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29])
		return []string{l1, l2, fill(name, 30)}, nil
	}
	return nil, fmt.Errorf("%w: type %q (want passport or id_card)", ErrDocument, d.Type)
}

// DocTypeOf returns the document type a zone of these lines has: a
// passport for 2 lines of 44 starting with P, a visa for 2 of 44 starting
// with V, an identity card for 3 lines of 30 or 2 of 36, other otherwise.
func DocTypeOf(lines []string) mqttproto.DocType {
	switch {
	case len(lines) == 2 && len(lines[0]) == 44 && strings.HasPrefix(lines[0], "P"):
		return mqttproto.DocPassport
	case len(lines) == 2 && len(lines[0]) == 44 && strings.HasPrefix(lines[0], "V"):
		return mqttproto.DocVisa
	case len(lines) == 3 && len(lines[0]) == 30, len(lines) == 2 && len(lines[0]) == 36:
		return mqttproto.DocIDCard
	}
	return mqttproto.DocOther
}

// mrzWords transliterates a printed name to MRZ words joined by '<'.
func mrzWords(name string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(name) {
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '\'' || r == '’' || r == ',' || r == '.':
			b.WriteByte(' ')
		default:
			if t, ok := translit[r]; ok {
				b.WriteString(t)
			} else if unicode.IsLetter(r) {
				b.WriteByte('X')
			}
		}
	}
	return strings.Join(strings.Fields(b.String()), "<")
}

// translit maps the common accented capitals to the MRZ alphabet (ICAO
// 9303 Part 3).
var translit = map[rune]string{
	'Ä': "AE", 'Ö': "OE", 'Ü': "UE", 'ß': "SS", 'Å': "AA", 'Æ': "AE", 'Ø': "OE", 'Ñ': "N",
	'À': "A", 'Á': "A", 'Â': "A", 'Ã': "A", 'Ç': "C", 'Č': "C", 'È': "E", 'É': "E", 'Ê': "E", 'Ë': "E",
	'Ì': "I", 'Í': "I", 'Î': "I", 'Ï': "I", 'Ł': "L", 'Ò': "O", 'Ó': "O", 'Ô': "O", 'Õ': "O",
	'Š': "S", 'Ù': "U", 'Ú': "U", 'Û': "U", 'Ý': "Y", 'Ž': "Z",
}

// fill pads s with fillers to n characters, or truncates it.
func fill(s string, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat("<", n-len(s))
}

func mrzChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func mrzLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// check returns the ICAO 9303 check digit of s: character values (0-9,
// A=10...Z=35, '<'=0) weighted 7, 3, 1 repeating, summed, modulo 10.
func check(s string) string {
	weights := [3]int{7, 3, 1}
	sum := 0
	for i := 0; i < len(s); i++ {
		v := 0
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			v = int(c - '0')
		case c >= 'A' && c <= 'Z':
			v = int(c-'A') + 10
		}
		sum += v * weights[i%3]
	}
	return string(rune('0' + sum%10))
}
