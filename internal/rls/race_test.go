//go:build race

package rls_test

// raceEnabled is true when the race detector is on; it slows the pure-Go
// SQLite engine several times, so the proofs try fewer random values.
const raceEnabled = true
