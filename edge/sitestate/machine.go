// Package sitestate is a site's replicated state machine: it applies the
// commands of gatehouse.raft.v1 to Badger (the on-disk state) and to an
// in-memory access.State (the index every door decision reads), and answers
// door decisions from that index.
//
// It plugs into edge/raftnode as its Applier. Everything it does in Apply is
// deterministic: time, IDs and stamps come in the command, sequence numbers
// come from the state itself.
//
// # Badger layout
//
//	e/site/{id}    accessv1.Site        e/person/{id}  accessv1.Person
//	e/zone/{id}    accessv1.Zone        e/card/{n:8}   accessv1.Card (number big-endian)
//	e/door/{id}    accessv1.Door        e/grant/{id}   accessv1.Grant (tombstones kept)
//	e/sched/{id}   accessv1.Schedule    e/visit/{id}   accessv1.Visit
//	e/group/{id}   accessv1.Group       e/vtype/{id}   accessv1.VisitorType
//	e/device/{id}  accessv1.Device
//	ev/{seq:8}     accessv1.AccessEvent (this site's event log, seq big-endian)
//	r/{request id} edgev1.CommandResult (first result of a command with a request ID)
//	rt/{wall:8}{request id}  empty: the request-ID records by the stamp of
//	               their command, for pruning after the dedup window (dedup.go)
//	m/seq          last assigned event sequence number (8 bytes big-endian)
//	dseq/{device}  a device's event watermark: the highest contiguous device
//	               sequence number recorded (8 bytes big-endian)
//	d/{origin}/{lane}{seq:8}  replication.Delta (binary form): every delta the
//	               site's replica applied, its own and the hub's (lane is one
//	               byte, seq big-endian); see replica.go
//	m/vec          replication.Vector (binary form): the replica's applied
//	               vector, written in the same transaction as the deltas
package sitestate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/access"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// Key prefixes of the Badger layout (see the package doc).
const (
	prefixEntity = "e/"
	prefixEvent  = "ev/"
	// prefixRequest keys the first result of each command that carried a
	// request ID, kept at least the dedup window (dedup.go).
	prefixRequest = "r/"
	keySeq        = "m/seq"
	// prefixDevSeq keys each device's event watermark
	// (RecordDeviceEvents).
	prefixDevSeq = "dseq/"
)

// Machine is a site's state machine. Apply and Load run on Raft's FSM
// goroutine; Decide and View may be called from any goroutine concurrently
// with them (they take a read lock on the in-memory index).
type Machine struct {
	site  access.ID
	local string // LocalOrigin(site)
	log   *slog.Logger

	mu  sync.RWMutex
	st  *access.State
	seq uint64 // last event sequence number assigned

	// seqMemo makes RecordEvents idempotent when raftnode re-applies the
	// commands of one entry after splitting its transaction: the same
	// command at the same index keeps its sequence numbers.
	memoIndex uint64
	seqMemo   map[*raftv1.Command]uint64
	// devSeq is each device's event watermark; devMemo keeps, like
	// seqMemo, the watermark a RecordDeviceEvents command started from,
	// so that re-applying it records the same events.
	devSeq  map[access.ID]uint64
	devMemo map[*raftv1.Command]uint64

	// rep is the site's replica (replica.go): the CRDT state of every
	// replicated entity, the site's own deltas and the hub's. last is the
	// greatest stamp applied of any origin; repMemo memoises, like
	// seqMemo, what a command did to them.
	rep     *replication.Replica
	last    replication.Stamp
	repMemo map[*raftv1.Command]*repEffect
	// deskMemo memoises, like repMemo, what a visit desk command decided
	// (visitdesk.go).
	deskMemo map[*raftv1.Command]*deskPlan

	// changed is closed (and replaced) when a committed entry or a load
	// may have changed what doors decide; see Changed.
	chMu    sync.Mutex
	changed chan struct{}
	// recorded is closed (and replaced) when a committed entry or a load
	// may have added events to the event log; see EventsRecorded.
	recorded chan struct{}

	// window is the dedup window; rtOldest a lower bound of the stamp of
	// the oldest request-ID record (pruning is skipped while nothing can
	// be expired); rtRaise asks Committed to re-read it from db after a
	// pruning; prune is where pruning got to in the transaction being
	// applied (dedup.go).
	window   time.Duration
	rtOldest int64
	rtRaise  bool
	prune    pruneState
	db       *badger.DB
}

// New returns an empty machine for the given site.
func New(site access.ID, log *slog.Logger) *Machine {
	return &Machine{site: site, local: LocalOrigin(site), log: log.With("site", string(site)), st: access.NewState(),
		devSeq: map[access.ID]uint64{}, changed: make(chan struct{}), recorded: make(chan struct{}),
		rep: replication.NewReplica(), window: DefaultDedupWindow}
}

// Changed returns a channel that is closed the next time the applied state
// may change what a door decides: after an entry with any command other
// than event recording commits, and after a load (start, snapshot restore).
// Take a new channel after each close. It is safe for concurrent use.
func (m *Machine) Changed() <-chan struct{} {
	m.chMu.Lock()
	defer m.chMu.Unlock()
	return m.changed
}

// EventsRecorded returns a channel that is closed the next time events may
// have been added to the site's event log: after an entry that recorded
// events (RecordEvents, RecordDeviceEvents) commits, and after a load
// (start, snapshot restore). It is separate from Changed so that recording
// events, the busiest kind of write, does not wake what rebuilds door
// caches. Take a new channel after each close. It is safe for concurrent
// use.
func (m *Machine) EventsRecorded() <-chan struct{} {
	m.chMu.Lock()
	defer m.chMu.Unlock()
	return m.recorded
}

// notify closes the current Changed channel, and the EventsRecorded
// channel too when events is set.
func (m *Machine) notify(changed, events bool) {
	m.chMu.Lock()
	if changed {
		close(m.changed)
		m.changed = make(chan struct{})
	}
	if events {
		close(m.recorded)
		m.recorded = make(chan struct{})
	}
	m.chMu.Unlock()
}

// Committed implements raftnode.Committer: it signals EventsRecorded when
// the entry recorded events, and Changed when it did anything else.
func (m *Machine) Committed(_ uint64, cmds []*raftv1.Command, results []*edgev1.CommandResult) {
	m.raiseRequestOldest()
	changed, events := false, false
	for i, c := range cmds {
		if i < len(results) && results[i].GetErrorCode() != "" {
			continue
		}
		switch c.GetOp().(type) {
		case *raftv1.Command_RecordEvents, *raftv1.Command_RecordDeviceEvents:
			events = true
		default:
			changed = true
		}
		if changed && events {
			break
		}
	}
	if changed || events {
		m.notify(changed, events)
	}
}

// DeviceSeq returns the event watermark of a device: the highest sequence
// number up to which every event of the device is recorded in this node's
// applied state (0 when none is). It is safe for concurrent use.
func (m *Machine) DeviceSeq(device access.ID) uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.devSeq[device]
}

// Site returns the site this machine serves.
func (m *Machine) Site() access.ID { return m.site }

// Decide answers a door request from the in-memory index.
func (m *Machine) Decide(req access.Request) access.Decision {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return access.Decide(m.st, req)
}

// View calls fn with the in-memory index under the read lock; fn must not
// keep the state or modify it.
func (m *Machine) View(fn func(st *access.State)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(m.st)
}

// LastSeq returns the last event sequence number assigned.
func (m *Machine) LastSeq() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.seq
}

// Load rebuilds the in-memory index from Badger. It replaces the index only
// when the whole load succeeded.
func (m *Machine) Load(db *badger.DB) error {
	st := access.NewState()
	var seq uint64
	devSeq := map[access.ID]uint64{}
	var rep *replication.Replica
	var last replication.Stamp
	var rtOldest int64
	err := db.View(func(txn *badger.Txn) error {
		var err error
		if rep, last, err = loadReplica(txn, string(m.site)); err != nil {
			return err
		}
		if rtOldest, err = loadRequestOldest(txn, 0); err != nil {
			return err
		}
		if item, err := txn.Get([]byte(keySeq)); err == nil {
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("sitestate: %s: want 8 bytes, have %d", keySeq, len(v))
				}
				seq = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte(prefixEntity)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := string(item.Key())
			if err := item.Value(func(v []byte) error { return loadEntity(st, key, v) }); err != nil {
				return fmt.Errorf("sitestate: load %q: %w", key, err)
			}
		}
		dit := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(prefixDevSeq)})
		defer dit.Close()
		for dit.Rewind(); dit.Valid(); dit.Next() {
			item := dit.Item()
			key := string(item.Key())
			if err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("want 8 bytes, have %d", len(v))
				}
				devSeq[access.ID(key[len(prefixDevSeq):])] = binary.BigEndian.Uint64(v)
				return nil
			}); err != nil {
				return fmt.Errorf("sitestate: load %q: %w", key, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.st, m.seq, m.devSeq = st, seq, devSeq
	m.rep, m.last = rep, last
	m.rtOldest, m.rtRaise, m.db = rtOldest, false, db
	vec := rep.Vector()
	m.memoIndex, m.seqMemo, m.devMemo, m.repMemo, m.deskMemo = 0, nil, nil, nil, nil
	m.mu.Unlock()
	m.notify(true, true)
	c := st.Counts()
	m.log.Info("state loaded", "cards", c.Cards, "people", c.People, "grants", c.Grants, "last_seq", seq,
		"vector", vec.String())
	return nil
}

// loadEntity decodes one stored entity into st.
func loadEntity(st *access.State, key string, v []byte) error {
	kind, _, _ := cutKind(key)
	switch kind {
	case "site":
		return load(v, &accessv1.Site{}, SiteFromProto, st.PutSite)
	case "zone":
		return load(v, &accessv1.Zone{}, ZoneFromProto, st.PutZone)
	case "door":
		return load(v, &accessv1.Door{}, DoorFromProto, st.PutDoor)
	case "sched":
		return load(v, &accessv1.Schedule{}, ScheduleFromProto, st.PutSchedule)
	case "group":
		return load(v, &accessv1.Group{}, GroupFromProto, st.PutGroup)
	case "person":
		return load(v, &accessv1.Person{}, PersonFromProto, st.PutPerson)
	case "card":
		return load(v, &accessv1.Card{}, CardFromProto, st.PutCard)
	case "grant":
		return load(v, &accessv1.Grant{}, GrantFromProto, st.PutGrant)
	case "visit":
		return load(v, &accessv1.Visit{}, VisitFromProto, st.PutVisit)
	case "device":
		return load(v, &accessv1.Device{}, DeviceFromProto, st.PutDevice)
	case "vtype":
		return load(v, &accessv1.VisitorType{}, VisitorTypeFromProto, st.PutVisitorType)
	}
	return fmt.Errorf("unknown entity kind %q", kind)
}

// load unmarshals v into m, converts it and puts it into the state.
func load[M proto.Message, T any](v []byte, m M, from func(M) T, put func(T) error) error {
	if err := proto.Unmarshal(v, m); err != nil {
		return err
	}
	return put(from(m))
}

// cutKind splits "e/kind/rest" into kind and rest.
func cutKind(key string) (kind, rest string, ok bool) {
	key = key[len(prefixEntity):]
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

func entityKey(kind, id string) []byte { return []byte(prefixEntity + kind + "/" + id) }

func cardKey(n access.CardNumber) []byte {
	k := make([]byte, 0, len(prefixEntity)+5+8)
	k = append(k, prefixEntity+"card/"...)
	return binary.BigEndian.AppendUint64(k, uint64(n))
}

func eventKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixEvent), seq)
}

func put(txn *badger.Txn, key []byte, msg proto.Message) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return err
	}
	return txn.Set(key, b)
}

// Apply applies one command: it validates it against the current state,
// writes the resulting records to txn and updates the in-memory index.
// Domain failures are reported in the result and change nothing; a storage
// error is returned as error (raftnode splits the entry on
// badger.ErrTxnTooBig and re-applies; every branch below is idempotent for
// that, and RecordEvents keeps its sequence numbers through seqMemo).
func (m *Machine) Apply(txn *badger.Txn, index uint64, cmd *raftv1.Command) (*edgev1.CommandResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rid := cmd.GetRequestId()
	if rid != "" {
		if len(rid) > MaxRequestID {
			return &edgev1.CommandResult{ErrorCode: string(access.Invalid),
				Error: fmt.Sprintf("request id is %d bytes, at most %d", len(rid), MaxRequestID)}, nil
		}
		// A retried command (same request ID) gets its first result and
		// changes nothing.
		item, err := txn.Get(requestKey(rid))
		switch {
		case err == nil:
			var first edgev1.CommandResult
			if err := item.Value(func(v []byte) error { return proto.Unmarshal(v, &first) }); err != nil {
				return nil, err
			}
			return &first, nil
		case !errors.Is(err, badger.ErrKeyNotFound):
			return nil, err
		}
		if err := m.pruneRequests(txn, cmd); err != nil {
			return nil, err
		}
	}
	m.resetMemo(index)
	res := &edgev1.CommandResult{}
	err := m.apply(txn, index, cmd, res)
	if err == nil {
		// The change is made: make the site's deltas of it (none for
		// commands replication does not cover, nor for ApplyDeltas).
		err = m.replicateLocal(txn, cmd)
	}
	var se storageError
	if errors.As(err, &se) {
		return nil, se.err
	}
	if err != nil {
		res.ErrorCode = string(access.ErrorCode(err))
		res.Error = err.Error()
	}
	if rid != "" {
		// The record holds the result as the caller gets it, with its
		// index (raftnode sets the same index on res).
		res.Index = index
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
		if err != nil {
			return nil, err
		}
		if err := m.putRequest(txn, cmd, rid, b); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// MaxRequestID is the longest request ID a command may carry.
const MaxRequestID = 128

func requestKey(id string) []byte { return []byte(prefixRequest + id) }

// storageError marks a Badger failure, as opposed to a domain failure.
type storageError struct{ err error }

func (e storageError) Error() string { return e.err.Error() }
func (e storageError) Unwrap() error { return e.err }

func store(err error) error {
	if err == nil {
		return nil
	}
	return storageError{err}
}

func (m *Machine) apply(txn *badger.Txn, index uint64, cmd *raftv1.Command, res *edgev1.CommandResult) error {
	st := m.st
	switch op := cmd.GetOp().(type) {
	case *raftv1.Command_PutSite:
		s := SiteFromProto(op.PutSite)
		if s.ID != m.site {
			return access.Errorf(access.Denied, "put site %s: this node serves site %s", s.ID, m.site)
		}
		if err := s.Validate(); err != nil {
			return err
		}
		if err := store(put(txn, entityKey("site", string(s.ID)), SiteToProto(s))); err != nil {
			return err
		}
		return st.PutSite(s)
	case *raftv1.Command_PutZone:
		z := ZoneFromProto(op.PutZone)
		if err := m.ownSite("zone", z.SiteID, z.Validate()); err != nil {
			return err
		}
		if err := store(put(txn, entityKey("zone", string(z.ID)), ZoneToProto(z))); err != nil {
			return err
		}
		return st.PutZone(z)
	case *raftv1.Command_PutDoor:
		d := DoorFromProto(op.PutDoor)
		if err := m.ownSite("door", d.SiteID, d.Validate()); err != nil {
			return err
		}
		if err := store(put(txn, entityKey("door", string(d.ID)), DoorToProto(d))); err != nil {
			return err
		}
		return st.PutDoor(d)
	case *raftv1.Command_PutSchedule:
		s := ScheduleFromProto(op.PutSchedule)
		if err := m.ownSite("schedule", s.SiteID, s.Validate()); err != nil {
			return err
		}
		if err := store(put(txn, entityKey("sched", string(s.ID)), ScheduleToProto(s))); err != nil {
			return err
		}
		return st.PutSchedule(s)
	case *raftv1.Command_PutGroup:
		g := GroupFromProto(op.PutGroup)
		if err := m.ownSite("group", g.SiteID, g.Validate()); err != nil {
			return err
		}
		if err := store(put(txn, entityKey("group", string(g.ID)), GroupToProto(g))); err != nil {
			return err
		}
		return st.PutGroup(g)
	case *raftv1.Command_PutPerson:
		p := PersonFromProto(op.PutPerson)
		if err := p.Validate(); err != nil {
			return err
		}
		if old, ok := st.Person(p.ID); ok && old.Deleted {
			return access.Errorf(access.Conflict, "person %s is deleted; a deleted person never comes back", p.ID)
		}
		if err := store(put(txn, entityKey("person", string(p.ID)), PersonToProto(p))); err != nil {
			return err
		}
		return st.PutPerson(p)
	case *raftv1.Command_PutCard:
		c := CardFromProto(op.PutCard)
		if err := c.Validate(); err != nil {
			return err
		}
		if old, ok := st.CardByNumber(c.Number); ok && old.PersonID != c.PersonID {
			return access.Errorf(access.Conflict, "card %s is bound to another holder; remove it first", c.Number.Redacted())
		}
		if p, ok := st.Person(c.PersonID); ok && p.Deleted {
			return access.Errorf(access.Conflict, "card %s: person %s is deleted", c.Number.Redacted(), c.PersonID)
		}
		if err := store(put(txn, cardKey(c.Number), CardToProto(c))); err != nil {
			return err
		}
		return st.PutCard(c)
	case *raftv1.Command_RemoveCard:
		n := access.CardNumber(op.RemoveCard.GetNumber())
		if _, ok := st.CardByNumber(n); !ok {
			return access.Errorf(access.NotFound, "card %s is not known", n.Redacted())
		}
		if err := store(txn.Delete(cardKey(n))); err != nil {
			return err
		}
		st.RemoveCard(n)
		return nil
	case *raftv1.Command_SetCardStatus:
		n := access.CardNumber(op.SetCardStatus.GetNumber())
		c, ok := st.CardByNumber(n)
		if !ok {
			return access.Errorf(access.NotFound, "card %s is not known", n.Redacted())
		}
		c.Status = access.CardStatus(op.SetCardStatus.GetStatus())
		if err := c.Validate(); err != nil {
			return err
		}
		if err := store(put(txn, cardKey(n), CardToProto(c))); err != nil {
			return err
		}
		return st.PutCard(c)
	case *raftv1.Command_PutGrant:
		return m.putGrant(txn, GrantFromProto(op.PutGrant))
	case *raftv1.Command_RemoveGrant:
		id := access.ID(op.RemoveGrant.GetGrantId())
		if _, err := access.ParseID(string(id)); err != nil {
			return access.Errorf(access.Invalid, "remove grant: %w", err)
		}
		return m.putGrant(txn, access.Grant{ID: id, Removed: true})
	case *raftv1.Command_PutVisit:
		v := VisitFromProto(op.PutVisit)
		if err := m.ownSite("visit", v.SiteID, v.Validate()); err != nil {
			return err
		}
		if old, ok := st.Visit(v.ID); ok && old.State > v.State {
			v.State = old.State // the lifecycle only moves forward
		}
		if err := store(put(txn, entityKey("visit", string(v.ID)), VisitToProto(v))); err != nil {
			return err
		}
		return st.PutVisit(v)
	case *raftv1.Command_AdvanceVisit:
		id := access.ID(op.AdvanceVisit.GetVisitId())
		v, ok := st.Visit(id)
		if !ok {
			return access.Errorf(access.NotFound, "visit %s is not known", id)
		}
		next, err := v.Advance(access.VisitState(op.AdvanceVisit.GetState()))
		if err != nil {
			return err
		}
		if err := store(put(txn, entityKey("visit", string(id)), VisitToProto(next))); err != nil {
			return err
		}
		return st.PutVisit(next)
	case *raftv1.Command_PutVisitorType:
		vt := VisitorTypeFromProto(op.PutVisitorType)
		if err := vt.Validate(); err != nil {
			return err
		}
		if err := store(put(txn, entityKey("vtype", string(vt.ID)), VisitorTypeToProto(vt))); err != nil {
			return err
		}
		return st.PutVisitorType(vt)
	case *raftv1.Command_PutDevice:
		d := DeviceFromProto(op.PutDevice)
		if err := m.ownSite("device", d.SiteID, d.Validate()); err != nil {
			return err
		}
		if err := store(put(txn, entityKey("device", string(d.ID)), DeviceToProto(d))); err != nil {
			return err
		}
		return st.PutDevice(d)
	case *raftv1.Command_RemoveDevice:
		id := access.ID(op.RemoveDevice.GetDeviceId())
		if _, ok := st.Device(id); !ok {
			return access.Errorf(access.NotFound, "device %s is not known", id)
		}
		if err := store(txn.Delete(entityKey("device", string(id)))); err != nil {
			return err
		}
		st.RemoveDevice(id)
		return nil
	case *raftv1.Command_DeletePerson:
		return m.deletePerson(txn, access.ID(op.DeletePerson.GetPersonId()))
	case *raftv1.Command_RecordEvents:
		return m.recordEvents(txn, index, cmd, op.RecordEvents.GetEvents(), res)
	case *raftv1.Command_RecordDeviceEvents:
		return m.recordDeviceEvents(txn, index, cmd, op.RecordDeviceEvents, res)
	case *raftv1.Command_ApplyDeltas:
		return m.applyDeltas(txn, cmd, op.ApplyDeltas)
	case *raftv1.Command_CheckInVisit:
		return m.checkInVisit(txn, cmd, op.CheckInVisit)
	case *raftv1.Command_CheckOutVisit:
		return m.checkOutVisit(txn, cmd, op.CheckOutVisit)
	case nil:
		return access.Errorf(access.Invalid, "command has no operation")
	default:
		return access.Errorf(access.Invalid, "unknown operation %T", op)
	}
}

// ownSite checks that a site-scoped entity belongs to this machine's site,
// after its own validation error (if any).
func (m *Machine) ownSite(what string, site access.ID, validation error) error {
	if validation != nil {
		return validation
	}
	if site != m.site {
		return access.Errorf(access.Denied, "%s of site %s: this node serves site %s", what, site, m.site)
	}
	return nil
}

// putGrant stores a grant or its tombstone with the remove-wins rule of
// access.State.PutGrant, then writes what the state holds afterwards, so a
// stale grant arriving after its tombstone stays removed on disk too.
func (m *Machine) putGrant(txn *badger.Txn, g access.Grant) error {
	if err := m.st.PutGrant(g); err != nil {
		return err
	}
	stored, _ := m.st.Grant(g.ID)
	return store(put(txn, entityKey("grant", string(g.ID)), GrantToProto(stored)))
}

// deletePerson tombstones a person and frees their card numbers.
func (m *Machine) deletePerson(txn *badger.Txn, id access.ID) error {
	p, ok := m.st.Person(id)
	if !ok {
		return access.Errorf(access.NotFound, "person %s is not known", id)
	}
	p.Deleted, p.Active = true, false
	if err := store(put(txn, entityKey("person", string(id)), PersonToProto(p))); err != nil {
		return err
	}
	var freed []access.CardNumber
	for c := range m.st.Cards() {
		if c.PersonID == id {
			freed = append(freed, c.Number)
		}
	}
	for _, n := range freed {
		if err := store(txn.Delete(cardKey(n))); err != nil {
			return err
		}
	}
	if err := m.st.PutPerson(p); err != nil {
		return err
	}
	for _, n := range freed {
		m.st.RemoveCard(n)
	}
	return nil
}

// recordEvents appends door decisions to the site's event log, assigning
// each its sequence number, and records granted passages for anti-passback.
func (m *Machine) recordEvents(txn *badger.Txn, index uint64, cmd *raftv1.Command, events []*accessv1.AccessEvent, res *edgev1.CommandResult) error {
	if len(events) == 0 {
		return access.Errorf(access.Invalid, "record events: no events")
	}
	if m.memoIndex != index {
		m.memoIndex, m.seqMemo, m.devMemo = index, nil, nil
	}
	first, memo := m.seqMemo[cmd]
	if !memo {
		first = m.seq + 1
	}
	last := first + uint64(len(events)) - 1
	for i, e := range events {
		ev := proto.CloneOf(e)
		ev.Origin = string(m.site)
		ev.Seq = first + uint64(i)
		if err := store(put(txn, eventKey(ev.Seq), ev)); err != nil {
			return err
		}
	}
	if err := store(txn.Set([]byte(keySeq), binary.BigEndian.AppendUint64(nil, last))); err != nil {
		return err
	}
	if m.seqMemo == nil {
		m.seqMemo = map[*raftv1.Command]uint64{}
	}
	m.seqMemo[cmd] = first
	m.seq = max(m.seq, last)
	for _, e := range events {
		if !e.GetGranted() {
			continue
		}
		d, ok := m.st.Door(access.ID(e.GetDoorId()))
		if !ok {
			continue
		}
		m.st.RecordPassage(access.Passage{
			CardNumber: access.CardNumber(e.GetCard()), DoorID: d.ID, ZoneID: d.ZoneID,
			Direction: d.Direction, At: msToTime(e.GetAtMs()),
		})
	}
	res.FirstSeq = first
	return nil
}

// recordDeviceEvents records the events of one device that follow its
// watermark without a gap, skipping duplicates, and moves the watermark.
// Events recorded are appended to the site's event log like recordEvents
// does; an entry with nothing new changes nothing but is not an error.
func (m *Machine) recordDeviceEvents(txn *badger.Txn, index uint64, cmd *raftv1.Command, op *raftv1.RecordDeviceEvents, res *edgev1.CommandResult) error {
	dev := access.ID(op.GetDeviceId())
	if _, err := access.ParseID(string(dev)); err != nil {
		return access.Errorf(access.Invalid, "record device events: device: %w", err)
	}
	if m.memoIndex != index {
		m.memoIndex, m.seqMemo, m.devMemo = index, nil, nil
	}
	mark, memo := m.devMemo[cmd]
	if !memo {
		mark = m.devSeq[dev]
	}
	from := mark
	if s := op.GetSkipTo(); s > mark {
		mark = s
	}
	var rec []*accessv1.AccessEvent
	for _, e := range op.GetEvents() {
		s := e.GetDeviceSeq()
		if s <= mark {
			continue // a duplicate
		}
		if s != mark+1 {
			break // a gap: the device resends
		}
		ev := proto.CloneOf(e)
		ev.DeviceId = string(dev)
		rec = append(rec, ev)
		mark = s
	}
	if mark == from {
		return nil
	}
	if err := store(txn.Set([]byte(prefixDevSeq+string(dev)), binary.BigEndian.AppendUint64(nil, mark))); err != nil {
		return err
	}
	if len(rec) > 0 {
		if err := m.recordEvents(txn, index, cmd, rec, res); err != nil {
			return err
		}
	}
	if m.devMemo == nil {
		m.devMemo = map[*raftv1.Command]uint64{}
	}
	m.devMemo[cmd] = from
	m.devSeq[dev] = mark
	return nil
}

// ReadEvents returns up to limit events with a sequence number above after,
// in sequence order, from a Badger read transaction.
func ReadEvents(txn *badger.Txn, after uint64, limit int) ([]*accessv1.AccessEvent, error) {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(limit, 256), Prefix: []byte(prefixEvent)})
	defer it.Close()
	var out []*accessv1.AccessEvent
	for it.Seek(eventKey(after + 1)); it.Valid() && len(out) < limit; it.Next() {
		ev := &accessv1.AccessEvent{}
		if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, ev) }); err != nil {
			return nil, fmt.Errorf("sitestate: event %x: %w", it.Item().Key(), err)
		}
		out = append(out, ev)
	}
	return out, nil
}
