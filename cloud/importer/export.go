package importer

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Record is one person to export: the person, the reference Import should
// resolve back to their occupier (its name, or its ID), their cards and the
// references of their groups (names or IDs).
type Record struct {
	Person   access.Person
	Occupier string
	Cards    []access.Card
	Groups   []string
}

// Writer writes people as CSV: a header of Fields, then one row per person,
// every cell passed through Escape. Several cards of a person share one row:
// card_number, card_format, card_facility and card_status then list one
// value per card, separated by ';'. Times are written in RFC 3339 in UTC,
// booleans as true or false. A Writer is not safe for concurrent use.
type Writer struct {
	w      *csv.Writer
	header bool
	row    []string
	buf    [4][]string
}

// NewWriter returns a Writer that writes to w. Call Flush when done.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: csv.NewWriter(w), row: make([]string, len(Fields))}
}

// Write writes rec, after the header if it is the first. It returns an
// Invalid error for a person without a name or of a kind Import cannot read
// back (a visitor), and the underlying writer's error as is.
func (w *Writer) Write(rec Record) error {
	if err := w.writeHeader(); err != nil {
		return err
	}
	p := rec.Person
	if p.Kind != access.Occupier && p.Kind != access.AccessUser {
		return access.Errorf(access.Invalid, "importer.Writer: person %s: kind %s cannot be exported", p.ID, p.Kind)
	}
	if p.Name == "" {
		return access.Errorf(access.Invalid, "importer.Writer: person %s has no name", p.ID)
	}
	for _, g := range rec.Groups {
		if strings.ContainsRune(g, ';') || g != strings.TrimSpace(g) || g == "" {
			return access.Errorf(access.Invalid, "importer.Writer: person %s: group reference %q is empty, holds ';' or has surrounding spaces", p.ID, g)
		}
	}
	nums, formats, facs, statuses := w.buf[0][:0], w.buf[1][:0], w.buf[2][:0], w.buf[3][:0]
	for _, c := range rec.Cards {
		f, n, fac := formatCard(c.Number)
		nums, formats, facs = append(nums, n), append(formats, f), append(facs, fac)
		statuses = append(statuses, c.Status.String())
	}
	w.buf = [4][]string{nums, formats, facs, statuses}
	fac := strings.Join(facs, ";")
	if strings.Trim(fac, ";") == "" {
		fac = "" // raw cards only
	}
	// In the order of Fields.
	cells := [...]string{
		p.Kind.String(), p.Name, p.Email, rec.Occupier,
		strings.Join(nums, ";"), strings.Join(formats, ";"), fac, strings.Join(statuses, ";"),
		strings.Join(rec.Groups, ";"), strconv.FormatBool(p.OfflineAccess), strconv.FormatBool(p.Active),
		formatTime(p.ValidFrom), formatTime(p.ValidUntil),
	}
	for i, c := range cells {
		w.row[i] = Escape(c)
	}
	return w.w.Write(w.row)
}

func (w *Writer) writeHeader() error {
	if w.header {
		return nil
	}
	w.header = true
	h := make([]string, len(Fields))
	for i, f := range Fields {
		h[i] = string(f)
	}
	return w.w.Write(h)
}

// Flush writes the header if nothing was written, and flushes; it returns
// the underlying writer's error.
func (w *Writer) Flush() error {
	if err := w.writeHeader(); err != nil {
		return err
	}
	w.w.Flush()
	return w.w.Error()
}

// formatTime writes t in RFC 3339 UTC, or "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
