package hubstate

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/cloud/store"
	"github.com/gatehouse/gatehouse/replication"
)

// RecordAckAt is RecordAck as if recorded at now, for tests.
func (s *State) RecordAckAt(ctx context.Context, peer string, v replication.Vector, now time.Time) error {
	return s.recordAck(ctx, peer, v, now)
}

// ScopeApart makes Apply commit the scoped records a site's batch brings
// in a commit of their own (as when they do not fit the batch's commit)
// until the returned function is called.
func ScopeApart() (restore func()) {
	arrivalFits = func(store.Batch) bool { return false }
	return func() { arrivalFits = fitsOne }
}
