package sitestate

import (
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
	return nil
}

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
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRequestTime)})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		// The key is copied: deleting under the iterator's buffer is not
		// safe.
		k := it.Item().KeyCopy(nil)
		if len(k) < len(prefixRequestTime)+8 {
			return fmt.Errorf("sitestate: malformed request time key %x", k)
		}
		w := int64(binary.BigEndian.Uint64(k[len(prefixRequestTime):]))
		if w >= cutoff || n == pruneBudget {
			break
		}
		rid := k[len(prefixRequestTime)+8:]
		if err := txn.Delete(k); err != nil {
			return err
		}
		if err := txn.Delete(requestKey(string(rid))); err != nil {
			return err
		}
		n++
	}
	m.rtRaise = true
	return nil
}

// loadRequestOldest returns the wall of the oldest request-ID record
// (math.MaxInt64 when none).
func loadRequestOldest(txn *badger.Txn) (int64, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRequestTime)})
	defer it.Close()
	it.Rewind()
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
	if !m.rtRaise || m.db == nil {
		return
	}
	m.rtRaise = false
	var oldest int64
	err := m.db.View(func(txn *badger.Txn) (err error) {
		oldest, err = loadRequestOldest(txn)
		return err
	})
	if err != nil {
		m.log.Warn("request records: reading the oldest", "err", err)
		return // rtOldest stays a lower bound
	}
	m.rtOldest = oldest
}
