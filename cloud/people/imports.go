package people

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/cloud/importer"
	peoplev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/people/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// Occupier is an occupier (tenant company) the hub knows by name, so that
// import files may name it.
type Occupier struct {
	ID   access.ID `json:"id"`
	Name string    `json:"name"`
}

// ImportPeople imports a CSV file all or nothing: progress messages while
// it reads, checks and commits, then the result. A rejected file gets the
// report of every bad row and nothing is written; an accepted one is
// committed in one hub write (hubstate.Write: atomic, also across a
// crash). An occupier admin may import only occupier users of their own
// occupier: a file naming another occupier, or access users, is refused
// with PermissionDenied.
func (s *Service) ImportPeople(ctx context.Context, req *connect.Request[peoplev1.ImportPeopleRequest], stream *connect.ServerStream[peoplev1.ImportPeopleResponse]) error {
	caller, err := auth.Require(ctx, managers...)
	if err != nil {
		return err
	}
	m := req.Msg
	if len(m.GetCsv()) == 0 {
		return invalid("csv is empty")
	}
	send := func(r *peoplev1.ImportPeopleResponse) error { return stream.Send(r) }
	if prev, ok, err := s.idempotent(ctx, "ImportPeople", m.GetIdempotencyKey()); err != nil || ok {
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(prev)
		return send(&peoplev1.ImportPeopleResponse{Event: &peoplev1.ImportPeopleResponse_Result{Result: &peoplev1.ImportResult{Accepted: true, Rows: int32(n), Created: int32(n)}}})
	}
	opts := importer.Options{EnableAccess: m.GetEnableAccess(), RequireCard: m.GetRequireCard(), RequireEmail: m.GetRequireEmail(),
		CardFormat: m.GetCardFormat(), IDs: s.ids, Now: s.now, MaxRows: s.cfg.MaxImportRows}
	switch m.GetKind() {
	case peoplev1.PersonKind_PERSON_KIND_UNSPECIFIED:
	default:
		if opts.Kind, err = kindOf(m.GetKind()); err != nil {
			return err
		}
	}
	if caller.Role == auth.OccupierAdmin && opts.Kind == access.AccessUser {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: an occupier admin imports only their occupier's users", auth.ErrDenied))
	}
	if m.GetMapping() != "" {
		if opts.Mapping, err = importer.ParseMapping(m.GetMapping()); err != nil {
			return invalid("mapping: %v", err)
		}
	}
	if d := m.GetDelimiter(); d != "" {
		r, size := utf8.DecodeRuneInString(d)
		if size != len(d) || r == '"' || r == '\n' || r == '\r' || r == utf8.RuneError {
			return invalid("delimiter must be one character other than a quote or line break")
		}
		opts.Comma = r
	}
	v := s.index.current()
	var outside []string // occupiers named outside the caller's scope
	opts.Occupiers = func(_ context.Context, refs []string) (map[string]access.ID, error) {
		out := map[string]access.ID{}
		for _, ref := range refs {
			id, ok := s.occupierRef(ref)
			if !ok {
				continue
			}
			if !auth.InScope(ctx, id) {
				outside = append(outside, ref)
				continue
			}
			out[ref] = id
		}
		return out, nil
	}
	byName := map[string][]access.ID{}
	for _, g := range v.groups {
		if g.Kind == access.GroupAccess {
			byName[g.Name] = append(byName[g.Name], g.ID)
		}
	}
	opts.Groups = func(_ context.Context, refs []string) (map[string]access.ID, error) {
		out := map[string]access.ID{}
		for _, ref := range refs {
			if g, ok := v.groups[access.ID(ref)]; ok && g.Kind == access.GroupAccess {
				out[ref] = g.ID
			} else if ids := byName[ref]; len(ids) == 1 {
				out[ref] = ids[0]
			}
		}
		return out, nil
	}
	opts.CardsTaken = func(_ context.Context, nums []access.CardNumber) ([]access.CardNumber, error) {
		var taken []access.CardNumber
		s.state.View(func(r *replication.Replica) {
			for _, n := range nums {
				if len(r.CardHolders(n)) > 0 {
					taken = append(taken, n)
				}
			}
		})
		return taken, nil
	}
	var sendErr error
	opts.Progress = func(p importer.Progress) {
		if sendErr == nil {
			sendErr = send(progressMsg(string(p.Phase), p.Rows, p.Checked, p.Total, p.Errors))
		}
	}
	s.importMu.Lock()
	defer s.importMu.Unlock()
	res, err := importer.Import(ctx, bytes.NewReader(m.GetCsv()), opts)
	if sendErr != nil {
		return sendErr
	}
	if len(outside) > 0 {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: the file names %d occupier(s) outside the one this key is scoped to; nothing imported", auth.ErrDenied, len(outside)))
	}
	var rep *importer.Report
	if errors.As(err, &rep) {
		return send(resultMsg(rep))
	}
	if err != nil {
		return connectErr(err)
	}
	for _, row := range res.Rows {
		if !auth.InScope(ctx, row.Person.OccupierID) {
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: line %d is outside the occupier this key is scoped to; nothing imported", auth.ErrDenied, row.Line))
		}
	}
	if err := send(progressMsg("commit", len(res.Rows), 0, len(res.Rows), 0)); err != nil {
		return err
	}
	_, err = s.state.Write(ctx, func(tx *hubstate.Tx) error {
		r := tx.Replica()
		for _, row := range res.Rows {
			p := row.Person
			ops := newPersonOps(p)
			if p.Active {
				ops = append(ops, r.EnableOp(replication.KindPerson, string(p.ID)))
			}
			tx.Change(replication.KindPerson, string(p.ID), ops...)
			for _, c := range row.Cards {
				cops := []replication.Op{replication.AddOp("holders", replication.HolderValue(p.ID, ""))}
				if c.Status == access.CardActive {
					cops = append(cops, r.EnableOp(replication.KindCard, c.Number.String()))
				} else {
					cops = append(cops, replication.DisableOp(c.Status.String()))
				}
				tx.Change(replication.KindCard, c.Number.String(), cops...)
			}
			for _, g := range row.Grants {
				tx.Change(replication.KindGrant, string(g.ID), r.GrantOp(g))
			}
		}
		s.putIdem(ctx, tx, "ImportPeople", m.GetIdempotencyKey(), strconv.Itoa(len(res.Rows)))
		return nil
	})
	if err != nil {
		return connectErr(err)
	}
	s.log.Info("people imported", "rows", len(res.Rows), "key", caller.KeyID)
	n := int32(len(res.Rows))
	return send(&peoplev1.ImportPeopleResponse{Event: &peoplev1.ImportPeopleResponse_Result{Result: &peoplev1.ImportResult{Accepted: true, Rows: n, Created: n}}})
}

// newPersonOps returns the ops of a person made with a new ID: personOps
// without the fields at their zero value, which a new entity reads as
// unset anyway. An import of 100,000 rows writes a third fewer ops.
func newPersonOps(p access.Person) []replication.Op {
	ops := make([]replication.Op, 0, 8)
	for _, op := range personOps(p) {
		if op.Value == "" || op.Field == "offline_access" && op.Value == replication.BoolValue(false) {
			continue
		}
		ops = append(ops, op)
	}
	return ops
}

// occupierRef resolves an occupier named in a file: a configured name, or
// an ID.
func (s *Service) occupierRef(ref string) (access.ID, bool) {
	for _, o := range s.cfg.Occupiers {
		if o.Name == ref || string(o.ID) == ref {
			return o.ID, true
		}
	}
	if id, err := access.ParseID(ref); err == nil && string(id) == ref {
		return id, true
	}
	return "", false
}

func progressMsg(phase string, rows, checked, total, errs int) *peoplev1.ImportPeopleResponse {
	return &peoplev1.ImportPeopleResponse{Event: &peoplev1.ImportPeopleResponse_Progress{Progress: &peoplev1.ImportProgress{
		Phase: phase, Rows: int32(rows), Checked: int32(checked), Total: int32(total), Errors: int32(errs)}}}
}

func resultMsg(rep *importer.Report) *peoplev1.ImportPeopleResponse {
	r := &peoplev1.ImportResult{Rows: int32(rep.Rows), Dropped: int32(rep.Dropped)}
	for _, e := range rep.Errors {
		r.Errors = append(r.Errors, &peoplev1.RowError{Line: int32(e.Line), Column: int32(e.Column), Field: string(e.Field),
			Reason: string(e.Reason), Message: e.Message, OtherLine: int32(e.OtherLine)})
	}
	return &peoplev1.ImportPeopleResponse{Event: &peoplev1.ImportPeopleResponse_Result{Result: r}}
}

// chunkWriter sends what is written to it as stream chunks of up to 64 KiB.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) >= 64<<10 {
		if err := w.send(w.buf[:64<<10]); err != nil {
			return 0, err
		}
		w.buf = append(w.buf[:0], w.buf[64<<10:]...)
	}
	return len(p), nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = w.buf[:0]
	return err
}

// ExportPeople streams the filtered people as CSV (docs/csv-import.md),
// in the order ListPeople gives them, in the caller's scope.
func (s *Service) ExportPeople(ctx context.Context, req *connect.Request[peoplev1.ExportPeopleRequest], stream *connect.ServerStream[peoplev1.ExportPeopleResponse]) error {
	if _, err := auth.Require(ctx, managers...); err != nil {
		return err
	}
	f, err := parseFilter(ctx, req.Msg.GetFilter())
	if err != nil {
		return err
	}
	v := s.index.current()
	names := map[string]int{}
	for _, g := range v.groups {
		names[g.Name]++
	}
	occNames := map[access.ID]string{}
	for _, o := range s.cfg.Occupiers {
		occNames[o.ID] = o.Name
	}
	cw := &chunkWriter{send: func(b []byte) error {
		return stream.Send(&peoplev1.ExportPeopleResponse{Chunk: bytes.Clone(b)})
	}}
	w := importer.NewWriter(cw)
	for i, e := range v.entries {
		if i%1000 == 0 && ctx.Err() != nil {
			return connectErr(ctx.Err())
		}
		if !f.match(e) {
			continue
		}
		rec := importer.Record{Person: e.p, Occupier: string(e.p.OccupierID), Cards: e.cards}
		if n := occNames[e.p.OccupierID]; n != "" {
			rec.Occupier = n
		}
		for _, g := range e.grants {
			grp := v.groups[g.GroupID]
			if grp.Name != "" && names[grp.Name] == 1 {
				rec.Groups = append(rec.Groups, grp.Name)
			} else {
				rec.Groups = append(rec.Groups, string(g.GroupID))
			}
		}
		if err := w.Write(rec); err != nil {
			return connectErr(err)
		}
	}
	if err := w.Flush(); err != nil {
		return connectErr(err)
	}
	return cw.flush()
}
