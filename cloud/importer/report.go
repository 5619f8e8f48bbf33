package importer

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/access"
)

// ErrRejected (invalid) is wrapped by every *Report: the file had bad rows
// and nothing was imported.
var ErrRejected error = &access.Error{Code: access.Invalid, Msg: "import rejected"}

// Reason classifies a RowError. Reasons are stable snake_case strings
// suitable for JSON and for tests.
type Reason string

// The reasons.
const (
	ReasonSyntax       Reason = "syntax"        // the CSV is malformed (a bare or unclosed quote)
	ReasonEncoding     Reason = "encoding"      // the cell is not valid UTF-8
	ReasonColumns      Reason = "column_count"  // the row has a different number of columns than the header
	ReasonHeader       Reason = "header"        // the header or mapping is unusable
	ReasonRequired     Reason = "required"      // a required field is empty
	ReasonTooLong      Reason = "too_long"      // the value exceeds its length limit
	ReasonFormula      Reason = "formula"       // the value looks like a spreadsheet formula
	ReasonInvalid      Reason = "invalid"       // the value is malformed (email, number, date, boolean...)
	ReasonDuplicate    Reason = "duplicate"     // the card number is already on an earlier line of the file
	ReasonTaken        Reason = "taken"         // the card number is already on the platform
	ReasonUnknown      Reason = "unknown"       // the group or occupier is not known
	ReasonNotAllowed   Reason = "not_allowed"   // the value is not allowed for this kind of person
	ReasonTooManyRows  Reason = "too_many_rows" // the file has more rows than Options.MaxRows
	ReasonInconsistent Reason = "inconsistent"  // the values contradict each other (a validity window)
)

// RowError is one problem with one row. Line is the physical line (1-based,
// counting the header and every line of multi-line quoted fields) the bad
// cell starts on, or the row starts on when no single cell is at fault;
// Column is the 1-based column of the cell (0 for the whole row) and Field
// its field, if mapped. OtherLine is the line of the first occurrence of a
// duplicate card number (0 otherwise). Message is for people; card numbers
// in it are redacted to their last four digits.
type RowError struct {
	Line      int    `json:"line"`
	Column    int    `json:"column,omitempty"`
	Field     Field  `json:"field,omitempty"`
	Reason    Reason `json:"reason"`
	Message   string `json:"message"`
	OtherLine int    `json:"other_line,omitempty"`
}

// String returns the error as "line L, column C (field): message".
func (e RowError) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d", e.Line)
	if e.Column > 0 {
		fmt.Fprintf(&b, ", column %d", e.Column)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " (%s)", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

// Report is the error returned when an import is rejected. Errors lists the
// problems sorted by line and column; at most Options.MaxErrors are kept
// and Dropped counts the rest. Rows is the number of data rows read. A
// Report wraps ErrRejected, so access.ErrorCode reports it as invalid.
type Report struct {
	Rows    int        `json:"rows"`
	Errors  []RowError `json:"errors"`
	Dropped int        `json:"dropped,omitempty"`
}

// Error returns a summary and the first few errors.
func (r *Report) Error() string {
	var b strings.Builder
	n := len(r.Errors) + r.Dropped
	fmt.Fprintf(&b, "import rejected: %d error", n)
	if n != 1 {
		b.WriteString("s")
	}
	for i, e := range r.Errors {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", n-3)
			break
		}
		b.WriteString("; ")
		b.WriteString(e.String())
	}
	return b.String()
}

// Unwrap returns ErrRejected.
func (r *Report) Unwrap() error { return ErrRejected }

// reporter collects row errors up to a limit.
type reporter struct {
	max     int
	errs    []RowError
	dropped int
}

func (rp *reporter) add(e RowError) {
	if len(rp.errs) >= rp.max {
		rp.dropped++
		return
	}
	rp.errs = append(rp.errs, e)
}

func (rp *reporter) count() int { return len(rp.errs) + rp.dropped }

// report returns the sorted report, or nil when there were no errors.
func (rp *reporter) report(rows int) *Report {
	if rp.count() == 0 {
		return nil
	}
	slices.SortStableFunc(rp.errs, func(a, b RowError) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return &Report{Rows: rows, Errors: rp.errs, Dropped: rp.dropped}
}
