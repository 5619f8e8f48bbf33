package sitestate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/access"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// The site as one replica (DESIGN.md §4, docs/edge.md "Replication").
//
// Every committed command that changes replicated state (sites, zones,
// doors, groups, people, cards, grants, visits) also makes replication
// deltas of origin = the site ID: the difference between what the command
// left in the access.State and what the replica held, field by field. Their
// stamps come from the command (the leader stamped it when proposing),
// raised deterministically above every stamp the replica has applied so an
// edit made after seeing a change always wins over it; their sequence
// numbers are assigned here, inside Apply, per lane. Deltas received from
// the hub arrive in ApplyDeltas commands and are applied to the replica;
// only the entities they touch are re-materialised into the access.State.
// Both write their deltas (d/...) and the replica's vector (m/vec) in the
// command's Badger transaction, so what Badger holds is exactly what the
// Raft log committed.

// Badger keys of the replica.
const (
	// prefixDelta keys every delta applied, of every origin:
	// d/{origin}/{lane byte}{seq:8} → replication.Delta binary form.
	prefixDelta = "d/"
	// keyVector holds the replica's applied vector (replication.Vector
	// binary form), written with every change of it.
	keyVector = "m/vec"
)

// PersonDisableReason is the reason of the disable a site makes when a
// person is set inactive.
const PersonDisableReason = "inactive"

// deltaPrefix returns the key prefix of one source's deltas.
func deltaPrefix(src replication.Source) []byte {
	k := make([]byte, 0, len(prefixDelta)+len(src.Origin)+2+8)
	k = append(k, prefixDelta...)
	k = append(k, src.Origin...)
	return append(k, '/', byte(src.Lane))
}

// deltaKey returns the key of delta seq of src.
func deltaKey(src replication.Source, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(deltaPrefix(src), seq)
}

// kvWrite is one Badger write of a replication effect.
type kvWrite struct {
	key, val []byte
	del      bool
}

// repEffect is what one command did to the replica: the Badger writes and
// the in-memory updates (run once). It is memoised per (index, command) so
// that a command re-applied after raftnode discarded its transaction (an
// entry split on badger.ErrTxnTooBig) writes exactly the same records again
// and does not change memory twice.
type repEffect struct {
	writes  []kvWrite
	update  func()
	updated bool
}

func (e *repEffect) set(key, val []byte) { e.writes = append(e.writes, kvWrite{key: key, val: val}) }
func (e *repEffect) del(key []byte)      { e.writes = append(e.writes, kvWrite{key: key, del: true}) }

func (e *repEffect) putMsg(key []byte, msg proto.Message) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return err
	}
	e.set(key, b)
	return nil
}

// commit writes e to txn (a storage error is returned as such) and then,
// once, runs its in-memory update.
func (m *Machine) commitEffect(txn *badger.Txn, cmd *raftv1.Command, e *repEffect) error {
	if m.repMemo == nil {
		m.repMemo = map[*raftv1.Command]*repEffect{}
	}
	m.repMemo[cmd] = e
	for _, w := range e.writes {
		var err error
		if w.del {
			err = txn.Delete(w.key)
		} else {
			err = txn.Set(w.key, w.val)
		}
		if err != nil {
			return storageError{err}
		}
	}
	if !e.updated && e.update != nil {
		e.update()
	}
	e.updated = true
	return nil
}

// resetMemo forgets the memos of another index than index.
func (m *Machine) resetMemo(index uint64) {
	if m.memoIndex != index {
		m.memoIndex, m.seqMemo, m.devMemo, m.repMemo, m.deskMemo = index, nil, nil, nil, nil
	}
}

// Vector returns the replica's applied vector: per source (origin and
// lane), the highest sequence number applied with no gap below it, this
// site's own sources included. On a node whose applied state is committed
// (every node: only committed entries are applied) it is durable: a Raft
// majority holds it. It is safe for concurrent use.
func (m *Machine) Vector() replication.Vector {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rep.Vector()
}

// OwnVector returns the part of Vector of this site's own sources: how far
// the site's delta log goes in each lane. It is safe for concurrent use.
func (m *Machine) OwnVector() replication.Vector {
	return m.originVector(string(m.site))
}

// LocalVector returns the part of Vector of the site's local-only sources
// (origin LocalOrigin): changes the hub would refuse from this site, kept
// in the site's replica and never sent. It is safe for concurrent use.
func (m *Machine) LocalVector() replication.Vector {
	return m.originVector(m.local)
}

func (m *Machine) originVector(origin string) replication.Vector {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v := replication.Vector{}
	for src, n := range m.rep.Vector() {
		if src.Origin == origin {
			v[src] = n
		}
	}
	return v
}

// LocalOrigin returns the origin of a site's local-only deltas: the site
// ID with ".local" appended.
func LocalOrigin(site access.ID) string { return string(site) + ".local" }

// ViewReplica calls fn with the site's replica under the read lock; fn must
// not keep or modify it.
func (m *Machine) ViewReplica(fn func(r *replication.Replica)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(m.rep)
}

// ReadDeltas returns up to max deltas of src with a sequence number above
// after, in sequence order and without a gap, from a Badger read
// transaction (the uplink reads the site's delta log this way). It returns
// an error when a stored delta does not decode or the log has a gap.
func ReadDeltas(txn *badger.Txn, src replication.Source, after uint64, max int) ([]replication.Delta, error) {
	if max <= 0 {
		max = math.MaxInt
	}
	prefix := deltaPrefix(src)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(max, 256), Prefix: prefix})
	defer it.Close()
	var out []replication.Delta
	for it.Seek(deltaKey(src, after+1)); it.Valid() && len(out) < max; it.Next() {
		var d replication.Delta
		if err := it.Item().Value(d.UnmarshalBinary); err != nil {
			return nil, fmt.Errorf("sitestate: delta %s: %w", src, err)
		}
		if d.Source() != src || d.Seq != after+1+uint64(len(out)) {
			return nil, fmt.Errorf("sitestate: delta log of %s: %d after %d", src, d.Seq, after+uint64(len(out)))
		}
		out = append(out, d)
	}
	return out, nil
}

// loadReplica rebuilds the replica from the delta log in Badger and checks
// it against the stored vector.
func loadReplica(txn *badger.Txn, site string) (*replication.Replica, replication.Stamp, error) {
	rep := replication.NewReplica()
	var last replication.Stamp
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte(prefixDelta)})
	defer it.Close()
	var batch []replication.Delta
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := rep.ApplyBatch(batch[0].Source(), batch)
		batch = batch[:0]
		return err
	}
	for it.Rewind(); it.Valid(); it.Next() {
		var d replication.Delta
		if err := it.Item().Value(d.UnmarshalBinary); err != nil {
			return nil, last, fmt.Errorf("sitestate: load delta %q: %w", it.Item().Key(), err)
		}
		if !bytes.Equal(it.Item().Key(), deltaKey(d.Source(), d.Seq)) {
			return nil, last, fmt.Errorf("sitestate: load delta %q: holds %s/%d", it.Item().Key(), d.Source(), d.Seq)
		}
		if len(batch) > 0 && (batch[0].Source() != d.Source() || len(batch) == 256) {
			if err := flush(); err != nil {
				return nil, last, fmt.Errorf("sitestate: load deltas: %w", err)
			}
		}
		batch = append(batch, d)
		if last.Less(d.Stamp) {
			last = d.Stamp
		}
	}
	if err := flush(); err != nil {
		return nil, last, fmt.Errorf("sitestate: load deltas: %w", err)
	}
	var stored replication.Vector
	item, err := txn.Get([]byte(keyVector))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		stored = replication.Vector{}
	case err != nil:
		return nil, last, err
	default:
		if err := item.Value(stored.UnmarshalBinary); err != nil {
			return nil, last, fmt.Errorf("sitestate: load %s: %w", keyVector, err)
		}
	}
	if !stored.Equal(rep.Vector()) {
		return nil, last, fmt.Errorf("sitestate: stored vector %s does not match the delta log %s", stored, rep.Vector())
	}
	return rep, last, nil
}

// nextStamp returns the stamp of the next delta the site makes: the
// command's stamp (its wall and counter, with the site as origin), raised
// above prev (the greatest stamp the replica applied so far) when it is not
// above it. It reads no clock, so every node computes the same stamp.
func nextStamp(cmd *raftv1.Command, origin string, prev replication.Stamp) replication.Stamp {
	s := replication.Stamp{Wall: cmd.GetStamp().GetWallUnixNano(), Counter: cmd.GetStamp().GetLogical(), Origin: origin}
	if s.Wall < 0 {
		s.Wall = 0
	}
	if prev.Less(s) {
		return s
	}
	if prev.Counter == math.MaxUint32 {
		return replication.Stamp{Wall: prev.Wall + 1, Origin: origin}
	}
	return replication.Stamp{Wall: prev.Wall, Counter: prev.Counter + 1, Origin: origin}
}

// entRef names an entity of the replica.
type entRef struct {
	kind replication.Kind
	id   string
}

// touchedBy returns the entities a site command changes, for replication.
func touchedBy(cmd *raftv1.Command) []entRef {
	card := func(n uint64) []entRef { return []entRef{{replication.KindCard, access.CardNumber(n).String()}} }
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_PutSite:
		return []entRef{{replication.KindSite, op.PutSite.GetId()}}
	case *raftv1.Command_PutZone:
		return []entRef{{replication.KindZone, op.PutZone.GetId()}}
	case *raftv1.Command_PutDoor:
		return []entRef{{replication.KindDoor, op.PutDoor.GetId()}}
	case *raftv1.Command_PutGroup:
		return []entRef{{replication.KindGroup, op.PutGroup.GetId()}}
	case *raftv1.Command_PutPerson:
		return []entRef{{replication.KindPerson, op.PutPerson.GetId()}}
	case *raftv1.Command_DeletePerson:
		return []entRef{{replication.KindPerson, op.DeletePerson.GetPersonId()}}
	case *raftv1.Command_PutCard:
		return card(op.PutCard.GetNumber())
	case *raftv1.Command_RemoveCard:
		return card(op.RemoveCard.GetNumber())
	case *raftv1.Command_SetCardStatus:
		return card(op.SetCardStatus.GetNumber())
	case *raftv1.Command_PutGrant:
		return []entRef{{replication.KindGrant, op.PutGrant.GetId()}}
	case *raftv1.Command_RemoveGrant:
		return []entRef{{replication.KindGrant, op.RemoveGrant.GetGrantId()}}
	case *raftv1.Command_PutVisit:
		return []entRef{{replication.KindVisit, op.PutVisit.GetId()}}
	case *raftv1.Command_AdvanceVisit:
		return []entRef{{replication.KindVisit, op.AdvanceVisit.GetVisitId()}}
	}
	return nil
}

// replicateLocal makes the deltas of a site command that succeeded, writes
// them and the vector to txn and applies them to the replica.
func (m *Machine) replicateLocal(txn *badger.Txn, cmd *raftv1.Command) error {
	refs := touchedBy(cmd)
	if p := m.deskMemo[cmd]; p != nil {
		refs = p.refs() // a visit desk command: what it changed
	}
	if len(refs) == 0 {
		return nil
	}
	if e := m.repMemo[cmd]; e != nil {
		return m.commitEffect(txn, cmd, e)
	}
	vec := m.rep.Vector()
	last := m.last
	var (
		made    []replication.Delta
		encoded [][]byte // made's binary forms
	)
	for _, r := range refs {
		ops := m.deskOps(cmd, r, m.diff(r))
		if len(ops) == 0 {
			continue
		}
		// Revocations and the rest travel in separate deltas (and lanes),
		// so the hub can take a disable even when it refuses the edit
		// made with it.
		var revoke, give []replication.Op
		if !slices.ContainsFunc(ops, replication.Op.Revocation) {
			give = ops // the usual case: nothing to split, nothing to copy
		} else {
			for _, op := range ops {
				if op.Revocation() {
					revoke = append(revoke, op)
				} else {
					give = append(give, op)
				}
			}
		}
		parts := [][]replication.Op{revoke, give}
		if len(revoke) > 0 && !m.sendable(replication.Delta{Origin: string(m.site), Kind: r.kind, ID: r.id, Ops: revoke}, nil) {
			// The hub takes disables of anything from a site: send them
			// on their own, and keep the rest (a deletion) local.
			var disables, other []replication.Op
			for _, op := range revoke {
				if op.Type == replication.OpDisable {
					disables = append(disables, op)
				} else {
					other = append(other, op)
				}
			}
			if len(disables) > 0 && len(other) > 0 {
				parts = [][]replication.Op{disables, other, give}
			}
		}
		var pending []replication.Delta // deltas of this entity, for sendable
		for _, part := range parts {
			if len(part) == 0 {
				continue
			}
			if cap(part) > len(part) {
				// The delta stays in the replica's log for as long as the
				// node runs: keep no spare capacity (a card's 5 ops took 8
				// slots of 64 bytes).
				part = append(make([]replication.Op, 0, len(part)), part...)
			}
			d := replication.Delta{Lane: replication.LaneOf(part), Kind: r.kind, ID: r.id, Ops: part}
			d.Origin = string(m.site)
			if !m.sendable(d, pending) {
				d.Origin = m.local // one string shared by every local delta
			}
			d.Seq = vec[d.Source()] + 1
			d.Stamp = nextStamp(cmd, d.Origin, last)
			// MarshalBinary validates the delta, and its bytes are what
			// is stored: one validation fewer than validating apart.
			enc, err := d.MarshalBinary()
			if err != nil {
				// The command passed the domain's validation but its change
				// does not fit the replication schema: a bug, not the
				// caller's fault. The site keeps the change; the hub will
				// not see it.
				m.log.Error("change not replicated", "kind", r.kind.String(), "err", err)
				continue
			}
			vec.Advance(d.Source(), d.Seq)
			last = d.Stamp
			made = append(made, d)
			encoded = append(encoded, enc)
			pending = append(pending, d)
		}
	}
	if len(made) == 0 {
		return nil
	}
	e := &repEffect{}
	for i, d := range made {
		e.set(deltaKey(d.Source(), d.Seq), encoded[i])
	}
	vb, err := vec.MarshalBinary()
	if err != nil {
		return err
	}
	e.set([]byte(keyVector), vb)
	e.update = func() {
		for _, d := range made {
			if _, err := m.rep.Apply(d); err != nil {
				m.log.Error("apply own delta", "err", err)
			}
		}
		m.last = last
	}
	return m.commitEffect(txn, cmd, e)
}

// field is one scalar field of an entity in its canonical text form.
type field struct{ name, value string }

// setOps returns an OpSet for every field of want whose value differs from
// have's (all of want when the replica does not have the entity).
func setOps(want, have []field, has bool) []replication.Op {
	var ops []replication.Op
	for i, f := range want {
		if !has || have[i].value != f.value {
			ops = append(ops, replication.SetOp(f.name, f.value))
		}
	}
	return ops
}

func enumText(v interface{ MarshalText() ([]byte, error) }) string {
	b, _ := v.MarshalText()
	return string(b)
}

func siteFields(s access.Site) []field {
	return []field{{"name", s.Name}, {"time_zone", s.TimeZone}, {"holidays", replication.DatesValue(s.Holidays)}}
}

func zoneFields(z access.Zone) []field {
	return []field{{"site", string(z.SiteID)}, {"name", z.Name}, {"anti_passback", replication.BoolValue(z.AntiPassback)}}
}

func doorFields(d access.Door) []field {
	return []field{{"site", string(d.SiteID)}, {"zone", string(d.ZoneID)}, {"name", d.Name},
		{"direction", enumText(d.Direction)}, {"high_security", replication.BoolValue(d.HighSecurity)},
		{"max_offline", replication.DurationValue(d.MaxOffline)}}
}

func groupFields(g access.Group) []field {
	return []field{{"site", string(g.SiteID)}, {"name", g.Name}, {"schedule", string(g.ScheduleID)}, {"kind", enumText(g.Kind)}}
}

func personFields(p access.Person) []field {
	return []field{{"kind", enumText(p.Kind)}, {"occupier", string(p.OccupierID)}, {"name", p.Name}, {"email", p.Email},
		{"offline_access", replication.BoolValue(p.OfflineAccess)},
		{"valid_from", replication.TimeValue(p.ValidFrom)}, {"valid_until", replication.TimeValue(p.ValidUntil)}}
}

func cardFields(c access.Card) []field {
	return []field{{"site", string(c.SiteID)}, {"valid_from", replication.TimeValue(c.ValidFrom)},
		{"valid_until", replication.TimeValue(c.ValidUntil)}}
}

func visitFields(v access.Visit) []field {
	return []field{{"site", string(v.SiteID)}, {"host", string(v.HostID)}, {"visitor", string(v.VisitorID)},
		{"type", string(v.TypeID)}, {"from", replication.TimeValue(v.From)}, {"until", replication.TimeValue(v.Until)},
		{"escort", replication.BoolValue(v.Escort)}}
}

// diff returns the operations that bring the replica's entity r to what the
// access.State holds after a site command.
func (m *Machine) diff(r entRef) []replication.Op {
	st, rep := m.st, m.rep
	id := access.ID(r.id)
	switch r.kind {
	case replication.KindSite:
		s, ok := st.Site(id)
		if !ok {
			return nil
		}
		cur, has := rep.Site(id)
		return setOps(siteFields(s), siteFields(cur), has)
	case replication.KindZone:
		z, ok := st.Zone(id)
		if !ok {
			return nil
		}
		cur, has := rep.Zone(id)
		return setOps(zoneFields(z), zoneFields(cur), has)
	case replication.KindDoor:
		d, ok := st.Door(id)
		if !ok {
			return nil
		}
		cur, has := rep.Door(id)
		return setOps(doorFields(d), doorFields(cur), has)
	case replication.KindGroup:
		g, ok := st.Group(id)
		if !ok {
			return nil
		}
		cur, has := rep.Group(id)
		ops := setOps(groupFields(g), groupFields(cur), has)
		for _, d := range g.Doors {
			if !slices.Contains(cur.Doors, d) {
				ops = append(ops, replication.AddOp("doors", string(d)))
			}
		}
		for _, d := range cur.Doors {
			if !slices.Contains(g.Doors, d) {
				ops = append(ops, rep.RemoveOp(replication.KindGroup, r.id, "doors", string(d)))
			}
		}
		return ops
	case replication.KindPerson:
		p, ok := st.Person(id)
		if !ok {
			return nil
		}
		cur, has := rep.Person(id)
		var ops []replication.Op
		if !p.Deleted {
			ops = setOps(personFields(p), personFields(cur), has)
		}
		switch {
		case p.Active && !cur.Active:
			ops = append(ops, rep.EnableOp(replication.KindPerson, r.id))
		case !p.Active && cur.Active:
			ops = append(ops, replication.DisableOp(PersonDisableReason))
		}
		if p.Deleted && !cur.Deleted {
			ops = append(ops, replication.DeleteOp())
		}
		return ops
	case replication.KindCard:
		n, err := access.ParseCardNumber(r.id)
		if err != nil {
			return nil
		}
		c, ok := st.CardByNumber(n)
		var ops []replication.Op
		want := ""
		if ok {
			want = replication.HolderValue(c.PersonID, c.VisitID)
			for _, f := range cardFields(c) {
				if v, set := rep.Field(replication.KindCard, r.id, f.name); !set || v != f.value {
					ops = append(ops, replication.SetOp(f.name, f.value))
				}
			}
		}
		held := false
		for _, h := range rep.CardHolders(n) {
			hv := replication.HolderValue(h.PersonID, h.VisitID)
			if hv == want {
				held = true
				continue
			}
			ops = append(ops, rep.RemoveOp(replication.KindCard, r.id, "holders", hv))
		}
		if !ok {
			return ops
		}
		if !held {
			ops = append(ops, replication.AddOp("holders", want))
		}
		cur, live := rep.Card(n)
		switch {
		case c.Status == access.CardActive && (!live || cur.Status != access.CardActive):
			ops = append(ops, rep.EnableOp(replication.KindCard, r.id))
		case c.Status != access.CardActive && (!live || cur.Status != c.Status):
			ops = append(ops, replication.DisableOp(c.Status.String()))
		}
		return ops
	case replication.KindGrant:
		g, ok := st.Grant(id)
		if !ok {
			return nil
		}
		cur, has := rep.Grant(id)
		switch {
		case g.Removed && !(has && cur.Removed):
			return []replication.Op{replication.RemoveGrantOp()}
		case !g.Removed && !has:
			return []replication.Op{rep.GrantOp(g)}
		}
		return nil
	case replication.KindVisit:
		v, ok := st.Visit(id)
		if !ok {
			return nil
		}
		cur, has := rep.Visit(id)
		ops := setOps(visitFields(v), visitFields(cur), has)
		if v.State > cur.State {
			ops = append(ops, replication.AdvanceOp(v.State))
		}
		return ops
	}
	return nil
}

// applyDeltas applies a batch of remote deltas: all of them or, when any is
// malformed, of this site's origin or beyond a gap, none.
func (m *Machine) applyDeltas(txn *badger.Txn, cmd *raftv1.Command, op *raftv1.ApplyDeltas) error {
	if e := m.repMemo[cmd]; e != nil {
		return m.commitEffect(txn, cmd, e)
	}
	raw := op.GetDeltas()
	if len(raw) == 0 {
		return access.Errorf(access.Invalid, "apply deltas: no deltas")
	}
	vec := m.rep.Vector()
	next := map[replication.Source]uint64{}
	// Sized for the usual batch, all of it new (a run of the uplink holds
	// thousands of deltas: growing these cost a tenth of applying them).
	fresh := make([]replication.Delta, 0, len(raw))
	freshRaw := make([][]byte, 0, len(raw)) // fresh's encodings: canonical, so stored as received
	for i, b := range raw {
		var d replication.Delta
		if err := d.UnmarshalBinary(b); err != nil {
			return access.Errorf(access.Invalid, "apply deltas: delta %d: %w", i, err)
		}
		if d.Origin == string(m.site) || d.Origin == m.local {
			return access.Errorf(access.Denied, "apply deltas: delta %d (%s/%d) is of this site's own origin: %w",
				i, d.Source(), d.Seq, replication.ErrUnauthorized)
		}
		src := d.Source()
		n, ok := next[src]
		if !ok {
			n = vec[src] + 1
		}
		switch {
		case d.Seq < n:
			continue // applied already
		case d.Seq > n:
			return access.Errorf(access.Conflict, "apply deltas: delta %d is %s/%d where %d is next: %w",
				i, src, d.Seq, n, replication.ErrGap)
		}
		next[src] = n + 1
		fresh = append(fresh, d)
		freshRaw = append(freshRaw, b)
	}
	if len(fresh) == 0 {
		return nil
	}
	// Each delta and (usually) its entity, and the vector.
	e := &repEffect{writes: make([]kvWrite, 0, 2*len(fresh)+1)}
	for i, d := range fresh {
		// The delta codec is canonical (decoding accepted only the one
		// encoding of d), so the received bytes are MarshalBinary's.
		e.set(deltaKey(d.Source(), d.Seq), freshRaw[i])
		vec.Advance(d.Source(), d.Seq)
	}
	vb, err := vec.MarshalBinary()
	if err != nil {
		return err
	}
	e.set([]byte(keyVector), vb)
	// The batch is checked: apply it to the replica now (memoised with
	// the effect, so never twice), then work out what it changes in the
	// access.State.
	for _, d := range fresh {
		if _, err := m.rep.Apply(d); err != nil {
			return fmt.Errorf("sitestate: apply checked delta %s/%d: %w", d.Source(), d.Seq, err)
		}
		if m.last.Less(d.Stamp) {
			m.last = d.Stamp
		}
	}
	touched := m.touchedRemote(fresh)
	updates := make([]func(), 0, len(touched))
	for _, r := range touched {
		if err := m.materialise(r, e, &updates); err != nil {
			return err
		}
	}
	e.update = func() {
		for _, u := range updates {
			u()
		}
	}
	return m.commitEffect(txn, cmd, e)
}

// touchedRemote returns, in a deterministic order, the entities of the
// access.State that deltas may have changed: each delta's entity, the
// grants of a membership revoked, the cards of a person deleted or of a
// visit that ended.
func (m *Machine) touchedRemote(ds []replication.Delta) []entRef {
	out := make([]entRef, 0, len(ds))
	seen := make(map[entRef]bool, len(ds))
	add := func(r entRef) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	var cardsOf []access.ID // holders whose cards must be looked at
	for _, d := range ds {
		add(entRef{d.Kind, d.ID})
		for _, op := range d.Ops {
			switch {
			case op.Type == replication.OpRevoke:
				for _, g := range m.st.GrantsOf(access.ID(d.ID)) {
					if g.GroupID == access.ID(op.Value) {
						add(entRef{replication.KindGrant, string(g.ID)})
					}
				}
			case op.Type == replication.OpDelete && d.Kind == replication.KindPerson,
				op.Type == replication.OpAdvance && d.Kind == replication.KindVisit && op.Revocation():
				cardsOf = append(cardsOf, access.ID(d.ID))
			}
		}
	}
	if len(cardsOf) > 0 {
		var ns []access.CardNumber
		for c := range m.st.Cards() {
			if slices.Contains(cardsOf, c.PersonID) || (!c.VisitID.IsZero() && slices.Contains(cardsOf, c.VisitID)) {
				ns = append(ns, c.Number)
			}
		}
		slices.Sort(ns)
		for _, n := range ns {
			add(entRef{replication.KindCard, n.String()})
		}
	}
	return out
}

// materialise adds to e the Badger writes, and to updates the access.State
// changes, that bring entity r of the access.State to what the replica
// holds. Entities the replica does not hold in a valid form are left as
// they are, except cards, which are removed (fail closed), and groups,
// which lose their doors when deleted. Zones, doors, groups and visits of
// other sites are not this site's business and are skipped.
func (m *Machine) materialise(r entRef, e *repEffect, updates *[]func()) error {
	st, rep := m.st, m.rep
	id := access.ID(r.id)
	put := func(key []byte, msg proto.Message, fn func()) error {
		if err := e.putMsg(key, msg); err != nil {
			return err
		}
		*updates = append(*updates, fn)
		return nil
	}
	ignore := func(error) {} // validated before; a put cannot fail
	switch r.kind {
	case replication.KindSite:
		s, ok := rep.Site(id)
		if !ok || id != m.site || s.Validate() != nil {
			return nil
		}
		return put(entityKey("site", r.id), SiteToProto(s), func() { ignore(st.PutSite(s)) })
	case replication.KindZone:
		z, ok := rep.Zone(id)
		if !ok || z.SiteID != m.site || z.Validate() != nil {
			return nil
		}
		return put(entityKey("zone", r.id), ZoneToProto(z), func() { ignore(st.PutZone(z)) })
	case replication.KindDoor:
		d, ok := rep.Door(id)
		if !ok || d.SiteID != m.site || d.Validate() != nil {
			return nil
		}
		return put(entityKey("door", r.id), DoorToProto(d), func() { ignore(st.PutDoor(d)) })
	case replication.KindGroup:
		g, ok := rep.Group(id)
		if !ok {
			// Deleted: access.State cannot forget a group, so it keeps it
			// without doors, which grants nothing.
			old, had := st.Group(id)
			if !had {
				return nil
			}
			old.Doors = nil
			g, ok = old, true
		}
		if g.SiteID != m.site || g.Validate() != nil {
			return nil
		}
		return put(entityKey("group", r.id), GroupToProto(g), func() { ignore(st.PutGroup(g)) })
	case replication.KindPerson:
		p, ok := rep.Person(id)
		if !ok {
			return nil
		}
		if old, had := st.Person(id); had {
			disables := len(rep.EnableOp(replication.KindPerson, r.id).Observed) > 0
			p = overlayPerson(old, p, m.known(r), p.Active || disables)
		}
		if p.Validate() != nil {
			return nil
		}
		return put(entityKey("person", r.id), PersonToProto(p), func() { ignore(st.PutPerson(p)) })
	case replication.KindCard:
		n, err := access.ParseCardNumber(r.id)
		if err != nil {
			return nil
		}
		c, ok := rep.Card(n)
		if ok && c.Validate() == nil {
			return put(cardKey(n), CardToProto(c), func() { ignore(st.PutCard(c)) })
		}
		if _, had := st.CardByNumber(n); had {
			e.del(cardKey(n))
			*updates = append(*updates, func() { st.RemoveCard(n) })
		}
		return nil
	case replication.KindGrant:
		g, ok := rep.Grant(id)
		if !ok {
			// A grant the replica never saw (made before the site
			// replicated): a revocation of its membership removes it.
			old, had := st.Grant(id)
			if !had || old.Removed || len(rep.GrantOp(old).Observed) == 0 {
				return nil
			}
			g, ok = old, true
			g.Removed = true
		}
		if g.Validate() != nil {
			return nil
		}
		// What access.State.PutGrant will hold afterwards (remove wins;
		// a live grant is immutable).
		stored := g
		if old, had := st.Grant(id); had {
			switch {
			case old.Removed:
				return nil
			case !g.Removed:
				return nil // the same grant, or one the state refuses
			default:
				stored = old
				stored.Removed = true
			}
		}
		return put(entityKey("grant", r.id), GrantToProto(stored), func() { ignore(st.PutGrant(g)) })
	case replication.KindVisit:
		v, ok := rep.Visit(id)
		if !ok {
			return nil
		}
		if old, had := st.Visit(id); had {
			v = overlayVisit(old, v, m.known(r))
		}
		if v.SiteID != m.site || v.Validate() != nil {
			return nil
		}
		return put(entityKey("visit", r.id), VisitToProto(v), func() { ignore(st.PutVisit(v)) })
	}
	return nil
}

// deltasFencing reports whether an ApplyDeltas command may take access
// away, so that it must be fenced (DESIGN.md §5): any revocation (priority
// lane), any field change but a name or an email (a window may shorten, a
// door move), any set change but a door added to a group. Grants, enables
// and non-final visit states only give. A command that does not decode is
// fencing: in doubt, fence.
func deltasFencing(op *raftv1.ApplyDeltas) bool {
	for _, b := range op.GetDeltas() {
		var d replication.Delta
		if d.UnmarshalBinary(b) != nil || d.Lane == replication.LanePriority {
			return true
		}
		for _, o := range d.Ops {
			switch o.Type {
			case replication.OpGrant, replication.OpEnable, replication.OpAdvance:
			case replication.OpSet:
				if o.Field != "name" && o.Field != "email" {
					return true
				}
			case replication.OpAdd:
				if o.Field != "doors" && o.Field != "groups" {
					return true
				}
			default:
				return true
			}
		}
	}
	return false
}

// sendable reports whether the hub will take d from this site, by the
// rules of its authorizer (docs/sync.md §3), judged on what this site's
// replica knows plus the deltas of the same change made before d
// (earlier). A delta the hub would refuse would block its whole source
// (nothing after it could be sent), so such changes are made under the
// site's LocalOrigin instead: they count at the site and stay there. The
// hub may still know more than the site (a card it homed that the site
// never heard of); such a refusal shows in the uplink's status.
func (m *Machine) sendable(d replication.Delta, earlier []replication.Delta) bool {
	site := string(m.site)
	rep := m.rep
	field := func(k replication.Kind, id, f string) (string, bool) {
		for i := len(earlier) - 1; i >= 0; i-- {
			e := earlier[i]
			if e.Kind != k || e.ID != id {
				continue
			}
			for _, op := range e.Ops {
				if op.Type == replication.OpSet && op.Field == f {
					return op.Value, true
				}
			}
		}
		return rep.Field(k, id, f)
	}
	onlyDisables := !slices.ContainsFunc(d.Ops, func(op replication.Op) bool { return op.Type != replication.OpDisable })
	// sets returns the value d sets field f to (the last set of it), without
	// building a map for every delta.
	sets := func(f string) (string, bool) {
		for i := len(d.Ops) - 1; i >= 0; i-- {
			if op := d.Ops[i]; op.Type == replication.OpSet && op.Field == f {
				return op.Value, true
			}
		}
		return "", false
	}
	switch d.Kind {
	case replication.KindSite:
		return d.ID == site && !slices.ContainsFunc(d.Ops, func(op replication.Op) bool { return op.Type == replication.OpDelete })
	case replication.KindZone, replication.KindDoor, replication.KindGroup, replication.KindVisit, replication.KindCard:
		if d.Kind == replication.KindCard && onlyDisables {
			return true
		}
		set, setting := sets("site")
		if setting && set != site {
			return false
		}
		known, ok := field(d.Kind, d.ID, "site")
		if !ok && d.Kind == replication.KindCard {
			if n, err := access.ParseCardNumber(d.ID); err == nil && len(rep.CardHolders(n)) > 0 {
				known, ok = "", true
			}
		}
		switch {
		case ok:
			return known == site
		case setting:
			return true
		}
		return d.Revocation()
	case replication.KindPerson:
		if onlyDisables {
			return true
		}
		for _, op := range d.Ops {
			switch op.Type {
			case replication.OpDelete:
				return false
			case replication.OpRevoke:
				if s, ok := field(replication.KindGroup, op.Value, "site"); ok && s != site {
					return false
				}
			case replication.OpSet, replication.OpEnable:
				kind, ok := sets("kind")
				if !ok {
					kind, ok = field(replication.KindPerson, d.ID, "kind")
				}
				if !ok || kind != access.Visitor.String() {
					return false
				}
			}
		}
		return true
	case replication.KindGrant:
		for _, op := range d.Ops {
			switch op.Type {
			case replication.OpGrant:
				g, err := replication.ParseGrantValue(op.Value)
				if err != nil {
					return false
				}
				if s, ok := field(replication.KindGroup, string(g.GroupID), "site"); !ok || s != site {
					return false
				}
			case replication.OpRemoveGrant:
				g, ok := rep.Grant(access.ID(d.ID))
				if !ok || g.GroupID.IsZero() {
					continue
				}
				if s, ok := field(replication.KindGroup, string(g.GroupID), "site"); ok && s != site {
					return false
				}
			}
		}
		return true
	}
	return false
}

// known returns a function telling whether the replica has a value for a
// field of entity r.
func (m *Machine) known(r entRef) func(field string) bool {
	return func(f string) bool {
		_, ok := m.rep.Field(r.kind, r.id, f)
		return ok
	}
}

// overlayPerson returns the person old (what the site's state holds) with
// what the replica knows of it in rp: every field the replica has a value
// for, its active flag once the replica has seen an enable or a disable
// (flagSeen), and its deletion. A person the site had before it replicated thus takes
// the hub's changes, a disable included, without losing its other fields.
func overlayPerson(old, rp access.Person, known func(string) bool, flagSeen bool) access.Person {
	p := old
	if known("kind") {
		p.Kind = rp.Kind
	}
	if known("occupier") {
		p.OccupierID = rp.OccupierID
	}
	if known("name") {
		p.Name = rp.Name
	}
	if known("email") {
		p.Email = rp.Email
	}
	if known("offline_access") {
		p.OfflineAccess = rp.OfflineAccess
	}
	if known("valid_from") {
		p.ValidFrom = rp.ValidFrom
	}
	if known("valid_until") {
		p.ValidUntil = rp.ValidUntil
	}
	if flagSeen {
		// Otherwise the person was enabled (or not) at the site before it
		// replicated, and nothing the replica knows changes that.
		p.Active = rp.Active
	}
	p.Deleted = old.Deleted || rp.Deleted
	if p.Deleted {
		p.Active = false
	}
	return p
}

// overlayVisit is overlayPerson for visits; the state is the later of
// both.
func overlayVisit(old, rv access.Visit, known func(string) bool) access.Visit {
	v := old
	if known("site") {
		v.SiteID = rv.SiteID
	}
	if known("host") {
		v.HostID = rv.HostID
	}
	if known("visitor") {
		v.VisitorID = rv.VisitorID
	}
	if known("type") {
		v.TypeID = rv.TypeID
	}
	if known("from") {
		v.From = rv.From
	}
	if known("until") {
		v.Until = rv.Until
	}
	if known("escort") {
		v.Escort = rv.Escort
	}
	v.State = max(old.State, rv.State)
	return v
}
