// Package sim is the field engineers' simulator: simulated devices that
// speak the real device protocols to a real site, scenario files, and load
// generation. The work is in its subpackages:
//
//   - sim/scenario: the scenario format, a small line-based text (docs/sim.md);
//   - sim/device: simulated devices over MQTT (readers today);
//   - sim/runner: runs scenarios and load against a site through its local
//     API and its MQTT brokers;
//   - sim/bench: the benchmarks behind `gatehouse bench`;
//   - sim/scenarios: the scenarios themselves, which the tests of this
//     package run against a real 3-node site started in-process.
//
// `gatehouse sim` (cmd/gatehouse) is the command line.
package sim
