// Package access is the Gatehouse domain: identifiers, sites, zones, doors,
// schedules, access groups and visitor profiles, people, cards, grants,
// visits, visitor types, passages and access events, together with the pure
// decision function that answers "may this credential open this door now?".
//
// The package imports the Go standard library only and performs no I/O
// beyond reading time zone data through time.LoadLocation. Storage,
// replication, transport and devices live in other packages that import this
// one; nothing here knows about them.
//
// The central pieces are:
//
//   - ID, a ULID made where an entity is created, and IDGen, a monotonic
//     generator of them;
//   - the entity structs (Site, Zone, Door, Schedule, Group, Person, Card,
//     Grant, Visit, VisitorType), each with a Validate method;
//   - State, an in-memory index of one site that the edge keeps in step with
//     its replicated state machine;
//   - Decide, the door decision, which reads state through the narrow Reader
//     interface and fails closed;
//   - the Wiegand codecs for the H10301, Corporate 1000 and H10304 formats.
//
// Errors carry a Code (see Error and ErrorCode) so that each transport can map
// them to its own status codes, and the sentinel errors listed in errors.go
// can be matched with errors.Is.
package access
