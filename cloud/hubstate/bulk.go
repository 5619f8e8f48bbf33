package hubstate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/store"
)

// A write larger than one store batch (store.MaxBatchItems,
// store.MaxBatchBytes) — a bulk import of 100,000 people is several
// hundred thousand deltas and card claims — is committed in three steps,
// all or nothing across a crash:
//
//  1. Stage: the whole batch is written, in chunks, as entities of kind
//     "meta" (IDs "bulk/0", "bulk/1"...), invisible to replication; the
//     last staging commit also writes the marker "bulk" = "pending N". A
//     crash before it leaves only unreferenced staging entities: nothing
//     of the write exists.
//  2. Finish: the card claims, then every record but the first of each
//     log with store.Append.AllowGap (stored past a gap, so invisible:
//     Read and Vector stop at the gap) and the unclaims, then one last
//     commit with the first record of each log, which fills the gaps so
//     each head jumps over the whole write at once, and the marker "done".
//     The claims, then the records and unclaims, are committed by
//     bulkWorkers goroutines at once: their order does not matter, and
//     Badger shares one log write and fsync among concurrent commits.
//  3. Apply to the replica.
//
// Once the marker says pending, the write is decided: if step 2 is cut
// short (a crash, a store error), Open — or the next Write of this
// process — repeats it from the staging entities. Every part of step 2 is
// idempotent (same records, same claim owners), so repeating is safe.
//
// It relies on nobody else writing origin "hub" between the stage and the
// finish: true of a hub of one process (Badger). Several hub processes
// over one PostgreSQL would need the write serialised across processes
// (not done yet; docs/cardholders.md).

const (
	// bulkItems and bulkBytes bound each commit of step 2: close to the
	// store's limits, since every commit is an fsync.
	bulkItems    = store.MaxBatchItems - 100
	bulkBytes    = store.MaxBatchBytes - 256<<10
	bulkMarker   = "bulk"
	bulkChunk    = 900 << 10 // bytes of one staging entity, below store.MaxEntitySize
	bulkPerStage = 3         // staging entities per commit, below store.MaxBatchBytes
)

// fits reports whether b fits one store commit.
func fits(b store.Batch) bool {
	items, size := len(b.Claim)+len(b.Unclaim)+len(b.Puts), 0
	for _, p := range b.Puts {
		size += len(p.Entity.Data)
	}
	for _, a := range b.Appends {
		items += len(a.Records)
		for _, r := range a.Records {
			size += len(r.Data)
		}
	}
	return items <= commitItems && size <= commitBytes
}

// commit commits b: in one store commit when it fits, else with
// commitLarge. s.mu must be held.
func (s *State) commit(ctx context.Context, b store.Batch) error {
	if fits(b) {
		return s.st.Commit(ctx, b)
	}
	return s.commitLarge(ctx, b)
}

// commitLarge stages b, then finishes it; see above.
func (s *State) commitLarge(ctx context.Context, b store.Batch) error {
	blobs := encodeBulk(b)
	for i := 0; i < len(blobs); i += bulkPerStage {
		var puts []store.Put
		for j := i; j < min(i+bulkPerStage, len(blobs)); j++ {
			puts = append(puts, store.Put{Entity: store.Entity{Kind: "meta", ID: bulkMarker + "/" + strconv.Itoa(j), Version: 1, Data: blobs[j]}})
		}
		if i+bulkPerStage >= len(blobs) {
			puts = append(puts, store.Put{Entity: store.Entity{Kind: "meta", ID: bulkMarker, Version: 1, Data: []byte("pending " + strconv.Itoa(len(blobs)))}})
		}
		if err := s.st.Commit(ctx, store.Batch{Puts: puts}); err != nil {
			return fmt.Errorf("stage bulk write: %w", err)
		}
	}
	// Decided: finish it whatever the caller's context does now.
	s.bulkPending = true
	if err := s.finishBulk(context.WithoutCancel(ctx), b); err != nil {
		return err
	}
	return nil
}

// finishBulk is step 2 for b. s.mu must be held.
func (s *State) finishBulk(ctx context.Context, b store.Batch) error {
	var claims []store.Batch
	for c := range chunks(len(b.Claim), bulkItems) {
		claims = append(claims, store.Batch{Claim: b.Claim[c[0]:c[1]]})
	}
	if err := s.commitParallel(ctx, claims); err != nil {
		if errors.Is(err, store.ErrKeyTaken) {
			// Nothing of the write is in the logs yet: give it up. The
			// claims made meanwhile name holders that never came to be:
			// the next write of those numbers frees them as stale.
			s.abandonBulk(ctx)
		}
		return fmt.Errorf("bulk write claims: %w", err)
	}
	// The records past the gap and the unclaims are independent of each
	// other and invisible until the last commit: commit them from a few
	// goroutines, so that one commit's fsync overlaps the next one's work
	// (Badger groups concurrent commits into one log write).
	var (
		last  store.Batch
		parts []store.Batch
	)
	for _, a := range b.Appends {
		if len(a.Records) == 0 {
			continue
		}
		rest := a.Records[1:]
		for len(rest) > 0 {
			n, size := 0, 0
			for n < len(rest) && n < bulkItems && (n == 0 || size+len(rest[n].Data) <= bulkBytes) {
				size += len(rest[n].Data)
				n++
			}
			parts = append(parts, store.Batch{Appends: []store.Append{{Origin: a.Origin, Records: rest[:n], AllowGap: true}}})
			rest = rest[n:]
		}
		last.Appends = append(last.Appends, store.Append{Origin: a.Origin, Records: a.Records[:1]})
	}
	for c := range chunks(len(b.Unclaim), bulkItems) {
		parts = append(parts, store.Batch{Unclaim: b.Unclaim[c[0]:c[1]]})
	}
	if err := s.commitParallel(ctx, parts); err != nil {
		return fmt.Errorf("bulk write records: %w", err)
	}
	last.Puts = append(append([]store.Put(nil), b.Puts...), store.Put{Entity: store.Entity{Kind: "meta", ID: bulkMarker, Version: 1, Data: []byte("done")}})
	if err := s.st.Commit(ctx, last); err != nil {
		return fmt.Errorf("bulk write: %w", err)
	}
	s.bulkPending = false
	return nil
}

// bulkWorkers is how many of a bulk write's commits run at once.
const bulkWorkers = 3

// commitParallel commits every batch of parts, bulkWorkers at a time, and
// returns the first error (the others still run to their end: every part
// is idempotent, and the write is finished again from its staging).
func (s *State) commitParallel(ctx context.Context, parts []store.Batch) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan store.Batch)
	)
	for range min(bulkWorkers, len(parts)) {
		wg.Go(func() {
			for b := range next {
				if err := s.st.Commit(ctx, b); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, b := range parts {
		next <- b
	}
	close(next)
	wg.Wait()
	return first
}

// abandonBulk marks a staged write that cannot finish (a card claim lost
// before any record was written) as abandoned.
func (s *State) abandonBulk(ctx context.Context) {
	err := s.st.Commit(ctx, store.Batch{Puts: []store.Put{{Entity: store.Entity{Kind: "meta", ID: bulkMarker, Version: 1, Data: []byte("abandoned")}}}})
	if err != nil {
		s.log.Warn("hubstate: marking an abandoned bulk write failed", "err", err)
		return
	}
	s.bulkPending = false
}

// recoverBulk finishes a staged write left pending by a crash or a store
// error. s.mu must be held.
func (s *State) recoverBulk(ctx context.Context) error {
	m, err := s.st.Get(ctx, "meta", bulkMarker)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hubstate: read bulk marker: %w", err)
	}
	n, ok := strings.CutPrefix(string(m.Data), "pending ")
	if !ok {
		return nil
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return access.Errorf(access.Invalid, "hubstate: bulk marker %q malformed", m.Data)
	}
	var blobs [][]byte
	for i := range count {
		e, err := s.st.Get(ctx, "meta", bulkMarker+"/"+strconv.Itoa(i))
		if err != nil {
			return fmt.Errorf("hubstate: read staged bulk write %d/%d: %w", i, count, err)
		}
		blobs = append(blobs, e.Data)
	}
	b, err := decodeBulk(blobs)
	if err != nil {
		return err
	}
	s.log.Warn("hubstate: finishing a bulk write interrupted before it was applied", "chunks", count)
	s.bulkPending = true
	if err := s.finishBulk(ctx, b); err != nil {
		return fmt.Errorf("hubstate: finish interrupted bulk write: %w", err)
	}
	return nil
}

// chunks yields [from, to) ranges of at most size covering n.
func chunks(n, size int) func(func([2]int) bool) {
	return func(yield func([2]int) bool) {
		for i := 0; i < n; i += size {
			if !yield([2]int{i, min(i+size, n)}) {
				return
			}
		}
	}
}

// Staging encoding: a stream of items, each a tag byte then fields:
// 'r' origin seq lane data (a record), 'c' namespace key owner (a claim),
// 'u' namespace key owner (an unclaim); strings and data are
// uvarint-length-prefixed, seq a uvarint. Items never straddle blobs.

func encodeBulk(b store.Batch) [][]byte {
	var blobs [][]byte
	var cur []byte
	str := func(v []byte, s string) []byte {
		v = binary.AppendUvarint(v, uint64(len(s)))
		return append(v, s...)
	}
	emit := func(item []byte) {
		if len(cur) > 0 && len(cur)+len(item) > bulkChunk {
			blobs = append(blobs, cur)
			cur = nil
		}
		if cur == nil {
			cur = make([]byte, 0, max(bulkChunk, len(item)))
		}
		cur = append(cur, item...)
	}
	var item []byte
	for _, a := range b.Appends {
		for _, r := range a.Records {
			item = append(item[:0], 'r')
			item = str(item, a.Origin)
			item = binary.AppendUvarint(item, r.Seq)
			item = append(item, byte(r.Lane))
			item = str(item, string(r.Data))
			emit(item)
		}
	}
	for tag, cs := range map[byte][]store.Claim{'c': b.Claim, 'u': b.Unclaim} {
		for _, c := range cs {
			item = append(item[:0], tag)
			item = str(item, c.Namespace)
			item = str(item, c.Key)
			item = str(item, c.Owner)
			emit(item)
		}
	}
	for _, p := range b.Puts {
		item = append(item[:0], 'p')
		item = str(item, p.Entity.Kind)
		item = str(item, p.Entity.ID)
		item = binary.AppendUvarint(item, p.Entity.Version)
		item = str(item, string(p.Entity.Data))
		if p.IfVersion != nil {
			item = append(item, 1)
			item = binary.AppendUvarint(item, *p.IfVersion)
		} else {
			item = append(item, 0)
		}
		emit(item)
	}
	if len(cur) > 0 {
		blobs = append(blobs, cur)
	}
	return blobs
}

func decodeBulk(blobs [][]byte) (store.Batch, error) {
	var b store.Batch
	bad := access.Errorf(access.Invalid, "hubstate: staged bulk write malformed")
	idx := map[string]int{}
	for _, p := range blobs {
		for len(p) > 0 {
			tag := p[0]
			p = p[1:]
			str := func() (string, bool) {
				n, k := binary.Uvarint(p)
				if k <= 0 || uint64(len(p)-k) < n {
					return "", false
				}
				v := string(p[k : k+int(n)])
				p = p[k+int(n):]
				return v, true
			}
			switch tag {
			case 'r':
				origin, ok := str()
				if !ok {
					return b, bad
				}
				seq, k := binary.Uvarint(p)
				if k <= 0 || len(p) < k+1 {
					return b, bad
				}
				lane := store.Lane(p[k])
				p = p[k+1:]
				data, ok := str()
				if !ok {
					return b, bad
				}
				i, seen := idx[origin]
				if !seen {
					i = len(b.Appends)
					idx[origin] = i
					b.Appends = append(b.Appends, store.Append{Origin: origin})
				}
				b.Appends[i].Records = append(b.Appends[i].Records, store.Record{Seq: seq, Lane: lane, Data: []byte(data)})
			case 'p':
				kind, ok1 := str()
				id, ok2 := str()
				ver, k := binary.Uvarint(p)
				if !ok1 || !ok2 || k <= 0 {
					return b, bad
				}
				p = p[k:]
				data, ok3 := str()
				if !ok3 || len(p) < 1 {
					return b, bad
				}
				put := store.Put{Entity: store.Entity{Kind: kind, ID: id, Version: ver, Data: []byte(data)}}
				flag := p[0]
				p = p[1:]
				if flag == 1 {
					v, k := binary.Uvarint(p)
					if k <= 0 {
						return b, bad
					}
					p = p[k:]
					put.IfVersion = &v
				}
				b.Puts = append(b.Puts, put)
			case 'c', 'u':
				ns, ok1 := str()
				key, ok2 := str()
				owner, ok3 := str()
				if !ok1 || !ok2 || !ok3 {
					return b, bad
				}
				c := store.Claim{Namespace: ns, Key: key, Owner: owner}
				if tag == 'c' {
					b.Claim = append(b.Claim, c)
				} else {
					b.Unclaim = append(b.Unclaim, c)
				}
			default:
				return b, bad
			}
		}
	}
	return b, nil
}
