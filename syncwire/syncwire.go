// Package syncwire converts replication session messages to and from the
// sync protocol's wire form (gatehouse.sync.v1), strictly: the one mapping
// both ends of the link use, the hub's sync service (cloud/syncserver) and
// the site's uplink (edge/uplink). docs/sync.md.
package syncwire

import (
	"github.com/gatehouse/gatehouse/access"
	syncv1 "github.com/gatehouse/gatehouse/proto/gen/gatehouse/sync/v1"
	"github.com/gatehouse/gatehouse/replication"
)

// MaxBatchDeltas is the most deltas one Batch message may carry.
const MaxBatchDeltas = 4096

// ErrBadMessage (invalid) reports a wire message that is not a well-formed
// session message: no kind, a malformed vector or delta, an unknown lane,
// too many deltas, or an origin that is not the sender's.
var ErrBadMessage error = &access.Error{Code: access.Invalid, Msg: "malformed sync message"}

// ToWire returns the wire form of a session message sent by origin.
func ToWire(origin string, m replication.Message) (*syncv1.SessionMessage, error) {
	out := &syncv1.SessionMessage{Origin: origin}
	switch m.Type {
	case replication.MsgHello, replication.MsgAck:
		v, err := m.Vector.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if m.Type == replication.MsgHello {
			out.Kind = &syncv1.SessionMessage_Hello{Hello: &syncv1.Hello{Vector: v}}
		} else {
			out.Kind = &syncv1.SessionMessage_Ack{Ack: &syncv1.Ack{Vector: v}}
		}
	case replication.MsgBatch:
		b, err := BatchToWire(m.Source, m.Deltas)
		if err != nil {
			return nil, err
		}
		out.Kind = &syncv1.SessionMessage_Batch{Batch: b}
	case replication.MsgDigest:
		b, err := replication.MarshalDigests(m.Digests)
		if err != nil {
			return nil, err
		}
		out.Kind = &syncv1.SessionMessage_Digest{Digest: &syncv1.Digest{Entries: b}}
	default:
		return nil, access.Errorf(access.Invalid, "sync: message type %s: %w", m.Type, ErrBadMessage)
	}
	return out, nil
}

// BatchToWire returns the wire form of a batch of deltas of src.
func BatchToWire(src replication.Source, ds []replication.Delta) (*syncv1.Batch, error) {
	b := &syncv1.Batch{SourceOrigin: src.Origin, Lane: wireLane(src.Lane), Deltas: make([][]byte, len(ds))}
	for i, d := range ds {
		data, err := d.MarshalBinary()
		if err != nil {
			return nil, err
		}
		b.Deltas[i] = data
	}
	return b, nil
}

func wireLane(l replication.Lane) syncv1.Lane {
	switch l {
	case replication.LanePriority:
		return syncv1.Lane_LANE_PRIORITY
	case replication.LaneNormal:
		return syncv1.Lane_LANE_NORMAL
	case replication.LaneEvents:
		return syncv1.Lane_LANE_EVENTS
	}
	return syncv1.Lane_LANE_UNSPECIFIED
}

// FromWire decodes a session message received from sender. It returns an
// invalid error wrapping ErrBadMessage when the message names another origin
// than sender, has no kind, or holds a malformed vector, lane, delta or
// digest.
func FromWire(sender string, pm *syncv1.SessionMessage) (replication.Message, error) {
	if pm == nil {
		return replication.Message{}, access.Errorf(access.Invalid, "sync: empty message: %w", ErrBadMessage)
	}
	if pm.GetOrigin() != sender {
		return replication.Message{}, access.Errorf(access.Invalid, "sync: message of origin %q from %q: %w", pm.GetOrigin(), sender, ErrBadMessage)
	}
	switch k := pm.GetKind().(type) {
	case *syncv1.SessionMessage_Hello:
		v, err := VectorFromWire(k.Hello.GetVector())
		return replication.Message{Type: replication.MsgHello, Vector: v}, err
	case *syncv1.SessionMessage_Ack:
		v, err := VectorFromWire(k.Ack.GetVector())
		return replication.Message{Type: replication.MsgAck, Vector: v}, err
	case *syncv1.SessionMessage_Batch:
		src, ds, err := BatchFromWire(k.Batch)
		return replication.Message{Type: replication.MsgBatch, Source: src, Deltas: ds}, err
	case *syncv1.SessionMessage_Digest:
		es, err := replication.UnmarshalDigests(k.Digest.GetEntries())
		if err != nil {
			return replication.Message{}, access.Errorf(access.Invalid, "sync: digest: %w: %w", ErrBadMessage, err)
		}
		return replication.Message{Type: replication.MsgDigest, Digests: es}, nil
	}
	return replication.Message{}, access.Errorf(access.Invalid, "sync: message without hello, batch, ack or digest: %w", ErrBadMessage)
}

// VectorFromWire decodes a vector; empty bytes are the empty vector.
func VectorFromWire(b []byte) (replication.Vector, error) {
	v := replication.Vector{}
	if len(b) == 0 {
		return v, nil
	}
	if err := v.UnmarshalBinary(b); err != nil {
		return nil, access.Errorf(access.Invalid, "sync: vector: %w: %w", ErrBadMessage, err)
	}
	return v, nil
}

// BatchFromWire decodes a batch: its source and its deltas, each strict.
// It does not check that the deltas are of the source or consecutive; the
// session does, refusing the batch whole.
func BatchFromWire(b *syncv1.Batch) (replication.Source, []replication.Delta, error) {
	if b == nil {
		return replication.Source{}, nil, access.Errorf(access.Invalid, "sync: no batch: %w", ErrBadMessage)
	}
	src := replication.Source{Origin: b.GetSourceOrigin()}
	switch b.GetLane() {
	case syncv1.Lane_LANE_PRIORITY:
		src.Lane = replication.LanePriority
	case syncv1.Lane_LANE_NORMAL:
		src.Lane = replication.LaneNormal
	case syncv1.Lane_LANE_EVENTS:
		src.Lane = replication.LaneEvents
	default:
		return replication.Source{}, nil, access.Errorf(access.Invalid, "sync: batch lane %v: %w", b.GetLane(), ErrBadMessage)
	}
	if err := src.Validate(); err != nil {
		return replication.Source{}, nil, access.Errorf(access.Invalid, "sync: batch source: %w: %w", ErrBadMessage, err)
	}
	if n := len(b.GetDeltas()); n == 0 || n > MaxBatchDeltas {
		return replication.Source{}, nil, access.Errorf(access.Invalid, "sync: batch of %d deltas, want 1..%d: %w", n, MaxBatchDeltas, ErrBadMessage)
	}
	ds := make([]replication.Delta, len(b.GetDeltas()))
	for i, data := range b.GetDeltas() {
		if err := ds[i].UnmarshalBinary(data); err != nil {
			return replication.Source{}, nil, access.Errorf(access.Invalid, "sync: batch of %s: delta %d: %w: %w", src, i, ErrBadMessage, err)
		}
	}
	return src, ds, nil
}
