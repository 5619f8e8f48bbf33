package raftnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/access"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Applier is the site's deterministic state machine. Its methods are called
// on Raft's single FSM goroutine, never concurrently with each other.
//
// Apply is called for every command of a committed entry, in order, inside a
// Badger write transaction that also records the entry's index (see the
// package doc). It must not read clocks or randomness, nor depend on map
// order: time and IDs come in the command. The node may discard txn and call
// Apply again for the same commands (when the entry is split after
// badger.ErrTxnTooBig), and a crash between the transactions of a split
// entry replays the whole entry on restart, so Apply must be idempotent per
// (index, command): an Applier that also updates in-memory state in Apply
// (edge/sitestate does, so that later commands of the same entry see earlier
// ones) must make those updates idempotent too; one that cannot uses
// Committer instead. Domain failures (bad input, a
// conflict) go into the returned result's ErrorCode and Error, which the node
// fills with index; a nil result means success. A non-nil error means txn is
// unusable: badger.ErrTxnTooBig (returned unwrapped or wrapped from txn.Set)
// makes the node split the entry; any other error stops the state machine
// (see [ErrStateMachineFailed]).
//
// Load is called on Open after Badger was brought up to date from a snapshot
// if needed (before the log replays), and after every snapshot restore, so the
// Applier can rebuild in-memory indexes from db. An error from Load fails Open,
// or stops the state machine after a restore.
type Applier interface {
	Apply(txn *badger.Txn, index uint64, cmd *raftv1.Command) (*edgev1.CommandResult, error)
	Load(db *badger.DB) error
}

// Committer is optionally implemented by an Applier that keeps in-memory
// state derived from what it writes. Committed is called on the FSM goroutine
// after all transactions of an entry committed, with the entry's commands and
// their results (same length, same order). It is not called for entries
// skipped on replay (their effects are already in Badger, and Load has seen
// them) nor for entries rejected as a whole.
type Committer interface {
	Committed(index uint64, cmds []*raftv1.Command, results []*edgev1.CommandResult)
}

// ReservedPrefix starts every Badger key owned by this package: the applied
// index, the restore marker and the membership records. An Applier must not
// write keys with this prefix.
const ReservedPrefix = "\x00raft/"

var (
	keyApplied   = []byte(ReservedPrefix + "applied")
	keyRestoring = []byte(ReservedPrefix + "restoring")
	memberPrefix = []byte(ReservedPrefix + "member/")
)

// Log entry tags (first byte of every LogCommand entry; see the package doc).
const (
	tagEntry  byte = 0x01
	tagMember byte = 0x02
)

// entryVersion is the only raftv1.Entry format version this node applies.
const entryVersion uint32 = 1

// snapshotHeader starts every snapshot: magic "GHSNAP", a zero byte and the
// snapshot format version 1; a Badger backup stream follows.
var snapshotHeader = []byte("GHSNAP\x00\x01")

// memberRecord maps a node ID to its addresses; it is the JSON body of a
// tagMember entry and the value of its Badger key.
type memberRecord struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Removed  bool   `json:"removed,omitempty"`
}

// encodeEntry returns the log bytes of e.
func encodeEntry(e *raftv1.Entry) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend([]byte{tagEntry}, e)
}

// encodeMember returns the log bytes of m.
func encodeMember(m memberRecord) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte{tagMember}, b...), nil
}

// entryResult is what Apply returns for a tagEntry or tagMember entry; it
// reaches the proposer through raft.ApplyFuture.Response.
type entryResult struct {
	results []*edgev1.CommandResult // one per command, when err is nil
	err     error                   // the whole entry failed
}

// fsm implements raft.FSM and raft.ConfigurationStore over Badger.
type fsm struct {
	db        *badger.DB
	applier   Applier
	committer Committer
	clock     *hlc
	log       *slog.Logger

	applied atomic.Uint64 // index recorded in Badger (last committed entry)
	wm      watermark     // every entry processed, including configuration entries
	failed  atomic.Pointer[error]

	// restoreMu is held for writing while Restore replaces Badger's content
	// (DropAll is not safe with concurrent readers) and for reading by
	// snapshot streams and Node.View.
	restoreMu sync.RWMutex
	restores  atomic.Int64

	membersMu sync.RWMutex
	members   map[string]memberRecord

	// afterEntry, if set, is called on the FSM goroutine after each applied
	// entry (the node uses it to report fencing entries promptly).
	afterEntry func(cmds []*raftv1.Command)
	// stats, if set, counts applied entries and their time.
	stats *batchCounters
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

func newFSM(db *badger.DB, a Applier, clock *hlc, log *slog.Logger) *fsm {
	f := &fsm{db: db, applier: a, clock: clock, log: log, members: map[string]memberRecord{}}
	f.committer, _ = a.(Committer)
	f.wm.init()
	return f
}

// readState reads the applied index and the restore marker from Badger.
func readState(db *badger.DB) (applied uint64, restoring bool, err error) {
	err = db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(keyRestoring); err == nil {
			restoring = true
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		item, err := txn.Get(keyApplied)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("applied index has %d bytes, want 8", len(v))
			}
			applied = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("raftnode: read applied index: %w", err)
	}
	return applied, restoring, nil
}

// loadState loads the applied index and the membership records from Badger
// into memory. It runs on Open and after a restore, with no Apply running.
func (f *fsm) loadState() error {
	applied, _, err := readState(f.db)
	if err != nil {
		return err
	}
	members := map[string]memberRecord{}
	err = f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: memberPrefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var m memberRecord
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
				return fmt.Errorf("member %q: %w", it.Item().Key(), err)
			}
			members[m.NodeID] = m
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("raftnode: load members: %w", err)
	}
	f.applied.Store(applied)
	f.wm.advance(applied)
	f.membersMu.Lock()
	f.members = members
	f.membersMu.Unlock()
	return nil
}

// member returns the membership record of id.
func (f *fsm) member(id string) (memberRecord, bool) {
	f.membersMu.RLock()
	defer f.membersMu.RUnlock()
	m, ok := f.members[id]
	return m, ok
}

func (f *fsm) failure() error {
	if p := f.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail stops the state machine after a storage error.
func (f *fsm) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrStateMachineFailed, err)
	if f.failed.CompareAndSwap(nil, &err) {
		f.log.Error("state machine stopped, restart the node", "err", err)
	}
	return f.failure()
}

func setApplied(txn *badger.Txn, index uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], index)
	return txn.Set(keyApplied, b[:])
}

func errResult(index uint64, err error) *edgev1.CommandResult {
	return &edgev1.CommandResult{Index: index, ErrorCode: string(access.ErrorCode(err)), Error: err.Error()}
}

// Apply implements raft.FSM. Entries at or below the applied index recorded
// in Badger are skipped: they are being replayed and their effects are
// already there.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Index <= f.applied.Load() {
		return nil
	}
	if err := f.failure(); err != nil {
		return &entryResult{err: err}
	}
	start := time.Now()
	res, err := f.apply(l.Index, l.Data)
	if f.stats != nil {
		f.stats.applied.Add(1)
		f.stats.applyNano.Add(uint64(time.Since(start)))
	}
	if err != nil {
		return &entryResult{err: f.fail(fmt.Errorf("apply index %d: %w", l.Index, err))}
	}
	f.applied.Store(l.Index)
	f.wm.advance(l.Index)
	return res
}

// StoreConfiguration implements raft.ConfigurationStore. Configuration
// entries change nothing in Badger; they only advance the applied watermark,
// so WaitApplied can wait for a Join's index.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) {
	if f.failure() == nil {
		f.wm.advance(index)
	}
}

// apply applies one entry. The error is a storage error (fatal); everything
// else is in the result.
func (f *fsm) apply(index uint64, data []byte) (*entryResult, error) {
	if len(data) == 0 {
		return f.reject(index, fmt.Errorf("%w: empty", ErrBadEntry))
	}
	switch data[0] {
	case tagEntry:
		var e raftv1.Entry
		if err := proto.Unmarshal(data[1:], &e); err != nil {
			return f.reject(index, fmt.Errorf("%w: %w", ErrBadEntry, err))
		}
		if v := e.GetVersion(); v != entryVersion {
			verr := fmt.Errorf("%w %d (this node applies version %d)", ErrUnsupportedVersion, v, entryVersion)
			res, err := f.reject(index, verr)
			if err != nil {
				return nil, err
			}
			res.err = nil
			res.results = make([]*edgev1.CommandResult, len(e.GetCommands()))
			for i := range res.results {
				res.results[i] = errResult(index, verr)
			}
			return res, nil
		}
		return f.applyEntry(index, e.GetCommands())
	case tagMember:
		var m memberRecord
		if err := json.Unmarshal(data[1:], &m); err != nil || m.NodeID == "" {
			return f.reject(index, fmt.Errorf("%w: membership record: %v", ErrBadEntry, err))
		}
		txn := f.db.NewTransaction(true)
		defer txn.Discard()
		if err := txn.Set(append(append([]byte(nil), memberPrefix...), m.NodeID...), data[1:]); err != nil {
			return nil, err
		}
		if err := setApplied(txn, index); err != nil {
			return nil, err
		}
		if err := txn.Commit(); err != nil {
			return nil, err
		}
		f.membersMu.Lock()
		f.members[m.NodeID] = m
		f.membersMu.Unlock()
		return &entryResult{}, nil
	default:
		return f.reject(index, fmt.Errorf("%w: unknown tag 0x%02x", ErrBadEntry, data[0]))
	}
}

// reject records index as applied without changing anything else and
// returns rerr as the entry's result.
func (f *fsm) reject(index uint64, rerr error) (*entryResult, error) {
	f.log.Warn("rejected log entry", "index", index, "err", rerr)
	txn := f.db.NewTransaction(true)
	defer txn.Discard()
	if err := setApplied(txn, index); err != nil {
		return nil, err
	}
	if err := txn.Commit(); err != nil {
		return nil, err
	}
	return &entryResult{err: rerr}, nil
}

// applyEntry applies cmds in as few Badger transactions as fit, writing the
// applied index in the last one.
func (f *fsm) applyEntry(index uint64, cmds []*raftv1.Command) (*entryResult, error) {
	for _, c := range cmds {
		f.clock.observe(c.GetStamp())
	}
	results := make([]*edgev1.CommandResult, len(cmds))
	start := 0
	for {
		txn := f.db.NewTransaction(true)
		end, err := f.applyRun(txn, index, cmds[start:], results[start:])
		end += start
		if err == nil {
			err = setApplied(txn, index)
			if err == nil {
				err = txn.Commit()
				if err != nil {
					return nil, err
				}
				break
			}
		}
		txn.Discard()
		if !errors.Is(err, badger.ErrTxnTooBig) {
			return nil, err
		}
		switch {
		case end == start && start == len(cmds):
			return nil, fmt.Errorf("applied index alone: %w", err)
		case end == start:
			// cmds[start] does not fit in a transaction of its own.
			results[start] = errResult(index, fmt.Errorf("%w: the command's writes exceed one storage transaction", ErrTooLarge))
			start++
			continue
		}
		// Commit cmds[start:end] on their own (without the applied index)
		// and go on with the rest in a new transaction.
		txn = f.db.NewTransaction(true)
		n, err := f.applyRun(txn, index, cmds[start:end], results[start:end])
		if err == nil && n != end-start {
			err = errors.New("split transaction did not apply every command")
		}
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		if err != nil {
			return nil, fmt.Errorf("split transaction: %w", err)
		}
		start = end
	}
	if f.committer != nil {
		f.committer.Committed(index, cmds, results)
	}
	if f.afterEntry != nil {
		f.afterEntry(cmds)
	}
	return &entryResult{results: results}, nil
}

// applyRun applies cmds in txn until one fails with an error; it returns how
// many were applied and that error.
func (f *fsm) applyRun(txn *badger.Txn, index uint64, cmds []*raftv1.Command, results []*edgev1.CommandResult) (int, error) {
	for i, c := range cmds {
		res, err := f.applier.Apply(txn, index, c)
		if err != nil {
			return i, err
		}
		if res == nil {
			res = &edgev1.CommandResult{}
		}
		res.Index = index
		results[i] = res
	}
	return len(cmds), nil
}

// Snapshot implements raft.FSM. The returned snapshot streams Badger when
// persisted, so it may contain entries applied after this call; the applied
// index inside it says which.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	return &fsmSnapshot{f: f}, nil
}

type fsmSnapshot struct{ f *fsm }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.f.writeSnapshot(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftnode: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// writeSnapshot writes the snapshot header and a Badger backup stream to w.
// The stream uses one goroutine: Badger's Stream opens one read transaction
// per goroutine, and only a single transaction gives a consistent view while
// Apply keeps writing.
func (f *fsm) writeSnapshot(w io.Writer) error {
	f.restoreMu.RLock()
	defer f.restoreMu.RUnlock()
	bw := bufio.NewWriterSize(w, 1<<16)
	if _, err := bw.Write(snapshotHeader); err != nil {
		return err
	}
	stream := f.db.NewStream()
	stream.NumGo = 1
	stream.LogPrefix = "raftnode.snapshot"
	if _, err := stream.Backup(bw, 0); err != nil {
		return err
	}
	return bw.Flush()
}

// Restore implements raft.FSM: it replaces Badger's content with the
// snapshot's and calls Applier.Load. A failure after the old content was
// dropped stops the state machine.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.restoreFrom(rc); err != nil {
		return err
	}
	if err := f.applier.Load(f.db); err != nil {
		return f.fail(fmt.Errorf("applier load after restore: %w", err))
	}
	return nil
}

// restoreFrom replaces Badger's content with the snapshot read from r.
func (f *fsm) restoreFrom(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<16)
	hdr := make([]byte, len(snapshotHeader))
	if _, err := io.ReadFull(br, hdr); err != nil {
		return fmt.Errorf("raftnode: read snapshot header: %w", err)
	}
	if !bytes.Equal(hdr, snapshotHeader) {
		return fmt.Errorf("raftnode: %w: unknown snapshot format %q", ErrBadEntry, hdr)
	}
	f.restoreMu.Lock()
	defer f.restoreMu.Unlock()
	if err := f.replace(br); err != nil {
		return f.fail(fmt.Errorf("restore snapshot: %w", err))
	}
	// A restore may bring the state machine back from a failure only if it
	// happens before Raft starts (Open); at runtime a failed FSM stays failed.
	if err := f.loadState(); err != nil {
		return f.fail(err)
	}
	f.restores.Add(1)
	return nil
}

// replace drops Badger's content and loads the backup stream from r. The
// durable restore marker makes an interrupted restore visible to the next
// Open.
func (f *fsm) replace(r io.Reader) error {
	if err := f.db.DropAll(); err != nil {
		return fmt.Errorf("drop all: %w", err)
	}
	mark := func(set bool) error {
		err := f.db.Update(func(txn *badger.Txn) error {
			if set {
				return txn.Set(keyRestoring, []byte{1})
			}
			return txn.Delete(keyRestoring)
		})
		if err != nil {
			return err
		}
		return f.db.Sync()
	}
	if err := mark(true); err != nil {
		return fmt.Errorf("set restore marker: %w", err)
	}
	if err := f.db.Load(r, 256); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := mark(false); err != nil {
		return fmt.Errorf("clear restore marker: %w", err)
	}
	return nil
}

// watermark is the highest log index processed, with a broadcast to
// waiters on every advance.
type watermark struct {
	mu sync.Mutex
	v  uint64
	ch chan struct{} // closed and replaced on every advance
}

func (w *watermark) init() { w.ch = make(chan struct{}) }

func (w *watermark) get() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v
}

func (w *watermark) advance(v uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v > w.v {
		w.v = v
		close(w.ch)
		w.ch = make(chan struct{})
	}
}

// wait blocks until the watermark reaches v, ctx ends or stop closes.
func (w *watermark) wait(ctx context.Context, v uint64, stop <-chan struct{}) error {
	for {
		w.mu.Lock()
		cur, ch := w.v, w.ch
		w.mu.Unlock()
		if cur >= v {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("raftnode: wait for index %d (at %d): %w", v, cur, ctx.Err())
		case <-stop:
			return ErrClosed
		}
	}
}
