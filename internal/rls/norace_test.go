//go:build !race

package rls_test

// raceEnabled is true when the race detector is on.
const raceEnabled = false
