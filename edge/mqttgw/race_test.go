//go:build race

package mqttgw_test

// raceEnabled reports that the tests run under the race detector.
const raceEnabled = true
