package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The serving binary links no test double and none of the lab's measuring code: those are
// recommender-lab's.
func TestServingBinaryLinksNoTestDouble(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		ours := strings.HasPrefix(pkg, "github.com/paperrec/recommender/")
		if pkg == "net/http/httptest" || ours && (strings.HasSuffix(pkg, "test") || strings.Contains(pkg, "/testutil") ||
			strings.HasSuffix(pkg, "/internal/eval") || strings.HasSuffix(pkg, "/internal/synth")) {
			t.Errorf("the recommender binary links %s", pkg)
		}
	}
}

// A measuring command asked of the service's binary says where it went.
func TestLabCommandsSayWhereTheyWent(t *testing.T) {
	t.Parallel()
	for _, c := range labCommands {
		if _, errOut, code := runCLI(t, c, "--help"); code != 0 {
			t.Errorf("recommender-lab %s --help: exit %d\n%s", c, code, errOut)
		}
		out, err := exec.Command(binary, c).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "go run ./cmd/recommender-lab "+c) {
			t.Errorf("recommender %s: %v\n%s", c, err, out)
		}
	}
}
