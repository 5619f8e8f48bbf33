package replication

import (
	"github.com/gatehouse/gatehouse/access"
)

// Sentinel errors. Each is an *access.Error carrying the code shown, so
// access.ErrorCode reports that code for any error that wraps one of them.
// Match them with errors.Is.
var (
	// ErrClockSkew (invalid) reports a remote stamp further ahead of the
	// local wall clock than the clock's MaxSkew allows. The stamp, and the
	// change carrying it, must be refused; see SkewError for the details.
	ErrClockSkew error = &access.Error{Code: access.Invalid, Msg: "stamp too far ahead of local clock"}
	// ErrBadEncoding (invalid) reports bytes or text that are not the
	// canonical encoding of a value of this package: truncated, trailing
	// data, an unknown version, a non-minimal varint, an out-of-range field.
	ErrBadEncoding error = &access.Error{Code: access.Invalid, Msg: "malformed encoding"}
	// ErrBadStamp (invalid) reports a stamp with a malformed origin, a
	// negative wall time, or an empty origin on a non-zero stamp.
	ErrBadStamp error = &access.Error{Code: access.Invalid, Msg: "malformed stamp"}
	// ErrBadDelta (invalid) reports a delta that breaks a rule of its
	// schema: an unknown kind or operation, a field the kind does not have,
	// a malformed value, a lane that does not match its operations.
	ErrBadDelta error = &access.Error{Code: access.Invalid, Msg: "malformed delta"}
	// ErrGap (conflict) reports a delta whose sequence number is not the
	// next one after what was applied from its source: applying it would
	// go past a gap.
	ErrGap error = &access.Error{Code: access.Conflict, Msg: "sequence gap"}
	// ErrUnauthorized (denied) reports a batch holding a delta that its
	// origin may not make, as judged by the session's Authorizer. Nothing
	// of such a batch is applied.
	ErrUnauthorized error = &access.Error{Code: access.Denied, Msg: "origin not allowed to make this change"}
	// ErrBadBatch (invalid) reports a batch that is not well formed: empty,
	// deltas of another source than the batch names, or sequence numbers
	// that do not follow each other.
	ErrBadBatch error = &access.Error{Code: access.Invalid, Msg: "malformed batch"}
	// ErrSession (invalid) reports a message that the session cannot take
	// in its current state, such as a batch before the opening hello.
	ErrSession error = &access.Error{Code: access.Invalid, Msg: "unexpected session message"}
	// ErrAuditChain (conflict) reports an audit chain that does not verify:
	// a record whose hash does not match its contents, a missing or
	// reordered record, or two different records with one sequence number.
	ErrAuditChain error = &access.Error{Code: access.Conflict, Msg: "audit chain broken"}
	// ErrLogConflict (conflict) reports two different entries under one
	// (origin, sequence) key in a grow-only log.
	ErrLogConflict error = &access.Error{Code: access.Conflict, Msg: "two entries under one log key"}
)
