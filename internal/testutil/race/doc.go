// Package race tells tests whether the race detector is on, so quality and numeric tests can
// leave the race-detector pass to the tests of concurrency. It imports nothing of the project,
// so any package's tests can use it.
package race
