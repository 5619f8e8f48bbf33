package raftnode

import (
	"errors"

	"connectrpc.com/connect"

	"github.com/gatehouse/gatehouse/access"
)

// Sentinel errors. Each is an *access.Error carrying the code shown, so
// access.ErrorCode reports that code for any error wrapping one of them.
// Match them with errors.Is.
var (
	// ErrClosed (unavailable) reports a call on a node that is not open or is
	// closing.
	ErrClosed error = &access.Error{Code: access.Unavailable, Op: "raftnode", Msg: "node is closed"}
	// ErrNotLeader (unavailable) reports that this node is not the leader and
	// did not propose anything; retrying on the leader is safe.
	ErrNotLeader error = &access.Error{Code: access.Unavailable, Op: "raftnode", Msg: "not the leader"}
	// ErrNoLeader (unavailable) reports that no leader could be reached before
	// the context ended; nothing was proposed.
	ErrNoLeader error = &access.Error{Code: access.Unavailable, Op: "raftnode", Msg: "no leader reachable"}
	// ErrIndeterminate (unavailable) reports that a proposal may or may not
	// have been committed (leadership lost, node shut down or the forwarded
	// call broke after it was sent). Retry with the same request IDs; the
	// Applier deduplicates them.
	ErrIndeterminate error = &access.Error{Code: access.Unavailable, Op: "raftnode", Msg: "outcome unknown, retry with the same request id"}
	// ErrTooLarge (invalid) reports a proposal with more commands or bytes
	// than one entry may carry, or a command whose writes do not fit in one
	// Badger transaction.
	ErrTooLarge error = &access.Error{Code: access.Invalid, Op: "raftnode", Msg: "too large"}
	// ErrUnsupportedVersion (invalid) is the result of every command of an
	// entry whose format version this node does not know; nothing of the
	// entry was applied.
	ErrUnsupportedVersion error = &access.Error{Code: access.Invalid, Op: "raftnode", Msg: "unsupported entry version"}
	// ErrBadEntry (invalid) reports a log entry that cannot be decoded; it
	// was skipped without changing the state.
	ErrBadEntry error = &access.Error{Code: access.Invalid, Op: "raftnode", Msg: "malformed log entry"}
	// ErrStateMachineFailed (internal) reports that applying stopped after a
	// storage error; the node must be restarted.
	ErrStateMachineFailed error = &access.Error{Code: access.Internal, Op: "raftnode", Msg: "state machine stopped after a storage error"}
	// ErrUnauthenticated (denied) reports a ClusterService call refused for a
	// missing or wrong cluster token.
	ErrUnauthenticated error = &access.Error{Code: access.Denied, Op: "raftnode", Msg: "missing or wrong cluster token"}
	// ErrAddressInUse (conflict) reports a join whose Raft address belongs to
	// another node ID.
	ErrAddressInUse error = &access.Error{Code: access.Conflict, Op: "raftnode", Msg: "raft address used by another node"}
)

// connectCode maps a domain code to a Connect code, the one table for this
// transport.
func connectCode(err error) connect.Code {
	switch {
	case errors.Is(err, ErrNotLeader):
		return connect.CodeFailedPrecondition
	case errors.Is(err, ErrUnauthenticated):
		return connect.CodeUnauthenticated
	}
	switch access.ErrorCode(err) {
	case access.Invalid:
		return connect.CodeInvalidArgument
	case access.NotFound:
		return connect.CodeNotFound
	case access.Conflict:
		return connect.CodeAlreadyExists
	case access.Denied:
		return connect.CodePermissionDenied
	case access.Unavailable:
		return connect.CodeUnavailable
	default:
		return connect.CodeInternal
	}
}

// domainCode maps a Connect code back to a domain code.
func domainCode(c connect.Code) access.Code {
	switch c {
	case connect.CodeInvalidArgument, connect.CodeOutOfRange:
		return access.Invalid
	case connect.CodeNotFound:
		return access.NotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return access.Conflict
	case connect.CodePermissionDenied, connect.CodeUnauthenticated:
		return access.Denied
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled,
		connect.CodeFailedPrecondition, connect.CodeResourceExhausted:
		return access.Unavailable
	default:
		return access.Internal
	}
}
