// Package replication is how Gatehouse replicas (each site's Raft cluster,
// and the cloud hub) converge after changing state independently, for
// example while the WAN is down. It knows nothing of Raft, storage or HTTP:
// it imports only the domain package access and the standard library.
//
// The model is that of DESIGN.md §4 and docs/replication.md:
//
//   - every change carries a hybrid logical clock Stamp made by a Clock of
//     its origin; a Clock refuses remote stamps too far in the future (the
//     skew guard);
//   - state is made of conflict-free replicated data types, each with a
//     Merge that is commutative, associative and idempotent;
//   - changes travel as Deltas numbered per origin and lane, applied in
//     sequence order and idempotently by a Replica, which materialises the
//     access entities that decisions read;
//   - peers exchange deltas in a Session, a transport-neutral state machine
//     that starts from version vectors, sends exactly what the peer lacks,
//     revocations first, never past a gap, and acknowledges only what its
//     caller says is durable.
//
// Revocations win every merge: a removed grant, a disable, a checkout, a
// cancellation and a deletion can never be undone by a concurrent change.
package replication
