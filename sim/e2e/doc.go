// Package e2e holds end-to-end tests through real components: a hub
// (cloud/hub, Badger store) with its Connect API over loopback HTTP and its
// mail going to an SMTP server on loopback, real in-process sites of 1 or 3
// edge nodes (Raft over TCP, Badger and bolt files, embedded MQTT brokers)
// replicating with it, and simulated readers, door controllers, kiosks and
// card dispensers (sim/device) speaking the MQTT protocol, cut off from
// their site through a sim/fault proxy. The package has no code of its
// own: only its tests — cardholders (cardholders_test.go, listed in
// docs/cardholders.md) and visitors from invitation to checkout, with the
// WAN up and down (visitors_test.go, docs/visitors.md), and what reaches
// each site of another site's people (scoping_test.go, docs/sync.md §4).
package e2e
