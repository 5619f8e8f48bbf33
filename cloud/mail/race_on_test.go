//go:build race

package mail

// raceOn: the race detector slows image decoding about tenfold.
const raceOn = true
