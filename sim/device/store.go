package device

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/hardware/mqttproto"
)

// store is a door controller's own storage: one bbolt file in the
// controller's state directory, written in transactions that are synced
// before they return, so what it holds survives a crash or power loss. It
// keeps the event counter, the event buffer (until acknowledged), the
// cut-off state and, per door, the mode and the offline cache.
type store struct {
	db *bolt.DB
}

var (
	bucketMeta   = []byte("meta")
	bucketEvents = []byte("events") // seq (8 bytes big endian) -> event payload
	bucketDoors  = []byte("doors")  // door ID -> doorRecord JSON
)

// metaRecord is the controller-wide state.
type metaRecord struct {
	// Seq is the sequence number of the latest event made.
	Seq uint64 `json:"seq"`
	// Acked is the highest sequence number the site acknowledged.
	Acked uint64 `json:"acked"`
	// Offline is set while the controller considers itself cut off;
	// Since is the last time it heard from its site before that.
	Offline bool      `json:"offline,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	// FailSecure lists the doors that reported fail_secure in the current
	// cut-off.
	FailSecure []access.ID `json:"fail_secure,omitempty"`
}

// doorRecord is one door's durable state.
type doorRecord struct {
	Mode         mqttproto.DoorMode `json:"mode"`
	Version      uint64             `json:"version,omitempty"`
	HighSecurity bool               `json:"high_security,omitempty"`
	MaxOffline   time.Duration      `json:"max_offline,omitempty"`
	Entries      []cacheEntry       `json:"entries,omitempty"`
}

type cacheEntry struct {
	Card  access.CardNumber `json:"card"`
	From  time.Time         `json:"from,omitzero"`
	Until time.Time         `json:"until"`
}

// openStore opens (creating) the store in dir.
func openStore(dir string) (*store, error) {
	if dir == "" {
		return nil, errors.New("no state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, "controller.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open controller store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketEvents, bucketDoors} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// load reads everything: the meta record, the door records and the
// buffered events in seq order.
func (s *store) load() (metaRecord, map[access.ID]doorRecord, []mqttproto.DoorEvent, error) {
	var (
		m      metaRecord
		doors  = map[access.ID]doorRecord{}
		events []mqttproto.DoorEvent
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get([]byte("meta")); b != nil {
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("meta: %w", err)
			}
		}
		if err := tx.Bucket(bucketDoors).ForEach(func(k, v []byte) error {
			var d doorRecord
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("door %s: %w", k, err)
			}
			doors[access.ID(k)] = d
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			e, err := mqttproto.DecodeDoorEvent(v)
			if err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			events = append(events, e)
			return nil
		})
	})
	return m, doors, events, err
}

// putMeta writes m.
func putMeta(tx *bolt.Tx, m metaRecord) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put([]byte("meta"), b)
}

// saveMeta writes m alone.
func (s *store) saveMeta(m metaRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putMeta(tx, m) })
}

// saveDoor writes the record of door.
func (s *store) saveDoor(door access.ID, d doorRecord) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDoors).Put([]byte(door), b) })
}

// addEvent stores e and m (whose Seq is e's) in one transaction, and drops
// the oldest events beyond max.
func (s *store) addEvent(e mqttproto.DoorEvent, m metaRecord, max int) error {
	b, err := e.Marshal()
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		ev := tx.Bucket(bucketEvents)
		if err := ev.Put(seqKey(e.Seq), b); err != nil {
			return err
		}
		// Sequence numbers have no gaps, so the buffer's newest max
		// events are those above e.Seq-max.
		if e.Seq > uint64(max) {
			if err := deleteUpTo(ev, e.Seq-uint64(max)); err != nil {
				return err
			}
		}
		return putMeta(tx, m)
	})
}

// ack drops the events up to and including seq and records m.
func (s *store) ack(seq uint64, m metaRecord) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := deleteUpTo(tx.Bucket(bucketEvents), seq); err != nil {
			return err
		}
		return putMeta(tx, m)
	})
}

// deleteUpTo deletes the events with seq up to and including last. It
// collects the keys first: deleting under a cursor that then moves on
// skips keys in bbolt.
func deleteUpTo(b *bolt.Bucket, last uint64) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= last; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
