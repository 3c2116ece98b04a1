package apierr_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The domain errors, the pipeline and the application link no transport: gRPC statuses are
// built by internal/server alone, and the wire types stay there.
func TestNoTransportInTheDomain(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/paperrec/recommender/internal/apierr",
		"github.com/paperrec/recommender/internal/recommend", "github.com/paperrec/recommender/internal/app").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc") || strings.HasPrefix(pkg, "google.golang.org/genproto") ||
			strings.HasPrefix(pkg, "github.com/paperrec/recommender/gen/") {
			t.Errorf("%s is linked by the domain errors, the pipeline or the application", pkg)
		}
	}
}

// Each layer imports only the ones below it: the transport (internal/server) the application,
// the pipeline's and the store's types and the domain errors; the store contract nothing of
// ranking (fusion and every later stage are the pipeline's).
func TestLayers(t *testing.T) {
	const mod = "github.com/paperrec/recommender/"
	for _, tc := range []struct {
		pkg     string
		allowed []string
	}{
		{"internal/server", []string{"gen/recommender/v1", "internal/apierr", "internal/app", "internal/recommend", "internal/store"}},
		{"internal/store", []string{"internal/lexical"}},
	} {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, mod+tc.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, imp := range strings.Fields(string(out)) {
			if own, ok := strings.CutPrefix(imp, mod); ok && !slices.Contains(tc.allowed, own) {
				t.Errorf("%s imports %s; it may import %v", tc.pkg, own, tc.allowed)
			}
		}
	}
}
