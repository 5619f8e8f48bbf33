//go:build !race

package mail

const raceOn = false
