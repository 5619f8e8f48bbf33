package importer

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/access"
)

// Import reads a CSV file of cardholders from r and checks every row. When
// every row is good it returns them all, in file order, as access values
// with new IDs, each of which passes its Validate. Otherwise it returns a
// *Report (wrapping ErrRejected, code invalid) that lists every bad row, and
// no rows.
//
// Import reads r once, keeping only the parsed rows, so its memory grows
// with the number of rows, not with the size of their cells. It calls the
// lookups of opt (card numbers in batches, group and occupier references
// once each) after reading the whole file, and opt.Progress as it goes, all
// on the calling goroutine. It returns ctx's error when ctx is done, an
// error of a lookup as is, and an Internal error when r fails or new IDs
// cannot be made. Import is safe for concurrent use with different options.
func Import(ctx context.Context, r io.Reader, opt Options) (*Result, error) {
	im, err := newImporter(opt)
	if err != nil {
		return nil, err
	}
	if err := im.read(ctx, r); err != nil {
		return nil, err
	}
	if rep := im.rp.report(im.nrows); rep != nil && im.fatal {
		im.progress(PhaseDone, im.nrows, im.nrows)
		return nil, rep
	}
	if err := im.lookups(ctx); err != nil {
		return nil, err
	}
	if rep := im.rp.report(im.nrows); rep != nil {
		im.progress(PhaseDone, im.nrows, im.nrows)
		return nil, rep
	}
	res, err := im.build(ctx)
	if err != nil {
		return nil, err
	}
	if rep := im.rp.report(im.nrows); rep != nil {
		im.progress(PhaseDone, im.nrows, im.nrows)
		return nil, rep
	}
	im.progress(PhaseDone, im.nrows, im.nrows)
	return res, nil
}

// importer is the state of one import.
type importer struct {
	opt        Options
	defFormat  cardFormat // 0: number, or h10301 with a facility
	rp         reporter
	fatal      bool                        // a header problem: rows were not read
	cols       map[Field]int               // 0-based column of each mapped field
	width      int                         // columns every row must have
	nrows      int                         // data rows read
	rows       rowStore                    // one per data row, good or bad
	cards      map[access.CardNumber]int32 // first line of each number
	groupRefs  map[string][]int32          // ref -> rows using it
	occRefs    map[string][]int32
	cardOrder  []access.CardNumber // distinct numbers in first-seen order
	cellBad    []bool              // reused by parseRow
	groupIDs   map[string]access.ID
	occupierID map[string]access.ID
}

// parsed is one data row as read, with the lines and columns of the cells
// whose problems are only found by the lookups.
type parsed struct {
	line                  int32
	kind                  access.PersonKind
	offline, active       bool
	name, email, occupier string
	groups                []string
	cards                 []pcard
	from, until           time.Time
	occLine, occCol       int32
	groupsLine, groupsCol int32
	cardsLine, cardsCol   int32
}

type pcard struct {
	num    access.CardNumber
	status access.CardStatus
}

func newImporter(opt Options) (*importer, error) {
	if opt.Kind != 0 && opt.Kind != access.Occupier && opt.Kind != access.AccessUser {
		return nil, access.Errorf(access.Invalid, "importer: kind %s cannot be imported", opt.Kind)
	}
	if opt.Comma == 0 {
		opt.Comma = ','
	}
	if opt.ListSep == 0 {
		opt.ListSep = ';'
	}
	if opt.ListSep == opt.Comma || opt.ListSep == '"' || opt.ListSep == '\n' || opt.ListSep == '\r' {
		return nil, access.Errorf(access.Invalid, "importer: list separator %q is not allowed", opt.ListSep)
	}
	if opt.Location == nil {
		opt.Location = time.UTC
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 1000
	}
	if opt.ProgressEvery <= 0 {
		opt.ProgressEvery = 1000
	}
	if opt.MaxRows <= 0 {
		opt.MaxRows = 1_000_000
	}
	if opt.MaxErrors <= 0 {
		opt.MaxErrors = 1000
	}
	if opt.IDs == nil {
		opt.IDs = access.NewIDGen(nil)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	im := &importer{
		opt:       opt,
		rp:        reporter{max: opt.MaxErrors},
		cards:     map[access.CardNumber]int32{},
		groupRefs: map[string][]int32{},
		occRefs:   map[string][]int32{},
	}
	if opt.CardFormat != "" {
		f, ok := parseFormat(opt.CardFormat)
		if !ok {
			return nil, access.Errorf(access.Invalid, "importer: unknown card format %q", opt.CardFormat)
		}
		im.defFormat = f
	}
	return im, nil
}

func (im *importer) progress(p Phase, checked, total int) {
	if im.opt.Progress != nil {
		im.opt.Progress(Progress{Phase: p, Rows: im.nrows, Checked: checked, Total: total, Errors: im.rp.count()})
	}
}

// bomReader returns r without a leading UTF-8 byte order mark.
func bomReader(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, err := br.Peek(3); err == nil && string(b) == "\uFEFF" {
		_, _ = br.Discard(3)
	}
	return br
}

// read reads every record, maps the header and parses the rows.
func (im *importer) read(ctx context.Context, r io.Reader) error {
	cr := csv.NewReader(bomReader(r))
	cr.Comma = im.opt.Comma
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	first := true
	lines := make([]int32, 0, 32)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if first {
				im.fileError(pe.Line, ReasonSyntax, "the first record is malformed: "+pe.Err.Error())
				return nil
			}
			if im.nrows >= im.opt.MaxRows {
				im.fileError(pe.StartLine, ReasonTooManyRows, fmt.Sprintf("the file has more than %d rows", im.opt.MaxRows))
				return nil
			}
			// The reader has consumed the bad record (an unclosed quote
			// consumes the rest of the file), so reading goes on.
			im.nrows++
			im.rows.add(parsed{line: int32(pe.StartLine)})
			im.rp.add(RowError{Line: pe.Line, Reason: ReasonSyntax, Message: pe.Err.Error()})
			continue
		}
		if err != nil {
			return &access.Error{Code: access.Internal, Op: "importer.Import", Msg: "read", Err: err}
		}
		lines = lines[:0]
		for i := range rec {
			l, _ := cr.FieldPos(i)
			lines = append(lines, int32(l))
		}
		if first {
			first = false
			if !im.header(rec, lines) {
				im.fatal = true
				return nil
			}
			if im.width > 0 {
				continue
			}
			im.width = len(rec)
		}
		if im.nrows >= im.opt.MaxRows {
			im.fileError(int(lines[0]), ReasonTooManyRows, fmt.Sprintf("the file has more than %d rows", im.opt.MaxRows))
			return nil
		}
		im.nrows++
		im.parseRow(rec, lines)
		if im.nrows%im.opt.ProgressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			im.progress(PhaseRead, im.nrows, 0)
		}
	}
	if first {
		im.fileError(1, ReasonHeader, "the file is empty")
		return nil
	}
	im.progress(PhaseRead, im.nrows, im.nrows)
	return ctx.Err()
}

// fileError reports a problem with the whole file; the rows are not used.
func (im *importer) fileError(line int, reason Reason, msg string) {
	im.fatal = true
	im.rp.add(RowError{Line: line, Reason: reason, Message: msg})
}

// header decides whether rec is a header, maps the fields to columns and
// checks that the mapping has what the import needs. It sets im.width when
// rec is a header. It returns false after reporting an unusable mapping.
func (im *importer) header(rec []string, lines []int32) bool {
	isHeader := im.opt.Header == HeaderPresent
	if im.opt.Header == HeaderAuto {
		for _, c := range rec {
			if _, ok := fieldOfHeader(c); ok {
				isHeader = true
				break
			}
			for _, col := range im.opt.Mapping {
				if col.Name != "" && normalizeHeader(col.Name) == normalizeHeader(c) {
					isHeader = true
				}
			}
		}
	}
	line := 1
	if len(lines) > 0 {
		line = int(lines[0])
	}
	ok := true
	bad := func(col int, f Field, msg string) {
		ok = false
		im.fatal = true
		im.rp.add(RowError{Line: line, Column: col, Field: f, Reason: ReasonHeader, Message: msg})
	}
	im.cols = map[Field]int{}
	width := len(rec)
	if isHeader {
		im.width = width
		for i, c := range rec {
			if !utf8.ValidString(c) {
				bad(i+1, "", "the header is not valid UTF-8")
			}
		}
	}
	switch {
	case im.opt.Mapping == nil && isHeader:
		for i, c := range rec {
			f, known := fieldOfHeader(c)
			if !known {
				continue
			}
			if j, dup := im.cols[f]; dup {
				bad(i+1, f, fmt.Sprintf("columns %d and %d both hold %s", j+1, i+1, f))
				continue
			}
			im.cols[f] = i
		}
	case im.opt.Mapping == nil:
		for i := 0; i < width && i < len(Fields); i++ {
			im.cols[Fields[i]] = i
		}
	default:
		fields := make([]Field, 0, len(im.opt.Mapping))
		for f := range im.opt.Mapping {
			fields = append(fields, f)
		}
		slices.Sort(fields)
		for _, f := range fields {
			if !slices.Contains(allFields, f) {
				bad(0, f, fmt.Sprintf("the mapping names an unknown field %q", f))
				continue
			}
			col := im.opt.Mapping[f]
			switch {
			case col.Name != "" && !isHeader:
				bad(0, f, fmt.Sprintf("the mapping names column %q but the file has no header", col.Name))
			case col.Name != "":
				i := slices.IndexFunc(rec, func(h string) bool { return normalizeHeader(h) == normalizeHeader(col.Name) })
				if i < 0 {
					bad(0, f, fmt.Sprintf("the header has no column %q", col.Name))
					continue
				}
				im.cols[f] = i
			case col.Index >= 1 && col.Index <= width:
				im.cols[f] = col.Index - 1
			default:
				bad(0, f, fmt.Sprintf("column %d is outside the %d columns of the file", col.Index, width))
			}
		}
	}
	if !ok {
		return false
	}
	_, hasName := im.cols[FieldName]
	_, hasFirst := im.cols[FieldFirstName]
	_, hasLast := im.cols[FieldLastName]
	if !hasName && !(hasFirst && hasLast) {
		bad(0, FieldName, "no column holds the name (name, or first_name and last_name)")
	}
	if _, has := im.cols[FieldKind]; im.opt.Kind == 0 && !has {
		bad(0, FieldKind, "no column holds the kind and the import does not say it")
	}
	if _, has := im.cols[FieldOccupier]; im.opt.Kind == access.Occupier && !has {
		bad(0, FieldOccupier, "occupier users need an occupier column")
	}
	if _, has := im.cols[FieldCardNumber]; im.opt.RequireCard && !has {
		bad(0, FieldCardNumber, "cards are required but no column holds them")
	}
	if _, has := im.cols[FieldEmail]; im.opt.RequireEmail && !has {
		bad(0, FieldEmail, "email addresses are required but no column holds them")
	}
	return ok
}

// rowCtx is the row being parsed.
type rowCtx struct {
	im    *importer
	rec   []string
	lines []int32
	bad   []bool // per cell: already reported
}

// errAt reports a problem with the cell of field f.
func (rc *rowCtx) errAt(f Field, reason Reason, msg string) {
	i := rc.im.cols[f]
	rc.bad[i] = true
	rc.im.rp.add(RowError{Line: int(rc.lines[i]), Column: i + 1, Field: f, Reason: reason, Message: msg})
}

// get returns the trimmed, unescaped value of field f, and false when f is
// not mapped or its cell was already reported.
func (rc *rowCtx) get(f Field) (string, bool) {
	i, ok := rc.im.cols[f]
	if !ok || rc.bad[i] {
		return "", false
	}
	v := strings.TrimSpace(rc.rec[i])
	if formulaStart(v) {
		rc.errAt(f, ReasonFormula, "the value looks like a spreadsheet formula; start it with ' to import it as text")
		return "", false
	}
	return Unescape(v), true
}

// text returns a text field checked for length and control characters.
func (rc *rowCtx) text(f Field, max int) (string, bool) {
	v, ok := rc.get(f)
	if !ok {
		return "", false
	}
	if len(v) > max {
		rc.errAt(f, ReasonTooLong, fmt.Sprintf("%d bytes, at most %d allowed", len(v), max))
		return "", false
	}
	if strings.ContainsFunc(v, unicode.IsControl) {
		rc.errAt(f, ReasonInvalid, "the value contains control characters (such as a line break)")
		return "", false
	}
	return v, true
}

// required reports an empty required field.
func (rc *rowCtx) required(f Field, v string, ok bool) {
	if ok && v == "" {
		rc.errAt(f, ReasonRequired, string(f)+" is required")
	}
}

// parseRow checks one data row and appends it to im.rows.
func (im *importer) parseRow(rec []string, lines []int32) {
	idx := im.rows.add(parsed{line: lines[0]})
	p := im.rows.at(idx)
	if len(rec) != im.width {
		im.rp.add(RowError{Line: int(lines[0]), Reason: ReasonColumns,
			Message: fmt.Sprintf("the row has %d columns, the file %d", len(rec), im.width)})
		return
	}
	im.cellBad = append(im.cellBad[:0], make([]bool, len(rec))...)
	rc := &rowCtx{im: im, rec: rec, lines: lines, bad: im.cellBad}
	for i, c := range rec {
		switch {
		case !utf8.ValidString(c):
			rc.bad[i] = true
			im.rp.add(RowError{Line: int(lines[i]), Column: i + 1, Field: im.fieldAt(i), Reason: ReasonEncoding, Message: "the cell is not valid UTF-8"})
		case len(c) > MaxCellLen:
			rc.bad[i] = true
			im.rp.add(RowError{Line: int(lines[i]), Column: i + 1, Field: im.fieldAt(i), Reason: ReasonTooLong, Message: fmt.Sprintf("the cell has %d bytes, at most %d allowed", len(c), MaxCellLen)})
		}
	}

	// Kind.
	p.kind = im.opt.Kind
	if v, ok := rc.get(FieldKind); ok && v != "" {
		var k access.PersonKind
		switch strings.ToLower(v) {
		case "occupier", "occupier_user", "occupier user":
			k = access.Occupier
		case "access_user", "access user", "access":
			k = access.AccessUser
		}
		switch {
		case k == 0:
			rc.errAt(FieldKind, ReasonInvalid, fmt.Sprintf("kind %s is not occupier or access_user", quoteShort(v)))
		case p.kind != 0 && k != p.kind:
			rc.errAt(FieldKind, ReasonNotAllowed, fmt.Sprintf("a %s in an import of %s users", k, im.opt.Kind))
			p.kind = 0 // not known: the kind's own rules are not checked
		default:
			p.kind = k
		}
	} else if ok && p.kind == 0 {
		rc.errAt(FieldKind, ReasonRequired, "kind is required")
	}

	// Name.
	if _, mapped := im.cols[FieldName]; mapped {
		v, ok := rc.text(FieldName, MaxNameLen)
		rc.required(FieldName, v, ok)
		p.name = v
	} else {
		first, ok1 := rc.text(FieldFirstName, MaxNameLen)
		rc.required(FieldFirstName, first, ok1)
		last, ok2 := rc.text(FieldLastName, MaxNameLen)
		rc.required(FieldLastName, last, ok2)
		if ok1 && ok2 && first != "" && last != "" {
			p.name = first + " " + last
			if len(p.name) > MaxNameLen {
				rc.errAt(FieldLastName, ReasonTooLong, fmt.Sprintf("first and last name have %d bytes, at most %d allowed", len(p.name), MaxNameLen))
			}
		}
	}

	// Email.
	if v, ok := rc.text(FieldEmail, MaxEmailLen); ok && v != "" {
		if a, err := mail.ParseAddress(v); err != nil || a.Address != v {
			rc.errAt(FieldEmail, ReasonInvalid, fmt.Sprintf("%s is not an email address", quoteShort(v)))
		} else {
			p.email = v
		}
	} else if im.opt.RequireEmail {
		rc.required(FieldEmail, v, ok)
	}

	// Occupier.
	if v, ok := rc.text(FieldOccupier, MaxRefLen); ok {
		switch {
		case p.kind == access.Occupier && v == "":
			rc.errAt(FieldOccupier, ReasonRequired, "an occupier user needs an occupier")
		case p.kind == access.AccessUser && v != "":
			rc.errAt(FieldOccupier, ReasonNotAllowed, "an access user belongs to no occupier")
		case v != "":
			p.occupier = v
			c := im.cols[FieldOccupier]
			p.occLine, p.occCol = lines[c], int32(c+1)
			im.occRefs[v] = append(im.occRefs[v], int32(idx))
		}
	}

	// Cards.
	im.parseCards(rc, p)

	// Groups.
	if v, ok := rc.get(FieldGroups); ok && v != "" {
		refs := splitList(v, im.opt.ListSep)
		c := im.cols[FieldGroups]
		p.groupsLine, p.groupsCol = lines[c], int32(c+1)
		for _, ref := range refs {
			if len(ref) > MaxRefLen || strings.ContainsFunc(ref, unicode.IsControl) {
				rc.errAt(FieldGroups, ReasonInvalid, fmt.Sprintf("group %s is too long or holds control characters", quoteShort(ref)))
				p.groups = nil
				break
			}
			if !slices.Contains(p.groups, ref) {
				p.groups = append(p.groups, ref)
			}
		}
		for _, ref := range p.groups {
			im.groupRefs[ref] = append(im.groupRefs[ref], int32(idx))
		}
	}

	// Flags.
	p.active = im.opt.EnableAccess
	if v, ok := rc.get(FieldActive); ok && v != "" {
		if b, ok := parseBool(v); ok {
			p.active = b
		} else {
			rc.errAt(FieldActive, ReasonInvalid, fmt.Sprintf("%s is not true or false", quoteShort(v)))
		}
	}
	if v, ok := rc.get(FieldOffline); ok && v != "" {
		if b, ok := parseBool(v); ok {
			p.offline = b
		} else {
			rc.errAt(FieldOffline, ReasonInvalid, fmt.Sprintf("%s is not true or false", quoteShort(v)))
		}
	}

	// Validity window.
	okFrom, okUntil := true, true
	if v, ok := rc.get(FieldValidFrom); ok && v != "" {
		if p.from, okFrom = parseTime(v, im.opt.Location); !okFrom {
			rc.errAt(FieldValidFrom, ReasonInvalid, fmt.Sprintf("%s is not a date (2006-01-02) or an RFC 3339 time", quoteShort(v)))
		}
	}
	if v, ok := rc.get(FieldValidUntil); ok && v != "" {
		if p.until, okUntil = parseTime(v, im.opt.Location); !okUntil {
			rc.errAt(FieldValidUntil, ReasonInvalid, fmt.Sprintf("%s is not a date (2006-01-02) or an RFC 3339 time", quoteShort(v)))
		}
	}
	if okFrom && okUntil && !p.from.IsZero() && !p.until.IsZero() && !p.until.After(p.from) {
		rc.errAt(FieldValidUntil, ReasonInconsistent, "valid_until is not after valid_from")
	}
}

// fieldAt returns the field mapped to column i, if any.
func (im *importer) fieldAt(i int) Field {
	for f, c := range im.cols {
		if c == i {
			return f
		}
	}
	return ""
}

// parseCards parses the card columns of a row: card_number may list several
// cards, and card_format, card_facility and card_status then hold either one
// value for all of them or one per card.
func (im *importer) parseCards(rc *rowCtx, p *parsed) {
	v, ok := rc.get(FieldCardNumber)
	if !ok {
		return
	}
	if v == "" {
		if im.opt.RequireCard {
			rc.errAt(FieldCardNumber, ReasonRequired, "card_number is required")
		}
		return
	}
	c := im.cols[FieldCardNumber]
	p.cardsLine, p.cardsCol = rc.lines[c], int32(c+1)
	nums := splitParallel(v, im.opt.ListSep)
	pick := func(f Field) ([]string, bool) {
		s, ok := rc.get(f)
		if !ok {
			_, mapped := im.cols[f]
			return nil, !mapped
		}
		items := splitParallel(s, im.opt.ListSep)
		if len(items) > 1 && len(items) != len(nums) {
			rc.errAt(f, ReasonInconsistent, fmt.Sprintf("%d values for %d cards", len(items), len(nums)))
			return nil, false
		}
		return items, true
	}
	formats, ok1 := pick(FieldCardFormat)
	facs, ok2 := pick(FieldCardFacility)
	statuses, ok3 := pick(FieldCardStatus)
	if !ok1 || !ok2 || !ok3 {
		return
	}
	item := func(items []string, i int) string {
		switch len(items) {
		case 0:
			return ""
		case 1:
			return items[0]
		}
		return items[i]
	}
	for i, num := range nums {
		fac := item(facs, i)
		f := im.defFormat
		if s := item(formats, i); s != "" {
			var ok bool
			if f, ok = parseFormat(s); !ok {
				rc.errAt(FieldCardFormat, ReasonInvalid, fmt.Sprintf("card format %s is not number, raw32, raw56, h10301, corp1000 or h10304", quoteShort(s)))
				return
			}
		}
		if f == 0 {
			f = formatNumber
			if fac != "" {
				f = formatH10301
			}
		}
		if num == "" {
			rc.errAt(FieldCardNumber, ReasonInvalid, "an empty card number in the list")
			return
		}
		n, msg := cardNumber(f, num, fac)
		if msg != "" {
			rc.errAt(FieldCardNumber, ReasonInvalid, msg)
			return
		}
		st := access.CardActive
		if s := item(statuses, i); s != "" {
			if err := st.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
				rc.errAt(FieldCardStatus, ReasonInvalid, fmt.Sprintf("card status %s is not active, suspended, lost or returned", quoteShort(s)))
				return
			}
		}
		if first, dup := im.cards[n]; dup {
			rc.im.rp.add(RowError{Line: int(rc.lines[c]), Column: c + 1, Field: FieldCardNumber, Reason: ReasonDuplicate, OtherLine: int(first),
				Message: fmt.Sprintf("card number %s is also on line %d", n.Redacted(), first)})
			rc.bad[c] = true
			continue
		}
		im.cards[n] = rc.lines[c]
		im.cardOrder = append(im.cardOrder, n)
		p.cards = append(p.cards, pcard{num: n, status: st})
	}
}

// lookups asks the platform about the card numbers, groups and occupiers of
// the file and reports what it does not accept.
func (im *importer) lookups(ctx context.Context) error {
	total := len(im.cardOrder)
	im.progress(PhaseLookup, 0, total)
	taken := map[access.CardNumber]bool{}
	if im.opt.CardsTaken != nil {
		for i := 0; i < total; i += im.opt.BatchSize {
			if err := ctx.Err(); err != nil {
				return err
			}
			batch := im.cardOrder[i:min(i+im.opt.BatchSize, total)]
			got, err := im.opt.CardsTaken(ctx, batch)
			if err != nil {
				return err
			}
			for _, n := range got {
				taken[n] = true
			}
			im.progress(PhaseLookup, i+len(batch), total)
		}
	}
	if len(taken) > 0 {
		for idx := range im.rows.n {
			p := im.rows.at(idx)
			for _, c := range p.cards {
				if taken[c.num] {
					im.rp.add(RowError{Line: int(p.cardsLine), Column: int(p.cardsCol), Field: FieldCardNumber, Reason: ReasonTaken,
						Message: fmt.Sprintf("card number %s is already on the platform", c.num.Redacted())})
				}
			}
		}
	}
	var err error
	if im.groupIDs, err = im.resolve(ctx, im.opt.Groups, im.groupRefs, FieldGroups, "group"); err != nil {
		return err
	}
	if im.occupierID, err = im.resolve(ctx, im.opt.Occupiers, im.occRefs, FieldOccupier, "occupier"); err != nil {
		return err
	}
	im.progress(PhaseLookup, total, total)
	return nil
}

// resolve looks up refs in batches and reports each unknown one on every
// row that uses it.
func (im *importer) resolve(ctx context.Context, lookup Lookup, refs map[string][]int32, f Field, what string) (map[string]access.ID, error) {
	all := make([]string, 0, len(refs))
	for r := range refs {
		all = append(all, r)
	}
	slices.Sort(all)
	ids := make(map[string]access.ID, len(all))
	if lookup != nil {
		for i := 0; i < len(all); i += im.opt.BatchSize {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			got, err := lookup(ctx, all[i:min(i+im.opt.BatchSize, len(all))])
			if err != nil {
				return nil, err
			}
			for _, r := range all[i:min(i+im.opt.BatchSize, len(all))] {
				if id, ok := got[r]; ok {
					if id, err := access.ParseID(string(id)); err == nil {
						ids[r] = id
					}
				}
			}
		}
	}
	for _, r := range all {
		if _, ok := ids[r]; ok {
			continue
		}
		for _, idx := range refs[r] {
			p := im.rows.at(int(idx))
			line, col := p.groupsLine, p.groupsCol
			if f == FieldOccupier {
				line, col = p.occLine, p.occCol
			}
			im.rp.add(RowError{Line: int(line), Column: int(col), Field: f, Reason: ReasonUnknown,
				Message: fmt.Sprintf("unknown %s %s", what, quoteShort(r))})
		}
	}
	return ids, nil
}

// build makes the access values of every row and validates them.
func (im *importer) build(ctx context.Context) (*Result, error) {
	now := im.opt.Now()
	n := im.rows.n
	res := &Result{Rows: make([]Row, n)}
	newID := func() (access.ID, error) {
		id, err := im.opt.IDs.New(now)
		if err != nil {
			return "", fmt.Errorf("importer.Import: new id: %w", err)
		}
		return id, nil
	}
	for i := range n {
		p := im.rows.at(i)
		pid, err := newID()
		if err != nil {
			return nil, err
		}
		out := &res.Rows[i]
		out.Line = int(p.line)
		out.Person = access.Person{
			ID: pid, Kind: p.kind, Name: p.name, Email: p.email,
			Active: p.active, OfflineAccess: p.offline, ValidFrom: p.from, ValidUntil: p.until,
		}
		if p.occupier != "" {
			out.Person.OccupierID = im.occupierID[p.occupier]
		}
		im.check(i, out.Person.Validate())
		if len(p.cards) > 0 {
			out.Cards = make([]access.Card, len(p.cards))
			for j, c := range p.cards {
				out.Cards[j] = access.Card{Number: c.num, PersonID: pid, Status: c.status}
				im.check(i, out.Cards[j].Validate())
			}
		}
		var seen []access.ID
		for _, ref := range p.groups {
			gid := im.groupIDs[ref]
			if slices.Contains(seen, gid) {
				continue
			}
			seen = append(seen, gid)
			id, err := newID()
			if err != nil {
				return nil, err
			}
			// Valid by construction: both IDs are canonical (from IDGen and
			// ParseID) and the grant is unbounded.
			out.Grants = append(out.Grants, access.Grant{ID: id, HolderID: pid, GroupID: gid})
		}
		if (i+1)%im.opt.ProgressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			im.progress(PhaseBuild, i+1, n)
		}
	}
	im.progress(PhaseBuild, n, n)
	return res, nil
}

// check reports a value that fails its Validate; the parsing rules are meant
// to make this impossible.
func (im *importer) check(idx int, err error) {
	if err != nil {
		im.rp.add(RowError{Line: int(im.rows.at(idx).line), Reason: ReasonInvalid, Message: err.Error()})
	}
}

// rowStore holds the parsed rows in fixed-size chunks, so that growing it
// never copies the rows already read.
type rowStore struct {
	chunks [][]parsed
	n      int
}

const rowChunk = 4096

// add appends p and returns its index.
func (s *rowStore) add(p parsed) int {
	if s.n%rowChunk == 0 {
		s.chunks = append(s.chunks, make([]parsed, 0, rowChunk))
	}
	c := &s.chunks[len(s.chunks)-1]
	*c = append(*c, p)
	s.n++
	return s.n - 1
}

// at returns the row at index i.
func (s *rowStore) at(i int) *parsed { return &s.chunks[i/rowChunk][i%rowChunk] }
