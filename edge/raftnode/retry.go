package raftnode

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Retrying while there is no leader.
//
// A call that found no leader, or a leader that is no longer one, waits
// before trying again, but not for a fixed time: it is woken as soon as
// this node sees the leader change (a Raft LeaderObservation: an election
// won here or elsewhere, or the leader lost), so that after a failover the
// first retry goes out within microseconds of the new leader being known
// instead of up to one backoff later. Between changes the backoff grows
// from retryBackoffMin to retryBackoffMax, so a node that cannot reach a
// leader that it believes alive does not spin.

const (
	retryBackoffMin = 2 * time.Millisecond
	retryBackoffMax = 100 * time.Millisecond
)

// leaderNews broadcasts leader changes: changed returns a channel that is
// closed at the next change.
type leaderNews struct {
	mu sync.Mutex
	ch chan struct{}
}

func (l *leaderNews) init() { l.ch = make(chan struct{}) }

// changed returns a channel closed at the next leader change. Take it
// before the attempt that may fail, so that a change during the attempt is
// not missed.
func (l *leaderNews) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ch
}

func (l *leaderNews) broadcast() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.ch)
	l.ch = make(chan struct{})
}

// runLeaderObserver turns Raft's leader observations into leaderNews
// broadcasts until the node stops.
func (n *Node) runLeaderObserver(ch <-chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case <-ch:
			n.leader.broadcast()
		case <-n.stopping:
			return
		}
	}
}

// retryWait waits before the next attempt of a call that found no usable
// leader: d, or less if the leader changes (news closes). It returns
// whether the wait was cut short by a change, ctx's error, or ErrClosed
// once the node stops (when stop is not nil).
func retryWait(ctx context.Context, d time.Duration, news <-chan struct{}, stop <-chan struct{}) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false, nil
	case <-news:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-stop:
		return false, ErrClosed
	}
}

// nextBackoff returns the backoff after a wait that ended as changed says.
func nextBackoff(cur time.Duration, changed bool) time.Duration {
	if changed {
		return retryBackoffMin
	}
	return min(2*cur, retryBackoffMax)
}
