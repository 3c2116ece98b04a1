package apierr_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The domain errors, and the pipeline that returns them, link no transport: gRPC statuses are
// built by internal/server alone.
func TestNoTransportInTheDomain(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps",
		"github.com/paperrec/recommender/internal/apierr", "github.com/paperrec/recommender/internal/recommend").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc") || strings.HasPrefix(pkg, "google.golang.org/genproto") {
			t.Errorf("%s is linked by the domain errors or the pipeline", pkg)
		}
	}
}
