// Package importer is the engine of the bulk CSV import and export of
// cardholders (occupier users and access users). It reads and writes CSV and
// checks rows; it does no storage and no transport: the hub's API and store
// call it, hand it lookup functions for what is already on the platform, and
// commit what it returns in one transaction.
//
// Import is all-or-nothing. Import reads the whole file, checks every row and
// either returns every row as ready-made access values (a Person, its Cards
// and its Grants, with new IDs, in file order) or a *Report listing every bad
// row with its physical line number, column and reason, and nothing else.
//
// Export writes people with their cards and groups as CSV with a stable
// header that Import reads back with its default mapping, and protects
// spreadsheet users against formula injection (see Escape).
//
// The file format, the column mapping, every validation rule and the error
// report are specified in docs/csv-import.md.
package importer

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
)

// Field is a cardholder attribute a CSV column can hold. Its value is the
// canonical header name, which Export writes and the default mapping reads.
type Field string

// The fields. Name, or FirstName and LastName, make the person's name.
const (
	FieldKind         Field = "kind"           // occupier or access_user
	FieldName         Field = "name"           // full name
	FieldFirstName    Field = "first_name"     // joined with last_name by one space
	FieldLastName     Field = "last_name"      // joined after first_name
	FieldEmail        Field = "email"          // optional, one address
	FieldOccupier     Field = "occupier"       // occupier (tenant company) name or ID
	FieldCardNumber   Field = "card_number"    // card number(s), see FieldCardFormat
	FieldCardFormat   Field = "card_format"    // number, raw32, raw56, h10301, corp1000, h10304
	FieldCardFacility Field = "card_facility"  // facility (company) code of Wiegand cards
	FieldCardStatus   Field = "card_status"    // active (default), suspended, lost, returned
	FieldGroups       Field = "groups"         // group names or IDs, separated by Options.ListSep
	FieldOffline      Field = "offline_access" // boolean, default false
	FieldActive       Field = "active"         // boolean, default Options.EnableAccess
	FieldValidFrom    Field = "valid_from"     // date or RFC 3339 time, inclusive
	FieldValidUntil   Field = "valid_until"    // date or RFC 3339 time, exclusive
)

// Fields lists every field in the order Export writes them (without
// first_name and last_name, which Export never writes). A file without a
// header read with no mapping has its columns in this order.
var Fields = []Field{
	FieldKind, FieldName, FieldEmail, FieldOccupier,
	FieldCardNumber, FieldCardFormat, FieldCardFacility, FieldCardStatus,
	FieldGroups, FieldOffline, FieldActive, FieldValidFrom, FieldValidUntil,
}

// allFields is every field, for header recognition.
var allFields = append([]Field{FieldFirstName, FieldLastName}, Fields...)

// synonyms maps normalized header names other than the canonical ones to
// their field.
var synonyms = map[string]Field{
	"firstname": FieldFirstName, "first": FieldFirstName, "given_name": FieldFirstName, "forename": FieldFirstName,
	"lastname": FieldLastName, "last": FieldLastName, "surname": FieldLastName, "family_name": FieldLastName,
	"full_name": FieldName, "e_mail": FieldEmail, "mail": FieldEmail, "email_address": FieldEmail,
	"company": FieldOccupier, "tenant": FieldOccupier, "occupier_id": FieldOccupier,
	"card": FieldCardNumber, "card_no": FieldCardNumber, "card_id": FieldCardNumber, "badge": FieldCardNumber,
	"format": FieldCardFormat, "card_type": FieldCardFormat,
	"facility": FieldCardFacility, "facility_code": FieldCardFacility, "fc": FieldCardFacility,
	"group": FieldGroups, "access_groups": FieldGroups,
	"offline": FieldOffline, "enabled": FieldActive,
	"valid_to": FieldValidUntil, "expires": FieldValidUntil,
	"user_type": FieldKind, "type": FieldKind,
}

// normalizeHeader lower-cases h, trims it and turns spaces and hyphens into
// underscores.
func normalizeHeader(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return '_'
		}
		return r
	}, h)
}

// fieldOfHeader returns the field a header cell names, if any.
func fieldOfHeader(h string) (Field, bool) {
	n := normalizeHeader(h)
	for _, f := range allFields {
		if string(f) == n {
			return f, true
		}
	}
	f, ok := synonyms[n]
	return f, ok
}

// Column says where a field is in a row: by header name (matched after
// trimming and ignoring case) or by Index, the 1-based column number. Name
// wins when both are set.
type Column struct {
	Name  string
	Index int
}

// Mapping says which column holds each field. A field that is not mapped
// takes its default. A nil Mapping means "recognise the header": every
// header cell that is a field's canonical name or a known synonym (see
// docs/csv-import.md) maps that field, and a file without a header is read
// in the order of Fields.
type Mapping map[Field]Column

// HeaderMode says whether the first record is a header.
type HeaderMode uint8

// The header modes.
const (
	// HeaderAuto treats the first record as a header when one of its cells
	// names a field (canonically or by synonym) or a column of the mapping.
	HeaderAuto HeaderMode = iota
	// HeaderPresent always treats the first record as a header.
	HeaderPresent
	// HeaderAbsent treats every record as data.
	HeaderAbsent
)

// Lookup resolves references (names or IDs, exactly as they appear in the
// file after trimming) to IDs. It returns an entry for each reference it
// knows; a reference left out is reported as unknown, so a name that is
// ambiguous should be left out. It must not keep refs. An error aborts the
// import and is returned as is.
type Lookup func(ctx context.Context, refs []string) (map[string]access.ID, error)

// CardsTaken returns those of nums that are already on the platform. It is
// called with at most Options.BatchSize numbers at a time. An error aborts
// the import and is returned as is.
type CardsTaken func(ctx context.Context, nums []access.CardNumber) ([]access.CardNumber, error)

// Phase names the stage an import is in, for progress reports.
type Phase string

// The phases, in order.
const (
	PhaseRead   Phase = "read"   // reading and checking rows
	PhaseLookup Phase = "lookup" // checking card numbers, groups and occupiers
	PhaseBuild  Phase = "build"  // making the access values
	PhaseDone   Phase = "done"   // finished, accepted or not
)

// Progress is a progress report. Rows is the number of data rows read so
// far; Checked the number of rows (PhaseRead, PhaseBuild) or card numbers
// (PhaseLookup) done in the current phase, out of Total (0 while reading,
// since the row count is not known yet); Errors the bad rows found so far.
type Progress struct {
	Phase   Phase
	Rows    int
	Checked int
	Total   int
	Errors  int
}

// Options configure an import. The zero value is usable for a file of access
// users with no groups, occupiers or card lookups.
type Options struct {
	// Kind is the kind of every row: access.Occupier or access.AccessUser.
	// Zero means each row says its kind in the kind column.
	Kind access.PersonKind
	// Mapping says where the fields are; nil recognises the header.
	Mapping Mapping
	// Header says whether the first record is a header.
	Header HeaderMode
	// Comma is the field delimiter; 0 means ','.
	Comma rune
	// ListSep separates list items in the groups and card columns; 0 means ';'.
	ListSep rune
	// EnableAccess makes rows without an active value active.
	EnableAccess bool
	// RequireCard reports rows without a card number.
	RequireCard bool
	// RequireEmail reports rows without an email address.
	RequireEmail bool
	// CardFormat is the format of rows without a card_format value; empty
	// means "number" (the platform number itself), or "h10301" for a row
	// with a facility code.
	CardFormat string
	// Location is the time zone of dates without a time; nil means UTC.
	Location *time.Location
	// Groups resolves group names or IDs; nil reports every group unknown.
	Groups Lookup
	// Occupiers resolves occupier names or IDs; nil reports every
	// occupier unknown.
	Occupiers Lookup
	// CardsTaken reports card numbers already on the platform; nil means
	// none are.
	CardsTaken CardsTaken
	// BatchSize is the most card numbers given to one CardsTaken call; 0
	// means 1000.
	BatchSize int
	// IDs makes the new IDs; nil means a generator with crypto/rand.
	IDs *access.IDGen
	// Now is the time of the new IDs; nil means time.Now.
	Now func() time.Time
	// Progress, when set, is called on the importing goroutine every
	// ProgressEvery rows and at the end of each phase.
	Progress func(Progress)
	// ProgressEvery is the number of rows between progress calls; 0 means 1000.
	ProgressEvery int
	// MaxRows is the most data rows accepted; 0 means 1,000,000.
	MaxRows int
	// MaxErrors is the most errors kept in the report (the rest are only
	// counted); 0 means 1000.
	MaxErrors int
}

// Row is one accepted row: the person, their cards and their group grants,
// with new IDs, and the physical line the row starts on.
type Row struct {
	Line   int
	Person access.Person
	Cards  []access.Card
	Grants []access.Grant
}

// Result is an accepted import: every row, in file order.
type Result struct {
	Rows []Row
}

// Limits on cell contents, in bytes.
const (
	MaxNameLen  = 200 // a name, or first and last name joined
	MaxEmailLen = 254 // RFC 5321's limit on an address
	MaxRefLen   = 200 // one group or occupier reference
	MaxCellLen  = 4096
)

// ParseMapping parses the text form of a mapping used by command lines:
// comma-separated FIELD=COLUMN pairs, where FIELD is a canonical field name
// (such as first_name) and COLUMN a header name or # and a 1-based column
// number, e.g. "first_name=Vorname,last_name=#2". Spaces around names are
// ignored. It returns an Invalid error for an unknown field, a field given
// twice, an empty column or a bad column number.
func ParseMapping(s string) (Mapping, error) {
	m := Mapping{}
	for _, pair := range strings.Split(s, ",") {
		name, col, ok := strings.Cut(pair, "=")
		f := Field(strings.TrimSpace(name))
		col = strings.TrimSpace(col)
		switch {
		case !ok || col == "":
			return nil, access.Errorf(access.Invalid, "importer: mapping %q: want FIELD=COLUMN", pair)
		case !slices.Contains(allFields, f):
			return nil, access.Errorf(access.Invalid, "importer: mapping: unknown field %q", f)
		}
		if _, dup := m[f]; dup {
			return nil, access.Errorf(access.Invalid, "importer: mapping: field %s given twice", f)
		}
		if n, isIndex := strings.CutPrefix(col, "#"); isIndex {
			i, err := strconv.Atoi(n)
			if err != nil || i < 1 {
				return nil, access.Errorf(access.Invalid, "importer: mapping: %s: bad column number %q", f, col)
			}
			m[f] = Column{Index: i}
			continue
		}
		m[f] = Column{Name: col}
	}
	return m, nil
}
