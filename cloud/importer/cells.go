package importer

import (
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// formulaStart reports whether s starts with a character that makes
// spreadsheets read a cell as a formula: = + - @ tab or carriage return.
func formulaStart(s string) bool {
	if s == "" {
		return false
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// Escape returns s as Export writes it into a cell: with a single quote
// prepended when s, once all its leading single quotes are removed, starts
// with = + - @ tab or carriage return, so that a spreadsheet shows the text
// instead of evaluating it. Unescape undoes it: Unescape(Escape(s)) == s for
// every s.
func Escape(s string) string {
	if formulaStart(strings.TrimLeft(s, "'")) {
		return "'" + s
	}
	return s
}

// Unescape removes the single quote Escape adds: one leading quote is
// removed when s starts with a quote and, once all its leading quotes are
// removed, starts with = + - @ tab or carriage return. Any other s is
// returned unchanged.
func Unescape(s string) string {
	if len(s) > 0 && s[0] == '\'' && formulaStart(strings.TrimLeft(s, "'")) {
		return s[1:]
	}
	return s
}

// parseBool parses the boolean spellings of the file format; ok is false
// for anything else. Empty is not handled here.
func parseBool(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "y", "1", "on":
		return true, true
	case "false", "no", "n", "0", "off":
		return false, true
	}
	return false, false
}

// parseTime parses a date (2006-01-02, midnight in loc) or an RFC 3339 time.
func parseTime(s string, loc *time.Location) (time.Time, bool) {
	if len(s) == len("2006-01-02") {
		t, err := time.ParseInLocation("2006-01-02", s, loc)
		return t, err == nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.UnixMilli() < 0 {
		return time.Time{}, false
	}
	return t, true
}

// cardFormat is how a card number is written in a file.
type cardFormat uint8

const (
	formatNumber cardFormat = iota + 1 // the platform number, any non-zero uint64
	formatRaw32                        // a raw 32-bit number
	formatRaw56                        // a raw 56-bit number
	formatH10301
	formatCorp1000
	formatH10304
)

var formatNames = []string{formatNumber: "number", formatRaw32: "raw32", formatRaw56: "raw56",
	formatH10301: "h10301", formatCorp1000: "corp1000", formatH10304: "h10304"}

func (f cardFormat) String() string { return formatNames[f] }

// wiegand returns the Wiegand format of f, or 0 for a raw format.
func (f cardFormat) wiegand() access.WiegandFormat {
	switch f {
	case formatH10301:
		return access.H10301
	case formatCorp1000:
		return access.Corporate1000
	case formatH10304:
		return access.H10304
	}
	return 0
}

// parseFormat parses a card format name, ignoring case; "corporate1000" is
// accepted for corp1000.
func parseFormat(s string) (cardFormat, bool) {
	s = strings.ToLower(s)
	if s == "corporate1000" {
		return formatCorp1000, true
	}
	for f := formatNumber; f <= formatH10304; f++ {
		if formatNames[f] == s {
			return f, true
		}
	}
	return 0, false
}

// cardNumber makes the platform number of a card written as num (and fac for
// Wiegand formats) in format f. It returns a message for people when the
// values are malformed or out of range.
func cardNumber(f cardFormat, num, fac string) (access.CardNumber, string) {
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, "card number " + quoteShort(num) + " is not a decimal number"
	}
	switch f {
	case formatNumber, formatRaw32, formatRaw56:
		if fac != "" {
			return 0, "a " + f.String() + " card has no facility code"
		}
		if n == 0 {
			return 0, "card number 0 is not allowed"
		}
		if f == formatRaw32 && n >= 1<<32 || f == formatRaw56 && n >= 1<<56 {
			return 0, "card number does not fit " + f.String()
		}
		return access.CardNumber(n), ""
	}
	if fac == "" {
		return 0, "a " + f.String() + " card needs a facility code"
	}
	fc, err := strconv.ParseUint(fac, 10, 32)
	if err != nil {
		return 0, "facility code " + quoteShort(fac) + " is not a decimal number"
	}
	w := f.wiegand()
	if _, err := access.ParseWiegandCredential(w.String() + ":" + strconv.FormatUint(fc, 10) + ":" + strconv.FormatUint(n, 10)); err != nil {
		return 0, "facility code or card number does not fit " + f.String()
	}
	return access.WiegandCredential{Format: w, Facility: uint32(fc), Card: n}.Number(), ""
}

// formatCard returns how Export writes n: its format, number and facility.
func formatCard(n access.CardNumber) (format, num, fac string) {
	if c, err := access.WiegandFromNumber(n); err == nil {
		var f cardFormat
		switch c.Format {
		case access.H10301:
			f = formatH10301
		case access.Corporate1000:
			f = formatCorp1000
		default:
			f = formatH10304
		}
		return f.String(), strconv.FormatUint(c.Card, 10), strconv.FormatUint(uint64(c.Facility), 10)
	}
	switch {
	case n < 1<<32:
		return formatRaw32.String(), n.String(), ""
	case n < 1<<56:
		return formatRaw56.String(), n.String(), ""
	}
	return formatNumber.String(), n.String(), ""
}

// quoteShort quotes s for a message, cut to 40 bytes.
func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

// splitList splits a list cell on sep, trimming items and dropping empty
// ones.
func splitList(s string, sep rune) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, string(sep))
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// splitParallel splits a list cell on sep keeping empty items, for the
// card columns whose items line up with each other.
func splitParallel(s string, sep rune) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, string(sep))
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}
