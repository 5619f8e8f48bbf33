package raftnode

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/gatehouse/gatehouse/access"
	edgev1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/edge/v1/edgev1connect"
	raftv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/raft/v1"
)

// LeaderHeader is the response header (error metadata) in which a node that
// is not the leader names the leader's API address, when it knows it.
const LeaderHeader = "Gatehouse-Leader-Api"

// ClusterHandler returns the path prefix and handler of this node's
// gatehouse.edge.v1.ClusterService, for the caller's HTTP server. Every call
// must carry "Authorization: Bearer <ClusterToken>"; others are refused with
// CodeUnauthenticated. Propose, Join and Leave are served by the leader; a
// follower (or a node that is not open) answers CodeFailedPrecondition with
// the leader's API address in [LeaderHeader], meaning nothing was done.
// RenewLease (the lease protocol, lease.go) currently answers
// CodeUnimplemented. The handler may be mounted before Open and is safe for
// concurrent use.
func (n *Node) ClusterHandler() (string, http.Handler) {
	return edgev1connect.NewClusterServiceHandler(clusterServer{n: n},
		connect.WithInterceptors(serverAuth(n.cfg.ClusterToken)),
		connect.WithReadMaxBytes(2*n.cfg.MaxBatchBytes+1<<20),
	)
}

// serverAuth refuses calls without the cluster token.
func serverAuth(token string) connect.UnaryInterceptorFunc {
	want := []byte("Bearer " + token)
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			got := []byte(req.Header().Get("Authorization"))
			if subtle.ConstantTimeCompare(got, want) != 1 {
				return nil, connect.NewError(connect.CodeUnauthenticated, ErrUnauthenticated)
			}
			return next(ctx, req)
		}
	}
}

// clientAuth adds the cluster token to outgoing calls.
func clientAuth(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// clusterServer serves ClusterService. The embedded handler answers
// CodeUnimplemented for RPCs added to the service before they are built here,
// so regenerating the protobuf never breaks the build.
type clusterServer struct {
	edgev1connect.UnimplementedClusterServiceHandler
	n *Node
}

var _ edgev1connect.ClusterServiceHandler = clusterServer{}

func (s clusterServer) Propose(ctx context.Context, req *connect.Request[edgev1.ProposeRequest]) (*connect.Response[edgev1.ProposeResponse], error) {
	res, err := s.n.serveLocal(func() ([]*edgev1.CommandResult, error) {
		cmds := req.Msg.GetCommands()
		if len(cmds) == 0 {
			return nil, nil
		}
		size, err := s.n.checkProposal(cmds)
		if err != nil {
			return nil, err
		}
		return s.n.proposeLocal(ctx, cmds, size)
	})
	if err != nil {
		return nil, s.n.connectError(err)
	}
	return connect.NewResponse(&edgev1.ProposeResponse{Results: res}), nil
}

func (s clusterServer) Join(ctx context.Context, req *connect.Request[edgev1.JoinRequest]) (*connect.Response[edgev1.JoinResponse], error) {
	var idx uint64
	_, err := s.n.serveLocal(func() ([]*edgev1.CommandResult, error) {
		var err error
		idx, err = s.n.joinLocal(req.Msg.GetNodeId(), req.Msg.GetRaftAddr(), req.Msg.GetApiAddr())
		return nil, err
	})
	if err != nil {
		return nil, s.n.connectError(err)
	}
	return connect.NewResponse(&edgev1.JoinResponse{Index: idx}), nil
}

func (s clusterServer) Leave(ctx context.Context, req *connect.Request[edgev1.LeaveRequest]) (*connect.Response[edgev1.LeaveResponse], error) {
	var idx uint64
	_, err := s.n.serveLocal(func() ([]*edgev1.CommandResult, error) {
		var err error
		idx, err = s.n.leaveLocal(req.Msg.GetNodeId())
		return nil, err
	})
	if err != nil {
		return nil, s.n.connectError(err)
	}
	return connect.NewResponse(&edgev1.LeaveResponse{Index: idx}), nil
}

// serveLocal runs fn if this node is open and leads; otherwise it returns
// ErrNotLeader without running it.
func (n *Node) serveLocal(fn func() ([]*edgev1.CommandResult, error)) ([]*edgev1.CommandResult, error) {
	if !n.isOpen() || n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	return fn()
}

// connectError converts err for the wire, adding the leader hint to
// "not the leader" answers. ErrClosed is sent as not-leader too: in both
// cases nothing was proposed and the caller should go elsewhere.
func (n *Node) connectError(err error) error {
	if errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	ce := connect.NewError(connectCode(err), err)
	if errors.Is(err, ErrNotLeader) && n.isOpen() {
		if _, id := n.raft.LeaderWithID(); id != "" && string(id) != n.cfg.NodeID {
			if m, ok := n.fsm.member(string(id)); ok && m.APIAddr != "" {
				ce.Meta().Set(LeaderHeader, m.APIAddr)
			}
		}
	}
	return ce
}

// client returns a ClusterService client for the node serving at addr.
func (n *Node) client(addr string) edgev1connect.ClusterServiceClient {
	n.clientsMu.Lock()
	defer n.clientsMu.Unlock()
	if c, ok := n.clients[addr]; ok {
		return c
	}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := edgev1connect.NewClusterServiceClient(n.httpClient, base,
		connect.WithInterceptors(clientAuth(n.cfg.ClusterToken)),
		connect.WithReadMaxBytes(2*n.cfg.MaxBatchBytes+1<<20),
	)
	n.clients[addr] = c
	return c
}

// errNoLeaderYet means the leader or its API address is not known here yet.
var errNoLeaderYet = errors.New("leader not known yet")

// leaderAPI returns the API address of the leader as this node sees it.
func (n *Node) leaderAPI() (string, error) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", errNoLeaderYet
	}
	if string(id) == n.cfg.NodeID {
		return "", fmt.Errorf("%w: this node was elected", errNoLeaderYet)
	}
	m, ok := n.fsm.member(string(id))
	if !ok || m.APIAddr == "" {
		return "", fmt.Errorf("%w: no API address recorded for leader %s", errNoLeaderYet, id)
	}
	return m.APIAddr, nil
}

// classifyRemote sorts an error from a ClusterService call: retry means
// nothing was done and the caller should try the leader again; otherwise
// the returned error is final. A call that broke after it was sent is
// ErrIndeterminate.
func classifyRemote(op string, err error) (retry bool, out error) {
	code := connect.CodeOf(err)
	switch {
	case code == connect.CodeFailedPrecondition:
		return true, err
	case errors.Is(err, syscall.ECONNREFUSED):
		return true, err
	case code == connect.CodeUnavailable, code == connect.CodeDeadlineExceeded,
		code == connect.CodeCanceled, code == connect.CodeUnknown:
		return false, fmt.Errorf("%w: %s: %w", ErrIndeterminate, op, err)
	case code == connect.CodeUnauthenticated:
		return false, fmt.Errorf("%w: %s: %w", ErrUnauthenticated, op, err)
	default:
		return false, &access.Error{Code: domainCode(code), Op: op, Err: err}
	}
}

// forwardPropose makes one attempt to propose cmds through the leader.
func (n *Node) forwardPropose(ctx context.Context, cmds []*raftv1.Command) ([]*edgev1.CommandResult, error, bool) {
	addr, err := n.leaderAPI()
	if err != nil {
		return nil, err, true
	}
	resp, err := n.client(addr).Propose(ctx, connect.NewRequest(&edgev1.ProposeRequest{Commands: cmds}))
	if err != nil {
		retry, err := classifyRemote("raftnode.Propose via "+addr, err)
		return nil, err, retry
	}
	res := resp.Msg.GetResults()
	if len(res) != len(cmds) {
		return nil, &access.Error{Code: access.Internal, Op: "raftnode.Propose",
			Msg: fmt.Sprintf("leader %s returned %d results for %d commands", addr, len(res), len(cmds))}, false
	}
	return res, nil, false
}

// Join adds nodeID as a voter at raftAddr and records apiAddr as its API
// address, on the leader (forwarded there from a follower, retrying until
// ctx ends). It returns the log index of the configuration change. Joining
// again with the same addresses is a no-op that returns the current
// configuration's index. Errors: [ErrAddressInUse] if raftAddr belongs to
// another node, [ErrNoLeader], [ErrIndeterminate], [ErrClosed], or
// access.Invalid for empty arguments. Safe for concurrent use.
func (n *Node) Join(ctx context.Context, nodeID, raftAddr, apiAddr string) (uint64, error) {
	return n.onLeader(ctx, "raftnode.Join", true,
		func() (uint64, error) { return n.joinLocal(nodeID, raftAddr, apiAddr) },
		func(c edgev1connect.ClusterServiceClient) (uint64, error) {
			resp, err := c.Join(ctx, connect.NewRequest(&edgev1.JoinRequest{NodeId: nodeID, RaftAddr: raftAddr, ApiAddr: apiAddr}))
			if err != nil {
				return 0, err
			}
			return resp.Msg.GetIndex(), nil
		})
}

// Leave removes nodeID from the cluster configuration, on the leader
// (forwarded there from a follower, retrying until ctx ends), and marks its
// membership record removed. It returns the log index of the configuration
// change. Removing the leader itself makes it step down once committed.
// Errors as for [Node.Join]. Safe for concurrent use.
func (n *Node) Leave(ctx context.Context, nodeID string) (uint64, error) {
	return n.leave(ctx, nodeID, true)
}

func (n *Node) leave(ctx context.Context, nodeID string, abortOnClose bool) (uint64, error) {
	return n.onLeader(ctx, "raftnode.Leave", abortOnClose,
		func() (uint64, error) { return n.leaveLocal(nodeID) },
		func(c edgev1connect.ClusterServiceClient) (uint64, error) {
			resp, err := c.Leave(ctx, connect.NewRequest(&edgev1.LeaveRequest{NodeId: nodeID}))
			if err != nil {
				return 0, err
			}
			return resp.Msg.GetIndex(), nil
		})
}

// onLeader runs local when this node leads and remote against the leader
// otherwise, retrying while there is no leader or the leader moved, until
// ctx ends (or the node closes, if abortOnClose).
func (n *Node) onLeader(ctx context.Context, op string, abortOnClose bool,
	local func() (uint64, error), remote func(edgev1connect.ClusterServiceClient) (uint64, error)) (uint64, error) {
	if n.raft == nil || (abortOnClose && n.state.Load() != stateOpen) {
		return 0, ErrClosed
	}
	var lastErr error
	backoff := retryBackoffMin
	for {
		news := n.leader.changed()
		if n.raft.State() == raft.Leader {
			idx, err := local()
			if !errors.Is(err, ErrNotLeader) {
				return idx, err
			}
			lastErr = err
		} else if addr, err := n.leaderAPI(); err != nil {
			lastErr = err
		} else {
			idx, err := remote(n.client(addr))
			if err == nil {
				return idx, nil
			}
			retry, err := classifyRemote(op+" via "+addr, err)
			if !retry {
				return 0, err
			}
			lastErr = err
		}
		stop := n.stopping
		if !abortOnClose {
			stop = nil
		}
		changed, err := retryWait(ctx, backoff, news, stop)
		switch {
		case errors.Is(err, ErrClosed):
			return 0, ErrClosed
		case err != nil:
			return 0, fmt.Errorf("%w: %s: %w (last: %v)", ErrNoLeader, op, err, lastErr)
		}
		backoff = nextBackoff(backoff, changed)
	}
}

// joinLocal adds a voter on the leader: first its membership record, so
// that every node that sees it as a voter can also reach its API, then the
// configuration change.
func (n *Node) joinLocal(nodeID, raftAddr, apiAddr string) (uint64, error) {
	if nodeID == "" || raftAddr == "" || apiAddr == "" {
		return 0, access.Errorf(access.Invalid, "raftnode: join needs node id, raft address and api address")
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, mapRaftErr(err)
	}
	isVoter := false
	for _, s := range cf.Configuration().Servers {
		switch {
		case s.ID == raft.ServerID(nodeID) && s.Address == raft.ServerAddress(raftAddr) && s.Suffrage == raft.Voter:
			isVoter = true
		case s.ID != raft.ServerID(nodeID) && s.Address == raft.ServerAddress(raftAddr):
			return 0, fmt.Errorf("%w: %s is node %s", ErrAddressInUse, raftAddr, s.ID)
		}
	}
	want := memberRecord{NodeID: nodeID, RaftAddr: raftAddr, APIAddr: apiAddr}
	rec, ok := n.fsm.member(nodeID)
	if !ok || rec != want {
		idx, err := n.applyMember(want)
		if err != nil {
			return 0, err
		}
		if isVoter {
			return idx, nil
		}
	} else if isVoter {
		return cf.Index(), nil
	}
	f := n.raft.AddVoter(raft.ServerID(nodeID), raft.ServerAddress(raftAddr), 0, n.cfg.ApplyTimeout)
	if err := n.await(f); err != nil {
		return 0, mapRaftErr(err)
	}
	n.log.Info("node joined", "joined", nodeID, "raft_addr", raftAddr, "api_addr", apiAddr, "index", f.Index())
	return f.Index(), nil
}

// leaveLocal removes a server on the leader and marks its record removed.
func (n *Node) leaveLocal(nodeID string) (uint64, error) {
	if nodeID == "" {
		return 0, access.Errorf(access.Invalid, "raftnode: leave needs a node id")
	}
	f := n.raft.RemoveServer(raft.ServerID(nodeID), 0, n.cfg.ApplyTimeout)
	if err := n.await(f); err != nil {
		return 0, mapRaftErr(err)
	}
	n.log.Info("node left", "left", nodeID, "index", f.Index())
	if rec, ok := n.fsm.member(nodeID); ok && !rec.Removed && nodeID != n.cfg.NodeID {
		rec.Removed = true
		if _, err := n.applyMember(rec); err != nil {
			n.log.Warn("mark membership record removed", "removed", nodeID, "err", err)
		}
	}
	return f.Index(), nil
}

// joinVia asks the cluster behind addr to add this node, following the
// leader hint of followers and retrying until ctx ends.
func (n *Node) joinVia(ctx context.Context, addr string) error {
	req := &edgev1.JoinRequest{NodeId: n.cfg.NodeID, RaftAddr: n.raftAddr, ApiAddr: n.cfg.APIAddr}
	target := addr
	backoff := 5 * time.Millisecond
	hops := 0
	var lastErr error
	for {
		resp, err := n.client(target).Join(ctx, connect.NewRequest(req))
		if err == nil {
			n.log.Info("joined cluster", "via", target, "index", resp.Msg.GetIndex())
			return nil
		}
		retry, cerr := classifyRemote("raftnode.Open join via "+target, err)
		if !retry && !errors.Is(cerr, ErrIndeterminate) {
			return cerr
		}
		lastErr = cerr
		var ce *connect.Error
		if errors.As(err, &ce) {
			if hint := ce.Meta().Get(LeaderHeader); hint != "" && hint != target && hops < 3 {
				target = hint
				hops++
				continue
			}
		}
		target, hops = addr, 0
		if err := n.sleep(ctx, backoff); err != nil {
			return fmt.Errorf("%w: join via %s: %w (last: %v)", ErrNoLeader, addr, err, lastErr)
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}
