// Package cloud is the Gatehouse hub: the merged picture of every site, the
// console and invite APIs, email, and federation connectors. Its
// sub-packages are named after what they do or wrap: hub (the process),
// web (the console assets).
//
// The hub is authoritative for nothing physical; it never imports the edge
// or the hardware protocols (asserted by deps_test.go at the repository root).
package cloud
