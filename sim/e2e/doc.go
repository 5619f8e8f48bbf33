// Package e2e holds end-to-end tests of cardholders through real doors: a
// hub (cloud/hub, Badger store) with its Connect API over loopback HTTP,
// real in-process sites of 1 or 3 edge nodes (Raft over TCP, Badger and
// bolt files, embedded MQTT brokers) replicating with it, and simulated
// readers and door controllers (sim/device) speaking the MQTT protocol,
// cut off from their site through a sim/fault proxy. The package has no
// code of its own: only its tests, listed in docs/cardholders.md.
package e2e
