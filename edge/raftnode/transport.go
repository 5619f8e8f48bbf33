package raftnode

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// transportTimeout is the Raft transport's I/O timeout, and the longest a
// pipelined send may stay blocked.
const transportTimeout = 10 * time.Second

// Replication pipelines that cannot hang.
//
// With MaxRPCsInFlight above 1, hashicorp/raft (v1.8.0) replicates to each
// follower over a pipeline: one goroutine sends AppendEntries requests and
// hands each to the pipeline's response decoder through a small channel,
// another consumes the decoded responses. When the consumer stops (a
// response that is not a success, e.g. from a follower that restarted or
// that a timeout cut off, or a newer term), the decoder blocks handing it
// further responses, the hand-off channel fills, and the sender blocks in
// netPipeline.AppendEntries with nothing left to wake it: only the
// pipeline's Close would, and the blocked sender is the one that would call
// it. The follower then gets no more entries from this leader, and
// Raft.Shutdown, which waits for every replication goroutine, never
// returns (the shutdown hang that had pipelining disabled).
//
// pipeTransport wraps the TCP transport so that every pipeline it hands out
// is closed (unblocking its sender, which falls back to plain
// AppendEntries calls and reopens a pipeline later):
//   - when a send stays blocked for longer than the transport's I/O timeout,
//     past which a healthy pipeline would have failed the read of its
//     oldest response anyway; and
//   - all at once as soon as Raft is told to shut down, after which
//     no new pipeline is handed out (replication goes on without one).
type pipeTransport struct {
	*raft.NetworkTransport
	stall time.Duration

	mu     sync.Mutex
	closed bool
	pipes  map[*guardedPipeline]struct{}
}

func newPipeTransport(t *raft.NetworkTransport, stall time.Duration) *pipeTransport {
	return &pipeTransport{NetworkTransport: t, stall: stall, pipes: map[*guardedPipeline]struct{}{}}
}

// AppendEntriesPipeline implements raft.Transport.
func (t *pipeTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		// Raft treats this as "no pipelining" and replicates without one.
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	gp := &guardedPipeline{AppendPipeline: p, t: t}
	t.pipes[gp] = struct{}{}
	return gp, nil
}

// closePipelines closes every open pipeline and refuses new ones. It is
// safe to call more than once.
func (t *pipeTransport) closePipelines() {
	t.mu.Lock()
	t.closed = true
	pipes := make([]*guardedPipeline, 0, len(t.pipes))
	for p := range t.pipes {
		pipes = append(pipes, p)
	}
	t.mu.Unlock()
	for _, p := range pipes {
		_ = p.Close()
	}
}

// openPipelines returns how many pipelines are open (tests).
func (t *pipeTransport) openPipelines() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pipes)
}

// guardedPipeline is a pipeline whose blocked sends are bounded (see
// pipeTransport).
type guardedPipeline struct {
	raft.AppendPipeline
	t    *pipeTransport
	once sync.Once
}

// AppendEntries implements raft.AppendPipeline: a send still blocked after
// the stall bound closes the pipeline, which fails the send with
// raft.ErrPipelineShutdown.
func (p *guardedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	watchdog := time.AfterFunc(p.t.stall, func() { _ = p.Close() })
	defer watchdog.Stop()
	return p.AppendPipeline.AppendEntries(args, resp)
}

// Close implements raft.AppendPipeline; it is idempotent.
func (p *guardedPipeline) Close() error {
	var err error
	p.once.Do(func() {
		p.t.mu.Lock()
		delete(p.t.pipes, p)
		p.t.mu.Unlock()
		err = p.AppendPipeline.Close()
	})
	return err
}
