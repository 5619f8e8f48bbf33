package sitestate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"

	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// Request-ID records and their pruning.
//
// Every command with a request ID leaves r/{request id} (its first result)
// and rt/{wall:8}{request id} (empty), wall being the command's stamp (the
// leader's hybrid clock, in Unix nanoseconds, big-endian). A command with a
// request ID first deletes up to pruneBudget records whose wall is more than
// the dedup window before its own stamp, oldest first. Everything is read
// from the command and the state, so every node prunes the same records at
// the same command, and a snapshot carries both key families.

// DefaultDedupWindow is how long a request ID is remembered at least: a
// command repeating a request ID of a command stamped less than this long
// before it gets the first result and changes nothing. Older records are
// pruned (a command may still be deduplicated after the window while its
// record waits for pruning).
const DefaultDedupWindow = 24 * time.Hour

// prefixRequestTime orders request-ID records by the stamp of the command
// that wrote them (see above).
const prefixRequestTime = "rt/"

// pruneBudget bounds the records one command deletes. Commands with a
// request ID are what makes records, so pruning keeps up: each deletes up to
// this many of the expired.
const pruneBudget = 8

// SetDedupWindow sets the dedup window (d > 0; DefaultDedupWindow until
// called). Every node of a site must use the same window, set before the
// machine applies anything: which records a command prunes depends on it.
func (m *Machine) SetDedupWindow(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d > 0 {
		m.window = d
	}
}

func requestTimeKey(wall int64, id string) []byte {
	k := make([]byte, 0, len(prefixRequestTime)+8+len(id))
	k = append(k, prefixRequestTime...)
	k = binary.BigEndian.AppendUint64(k, uint64(max(wall, 0)))
	return append(k, id...)
}

// putRequest records the first result of the command cmd with request ID
// rid, with its time index entry.
func (m *Machine) putRequest(txn *badger.Txn, cmd *raftv1.Command, rid string, rec []byte) error {
	wall := max(cmd.GetStamp().GetWallUnixNano(), 0)
	if err := txn.Set(requestKey(rid), rec); err != nil {
		return err
	}
	if err := txn.Set(requestTimeKey(wall, rid), nil); err != nil {
		return err
	}
	m.rtOldest = min(m.rtOldest, wall)
	c := m.pruneCursor(txn)
	c.minAdded = min(c.minAdded, wall)
	return nil
}

// pruneState is where pruning got to in the transaction being applied.
// Pruning deletes the oldest records in key order, so in one transaction
// the records it deleted are always every record up to the last one it
// deleted. That lets a command of the same transaction go on from there,
// reading the committed records (a read-only view) instead of iterating
// the transaction, which makes Badger sort all of the transaction's pending
// writes for every command: quadratic in the entry's size. Records this
// transaction added are not in the committed view; while all of them are
// too recent to prune they would not be reached anyway, and otherwise the
// command iterates the transaction as before. Both ways delete the same
// records, so nodes that prune one way or the other agree.
type pruneState struct {
	txn      *badger.Txn // the transaction this is about (held, so its address is not reused)
	last     []byte      // the last record time key it deleted; nil when none
	minAdded int64       // the lowest wall of the records it added; MaxInt64 when none
}

// pruneCursor returns the pruning state of txn, a fresh one when txn is
// not the transaction of the last call (a new entry, or an entry applied
// again after raftnode discarded its transaction).
func (m *Machine) pruneCursor(txn *badger.Txn) *pruneState {
	if m.prune.txn != txn {
		m.prune = pruneState{txn: txn, minAdded: math.MaxInt64}
	}
	return &m.prune
}

// pruneFromCommitted is set by tests to compare both ways of pruning.
var pruneFromCommitted = true

// pruneRequests deletes up to pruneBudget request-ID records stamped before
// the dedup window that ends at cmd's stamp, oldest first.
func (m *Machine) pruneRequests(txn *badger.Txn, cmd *raftv1.Command) error {
	wall := cmd.GetStamp().GetWallUnixNano()
	if wall <= 0 {
		return nil
	}
	cutoff := wall - int64(m.window)
	if cutoff <= m.rtOldest {
		return nil // nothing is that old (rtOldest is a lower bound)
	}
	c := m.pruneCursor(txn)
	var err error
	if pruneFromCommitted && m.db != nil && c.minAdded >= cutoff {
		err = m.pruneCommitted(txn, c, cutoff)
	} else {
		err = pruneIterating(txn, c, cutoff, m.rtOldest)
	}
	if err != nil {
		return err
	}
	m.rtRaise = true
	return nil
}

// pruneIterating deletes up to pruneBudget records older than cutoff,
// iterating txn (its pending writes included) from oldest, a lower bound of
// every record's wall. Seeking there, not to the first key, skips the
// deletion markers of the records pruned before, which Badger keeps until
// compaction and would otherwise step over for every command.
func pruneIterating(txn *badger.Txn, c *pruneState, cutoff, oldest int64) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRequestTime)})
	defer it.Close()
	n := 0
	for it.Seek(requestTimeKey(oldest, "")); it.Valid(); it.Next() {
		// The key is copied: deleting under the iterator's buffer is not
		// safe.
		k := it.Item().KeyCopy(nil)
		done, err := pruneOne(txn, k, cutoff, n)
		if done || err != nil {
			return err
		}
		c.last = k
		n++
	}
	return nil
}

// pruneCommitted deletes the same records as pruneIterating, reading the
// committed records after the last one txn deleted (see pruneState). It
// may be used only while every record txn added is at or after cutoff.
// The read-only view sees what txn sees below its own writes: only the
// state machine writes to db, one transaction at a time, so nothing
// commits while txn is open.
func (m *Machine) pruneCommitted(txn *badger.Txn, c *pruneState, cutoff int64) error {
	ro := m.db.NewTransaction(false)
	defer ro.Discard()
	it := ro.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRequestTime)})
	defer it.Close()
	n := 0
	if c.last == nil {
		it.Seek(requestTimeKey(m.rtOldest, "")) // see pruneIterating
	} else {
		it.Seek(c.last)
	}
	for ; it.Valid(); it.Next() {
		if c.last != nil && bytes.Compare(it.Item().Key(), c.last) <= 0 {
			continue // deleted by this transaction
		}
		k := it.Item().KeyCopy(nil)
		done, err := pruneOne(txn, k, cutoff, n)
		if done || err != nil {
			return err
		}
		c.last = k
		n++
	}
	return nil
}

// pruneOne deletes the record of time key k unless k is at or after cutoff
// or n records were already deleted (done).
func pruneOne(txn *badger.Txn, k []byte, cutoff int64, n int) (done bool, err error) {
	if len(k) < len(prefixRequestTime)+8 {
		return true, fmt.Errorf("sitestate: malformed request time key %x", k)
	}
	w := int64(binary.BigEndian.Uint64(k[len(prefixRequestTime):]))
	if w >= cutoff || n == pruneBudget {
		return true, nil
	}
	rid := k[len(prefixRequestTime)+8:]
	if err := txn.Delete(k); err != nil {
		return true, err
	}
	if err := txn.Delete(requestKey(string(rid))); err != nil {
		return true, err
	}
	return false, nil
}

// loadRequestOldest returns the wall of the oldest request-ID record
// (math.MaxInt64 when none), given from, a lower bound of it (0 when none
// is known; see pruneIterating).
func loadRequestOldest(txn *badger.Txn, from int64) (int64, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRequestTime)})
	defer it.Close()
	it.Seek(requestTimeKey(from, ""))
	if !it.Valid() {
		return math.MaxInt64, nil
	}
	k := it.Item().Key()
	if len(k) < len(prefixRequestTime)+8 {
		return 0, fmt.Errorf("sitestate: malformed request time key %x", k)
	}
	return int64(binary.BigEndian.Uint64(k[len(prefixRequestTime):])), nil
}

// raiseRequestOldest re-reads the oldest request-ID record after an entry
// that pruned committed, so that later commands skip pruning until a record
// expires. It runs after commit, never inside Apply: a transaction that
// raftnode discards must leave rtOldest a lower bound.
func (m *Machine) raiseRequestOldest() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prune = pruneState{} // the entry is committed: let its transaction go
	if !m.rtRaise || m.db == nil {
		return
	}
	m.rtRaise = false
	var oldest int64
	err := m.db.View(func(txn *badger.Txn) (err error) {
		oldest, err = loadRequestOldest(txn, m.rtOldest)
		return err
	})
	if err != nil {
		m.log.Warn("request records: reading the oldest", "err", err)
		return // rtOldest stays a lower bound
	}
	m.rtOldest = oldest
}
