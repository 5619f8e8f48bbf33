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
// Revocations win every merge: a removed grant, a membership revocation, a
// disable, a checkout, a cancellation and a deletion can never be undone by
// a concurrent change. They also travel first: each origin numbers its
// deltas in lanes, and sessions send the priority lane (revocations)
// before the normal one, each in sequence order. A third lane, events,
// carries an origin's access events (KindEvent, see EventRecord) after
// both: a grow-only log keyed (origin, sequence) that changes no entity.
//
// A change is made like this (on a site, inside the Raft apply, with the
// stamp the leader put in the command):
//
//	d, err := writer.Make(stamp, replication.KindCard, "4711",
//		replication.DisableOp("lost"))
//	...
//	_, err = replica.Apply(d)
//
// and a link to a peer is driven like this (the transport is the caller's):
//
//	s, err := replication.NewSession(replication.SessionConfig{
//		Log: replica, Store: replica, Authorizer: auth, Clock: clock, Durable: durable})
//	for { m, ok, err := s.Next(); if !ok { break }; send(m) }   // and again after each event
//	err = s.Receive(msg)                                          // for each message received
//	s.MarkDurable(v)                                              // once applied deltas are durable
//
// Card numbers are unique across the platform by construction elsewhere
// (every number has one home that assigns it); when a merge still finds a
// number bound to two live holders, the Replica materialises the card as
// suspended for both and lists a Conflict.
//
// Nothing in this package is safe for concurrent use unless its
// documentation says so; Clock is.
package replication
