package hubstate

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/replication"
)

// RecordAckAt is RecordAck as if recorded at now, for tests.
func (s *State) RecordAckAt(ctx context.Context, peer string, v replication.Vector, now time.Time) error {
	return s.recordAck(ctx, peer, v, now)
}
