package partition

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	accessv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/access/v1"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// TestSoak is the long variant (GATEHOUSE_PARTITION_LONG=1, `make
// partition`): round after round, the hub grants a new person a site
// group, then revokes it in one of three ways (disable, grant removal,
// membership revocation), randomly during a WAN cut, with the site
// re-granting the same membership at random and the link's latency
// changing; taps run at every node throughout. After every round every
// node denies once the site acknowledged; at the end both sides converge
// and the whole history passes the safety checker.
// GATEHOUSE_PARTITION_SEED replays a schedule; GATEHOUSE_PARTITION_ROUNDS
// sets the number of rounds (default 30).
func TestSoak(t *testing.T) {
	if testing.Short() || os.Getenv("GATEHOUSE_PARTITION_LONG") != "1" {
		t.Skip("long variant: set GATEHOUSE_PARTITION_LONG=1 (make partition)")
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("GATEHOUSE_PARTITION_SEED"), 10, 64); err == nil {
		seed = s
	}
	rounds := 30
	if n, err := strconv.Atoi(os.Getenv("GATEHOUSE_PARTITION_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	t.Logf("seed %d (GATEHOUSE_PARTITION_SEED=%d replays it), %d rounds", seed, seed, rounds)
	rng := rand.New(rand.NewPCG(seed, seed))

	e := openEnv(t)
	var (
		mu    sync.Mutex
		cards []access.CardNumber
	)
	tp, err := StartTapper(ctx, e.site, &e.hist, e.readers, func() []access.CardNumber {
		mu.Lock()
		defer mu.Unlock()
		return append([]access.CardNumber(nil), cards...)
	})
	must(t, err)
	t.Cleanup(tp.Stop)

	for i := range rounds {
		card := access.CardNumber(7500 + i)
		person, grant := e.hubPerson(card, fmt.Sprint("person ", i))
		waitFor(t, "the new person at every node", func() bool {
			for _, n := range e.site.Nodes() {
				if !n.Decide(card, access.ID(e.door), time.Now()).Grant {
					return false
				}
			}
			return true
		})
		mu.Lock()
		cards = append(cards, card)
		mu.Unlock()
		must(t, e.wan.SetLatency(rng.IntN(30)))

		cut := rng.IntN(2) == 0
		if cut {
			e.wan.Cut()
		}
		how := rng.IntN(3)
		ds := e.write(func(tx *hubstate.Tx) {
			switch how {
			case 0:
				tx.Change(replication.KindPerson, person, replication.DisableOp("inactive"))
			case 1:
				tx.Change(replication.KindGrant, grant, replication.RemoveGrantOp())
			default:
				tx.Change(replication.KindPerson, person, replication.RevokeOp(access.ID(e.group)))
			}
		})
		regrant := rng.IntN(2) == 0
		what := fmt.Sprintf("round %d: revocation %d at the hub (cut %v, re-grant at the site %v)", i, how, cut, regrant)
		revoked := []access.CardNumber{card}
		if how == 1 && regrant {
			// Removing one grant leaves the site's new grant of the same
			// membership: the card keeps its access, so this is no
			// revocation of the card.
			revoked = nil
		}
		ack := WatchAck(ctx, e.hub, e.site, ds[0], revoked, what, &e.hist)
		if regrant {
			e.propose(&raftv1.Command{Op: &raftv1.Command_PutGrant{PutGrant: &accessv1.Grant{Id: NewID(), HolderId: person, GroupId: e.group}}})
		}
		if cut {
			e.heal()
		}
		_, err := ack.Wait()
		must(t, err)
		if revoked == nil {
			continue
		}
		e.decideEverywhere(card, false, what)
	}
	must(t, e.wan.SetLatency(0))
	e.converge()
	waitFor(t, "taps after the last acknowledgement", func() bool {
		revs := e.hist.Revocations()
		last := revs[len(revs)-1]
		for _, tp := range e.hist.Taps() {
			if tp.At.After(last.Acked) {
				return true
			}
		}
		return false
	})
	tp.Stop()
	t.Logf("history: %d taps, %d revocations", len(e.hist.Taps()), len(e.hist.Revocations()))
	for _, v := range e.hist.Check() {
		t.Errorf("safety: %v", v)
	}
}
