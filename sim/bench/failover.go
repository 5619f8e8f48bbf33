package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/edge/node"
	"github.com/gatehouse/gatehouse/edge/raftnode"
)

func init() {
	Default.Register(Bench{
		Name: "failover",
		Help: "leader crash in a 3-node site under writes: time to a new leader and to the first acknowledged write",
		Run:  runFailover,
	})
}

// failoverParams sizes the failover benchmark.
type failoverParams struct {
	rounds int           // leader kills
	settle time.Duration // writes between a restart's catch-up and the next kill
}

var (
	failoverFull  = failoverParams{rounds: 5, settle: time.Second}
	failoverQuick = failoverParams{rounds: 2, settle: 300 * time.Millisecond}
	// failoverTest, when set, replaces failoverQuick (tests keep `make test` short).
	failoverTest *failoverParams
)

// failoverWriters is how many clients write during the benchmark. More than
// one, so that a call stuck on the dead leader does not hide a survivor
// that already accepts writes.
const failoverWriters = 4

// failoverPeople is how many people the writers' grants are spread over.
const failoverPeople = 100

// failoverCallTimeout bounds one write call; a timed-out call is retried.
const failoverCallTimeout = 2 * time.Second

// runFailover measures how long a site takes to accept writes again after
// its leader crashes. A 3-node site with default Raft timings runs writers
// that propose through any running node and retry on error. Each round
// kills the leader (benchSite.crash: its Raft connections are cut, then it
// is closed without leaving; a bare Close would hand leadership over
// gracefully, which is not what a crash does), measures the time from the
// kill to a new leader known on a survivor and to the first write that was
// started after the kill and acknowledged through a survivor, then
// restarts the killed node from its data dir on its old addresses and
// waits until it has caught up.
// The floor is the configured heartbeat timeout: no survivor can conclude
// that the leader is dead before it has heard nothing for that long.
func runFailover(ctx context.Context, opt Options, emit func(Result)) error {
	p := failoverFull
	if opt.Quick {
		p = failoverQuick
		if failoverTest != nil {
			p = *failoverTest
		}
	}
	dir, cleanup, err := benchDir(opt.Dir, "failover")
	if err != nil {
		return err
	}
	defer cleanup()
	site, err := startSite(ctx, dir, 3, opt.Log, true)
	if err != nil {
		return err
	}
	defer site.close()
	li, err := site.leader(ctx)
	if err != nil {
		return err
	}
	data, err := setupData(ctx, site.nodes[li], site.siteID, failoverPeople)
	if err != nil {
		return err
	}

	var (
		live     atomic.Pointer[[]*node.Node] // where writers send their calls
		killed   atomic.Pointer[node.Node]    // the node killed in this round
		killAt   atomic.Int64                 // UnixNano of the kill; 0 outside a round
		firstAck atomic.Int64                 // UnixNano of the round's first write acknowledged after the kill
		acks     atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	// setLive points the writers at every running node but except.
	setLive := func(except int) {
		var ns []*node.Node
		for i, nd := range site.nodes {
			if nd != nil && i != except {
				ns = append(ns, nd)
			}
		}
		live.Store(&ns)
	}
	setLive(-1)
	var down <-chan error // the killed node's Close, while it runs
	defer func() {
		if down != nil {
			<-down
		}
	}()
	wctx, wcancel := context.WithCancel(ctx)
	defer func() { wcancel(); close(stop); wg.Wait() }()
	for i := range failoverWriters {
		wg.Go(func() {
			w := newGrantWriter(data, i)
			for k := i; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				ns := *live.Load()
				nd := ns[k%len(ns)]
				cmd, _ := w.command()
				start := time.Now().UnixNano()
				cctx, cancel := context.WithTimeout(wctx, failoverCallTimeout)
				_, err := nd.Propose(cctx, cmd)
				cancel()
				if err != nil {
					// Retried at once with a new command, through the next node.
					continue
				}
				acks.Add(1)
				if at := killAt.Load(); at != 0 && start >= at && nd != killed.Load() {
					firstAck.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		})
	}

	floor := float64(raftnode.DefaultHeartbeatTimeout) / float64(time.Millisecond)
	var elections, firsts []time.Duration
	for rnd := range p.rounds {
		// Writes flowing before the kill.
		before := acks.Load()
		if err := waitUntil(ctx, 30*time.Second, "writes before the kill", func() bool { return acks.Load() >= before+20 }); err != nil {
			return err
		}
		if err := sleepCtx(ctx, p.settle); err != nil {
			return err
		}
		li, err := site.leader(ctx)
		if err != nil {
			return err
		}
		victim := site.nodes[li]
		victimID := site.cfgs[li].NodeID

		// The kill: writers stop choosing the victim, then it goes down.
		killed.Store(victim)
		firstAck.Store(0)
		setLive(li)
		// The survivors log their view of the crash at length; what matters
		// here is measured.
		lvl := site.logLvl.Level()
		site.logLvl.Set(quiet)
		t0 := time.Now()
		killAt.Store(t0.UnixNano())
		if down, err = site.crash(li); err != nil {
			return err
		}

		var election time.Duration
		err = waitUntil(ctx, 60*time.Second, "a new leader", func() bool {
			for _, nd := range site.nodes {
				if nd == nil {
					continue
				}
				if id := nd.Raft().Status().LeaderID; id != "" && id != victimID {
					election = time.Since(t0)
					return true
				}
			}
			return false
		})
		if err != nil {
			return err
		}
		if election < raftnode.DefaultHeartbeatTimeout/2 {
			// No survivor can give up on a silent leader that soon: the
			// leadership was handed over, so this was no crash.
			return fmt.Errorf("new leader %v after the kill of %s, under half the heartbeat timeout: the kill was not a crash", election, victimID)
		}
		if err := waitUntil(ctx, 60*time.Second, "the first write after the kill", func() bool { return firstAck.Load() != 0 }); err != nil {
			return err
		}
		first := time.Duration(firstAck.Load() - t0.UnixNano())
		killAt.Store(0)
		elections, firsts = append(elections, election), append(firsts, first)
		opt.Log.Info("failover: round", "round", rnd+1, "killed", victimID,
			"election_ms", round(ms(election)), "first_write_ms", round(ms(first)))

		// Restart the victim from its files and wait until it has caught up.
		if err := <-down; err != nil {
			opt.Log.Warn("failover: closing the killed node", "node", victimID, "err", err)
		}
		down = nil
		if err := site.restart(ctx, li); err != nil {
			return err
		}
		setLive(-1)
		if err := waitCaughtUp(ctx, site, li); err != nil {
			return err
		}
		site.logLvl.Set(lvl)
	}

	emit(NewResult("failover", "election_ms_p50", ms(Percentile(elections, 0.50)), "ms", floor))
	emit(NewResult("failover", "election_ms_max", ms(Percentile(elections, 1)), "ms", floor))
	emit(NewResult("failover", "first_write_ms_p50", ms(Percentile(firsts, 0.50)), "ms", floor))
	emit(NewResult("failover", "first_write_ms_max", ms(Percentile(firsts, 1)), "ms", floor))
	return nil
}

// waitCaughtUp waits until node i knows the leader and has applied what
// the leader had applied when the wait began.
func waitCaughtUp(ctx context.Context, site *benchSite, i int) error {
	li, err := site.leader(ctx)
	if err != nil {
		return err
	}
	target := site.nodes[li].Raft().Status().AppliedIndex
	return waitUntil(ctx, 60*time.Second, "the restarted node to catch up", func() bool {
		st := site.nodes[i].Raft().Status()
		return st.LeaderID != "" && st.AppliedIndex >= target
	})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
