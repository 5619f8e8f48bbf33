// Package raftnode is the replicated log of an edge site: one hashicorp/raft
// node whose log and stable store live in bolt (raft-boltdb/v2, file raft.db),
// whose snapshots live in a raft.FileSnapshotStore (directory snapshots/) and
// whose state machine lives in Badger v4 (directory state/). A higher layer
// plugs the site's deterministic state machine in through [Applier]; this
// package owns everything between a caller's [Node.Propose] and the Applier's
// Apply: group commit, stamping, forwarding to the leader, membership,
// snapshots, and the restart rules that keep Badger consistent with the log.
//
// # Durability
//
// The Raft log in bolt is the durable record (it is fsynced on every append).
// Badger runs with SyncWrites off, so after a power loss it may have lost its
// most recent transactions. Every committed entry is applied in Badger
// transactions that also write the entry's index under [ReservedPrefix]
// "applied" (in the last of them, see ErrTxnTooBig below), so Badger always
// knows exactly which prefix of the log it holds. On [Node.Open]:
//
//  1. Badger's applied index A is read.
//  2. If the newest local snapshot has index S > A (Badger lost writes that
//     the log no longer holds, or a restore was interrupted), Badger is
//     restored from that snapshot first.
//  3. [Applier.Load] is called so in-memory indexes match Badger.
//  4. Raft starts with NoSnapshotRestoreOnStart and replays the log from S+1;
//     the state machine skips every entry at or below A and applies the rest.
//
// A snapshot is a one-goroutine Badger backup stream (DB.Backup's format)
// behind an 8-byte header. The backup is taken while Apply keeps running, so
// its content may be newer than the snapshot's Raft index; that is harmless
// because the applied index travels inside it: after a restore, the entries
// between the snapshot's index and the applied index it carries are skipped.
// Restoring drops all of Badger, marks the restore in progress (durably),
// loads the stream, clears the mark and syncs; a node that crashes in the
// middle restores again from its local snapshot on the next Open.
//
// If an entry's writes do not fit in one Badger transaction
// (badger.ErrTxnTooBig), the commands are split over several transactions and
// only the last one writes the applied index. A crash between them replays the
// whole entry, so an Applier must be idempotent per (index, command). A single
// command that does not fit alone is refused with an "invalid" result; the
// split points depend on Badger's MemTableSize, which must be the same on
// every node of a site.
//
// A storage error while applying (anything but ErrTxnTooBig) stops the state
// machine: every later entry is answered with [ErrStateMachineFailed], no
// snapshot is taken, and the node must be restarted, which replays the log
// from Badger's last applied index.
//
// # Log format
//
// Every Raft log entry of type LogCommand starts with a one-byte tag:
//
//	0x01 entry   the rest is a protobuf gatehouse.raft.v1.Entry; version 1 is
//	             the only version known; any other version is applied as an
//	             error result for every command and changes nothing but the
//	             applied index. An entry with no commands is valid: each new
//	             leader proposes one so that followers' applied index reaches
//	             the term's first index (the no-op hashicorp/raft never hands
//	             to the state machine).
//	0x02 member  the rest is a JSON membership record
//	             {"node_id","raft_addr","api_addr","removed"}; it maps a node
//	             ID to the API address its ClusterService is served on and is
//	             stored under ReservedPrefix "member/<node_id>".
//
// Any other tag is rejected with [ErrBadEntry] without touching the state.
//
// # Badger keys
//
// Keys starting with [ReservedPrefix] belong to this package; an Applier must
// not write them.
//
// # Cluster API
//
// Every node serves gatehouse.edge.v1.ClusterService ([Node.ClusterHandler])
// behind a shared bearer token. Followers forward Propose, Join and Leave to
// the leader's API address, found through the membership records; a follower
// asked directly answers FailedPrecondition with the leader's API address in
// the "Gatehouse-Leader-Api" header.
//
// # Concurrency
//
// A Node is safe for concurrent use after Open returns. Apply, Restore and the
// Applier's methods run on Raft's single FSM goroutine.
package raftnode
