// Package acs holds what the simulators of third-party access-control
// systems share: the sim clock (injectable, with skew), the fault layer
// (lost replies after a commit, 429s, expired credentials, out-of-band
// operator edits, clock skew; seeded, so runs repeat), its admin endpoint,
// request-size limits, JSON state files and the server runner.
//
// The simulators themselves are in its subpackages, named after the shape
// of the API they imitate:
//
//   - sim/acs/hateoas: a JSON REST API followed by links, long-polled events
//     and a change feed ("gallagher-style");
//   - sim/acs/xmlcmd: an XML command API with login sessions, always HTTP
//     200 with result codes in the body, and an overwriting event log
//     ("netbox-style").
//
// `gatehouse sim acs` (cmd/gatehouse) runs either one; docs/sim.md
// describes both.
package acs
