package race

import "testing"

// Skip skips a quality or numeric test in a binary built with -race: it measures figures, not
// concurrency, and runs several times slower there. The full test command runs every test once
// more without -race (README, "Tests and measurements").
func Skip(tb testing.TB) {
	tb.Helper()
	if Enabled {
		tb.Skip("quality or numeric test: runs without -race")
	}
}
