package server_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/paperrec/recommender/internal/testutil"
)

// sample serves the shared arXiv sample to the tests that only read it, ingested once.
var sample testutil.SharedSample

func TestMain(m *testing.M) {
	code := m.Run()
	if err := sample.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "shared sample server:", err)
		code = 1
	}
	os.Exit(code)
}
