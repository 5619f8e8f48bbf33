// Package gatehouse is the root of the Gatehouse module: an offline-first
// access-control and visitor-management platform. The code lives in the
// sub-packages (see README.md, "Project structure"); this package holds
// only the test that guards the architecture's import arrows.
package gatehouse
