package deploy_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// These tests parse every deployment file and check the fields a typo would silently break:
// images, probes, ports, secret references, shutdown timing, the backfill's concurrency policy.

type doc = map[string]any

// get walks a parsed YAML document: string keys for maps, ints for lists.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		if v == nil {
			return nil
		}
		switch k := p.(type) {
		case string:
			m, ok := v.(doc)
			if !ok {
				t.Fatalf("at %v: not a map", path)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: not a list of more than %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func str(t *testing.T, v any, path ...any) string {
	t.Helper()
	s, _ := get(t, v, path...).(string)
	return s
}

func num(t *testing.T, v any, path ...any) int {
	t.Helper()
	n, _ := get(t, v, path...).(int)
	return n
}

func TestCompose(t *testing.T) {
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	q := get(t, d, "services", "qdrant").(doc)
	if !imageRef.MatchString(str(t, q, "image")) || !slices.Contains(get(t, q, "ports").([]any), any("127.0.0.1:6334:6334")) ||
		!strings.HasSuffix(str(t, q, "volumes", 0), ":/qdrant/storage") {
		t.Errorf("qdrant service (published on this host only): %v", q)
	}
	// Keys by default: both the service's and Qdrant's are required variables, never defaulted.
	required := regexp.MustCompile(`^\$\{(\w+):\?.+\}$`)
	if m := required.FindStringSubmatch(str(t, q, "environment", "QDRANT__SERVICE__API_KEY")); m == nil || m[1] != "QDRANT_API_KEY" {
		t.Errorf("Qdrant's API key is not required: %v", get(t, q, "environment"))
	}
	r := get(t, d, "services", "recommender").(doc)
	env := get(t, r, "environment").(doc)
	if str(t, env, "RECOMMENDER_STORE") != "qdrant" || str(t, env, "QDRANT_URL") != "http://qdrant:6334" ||
		str(t, r, "build", "dockerfile") != "deploy/Dockerfile" || !slices.Contains(get(t, r, "ports").([]any), any("50051:50051")) ||
		!slices.Contains(get(t, r, "ports").([]any), any("8080:8080")) {
		t.Errorf("recommender service: %v", r)
	}
	if m := required.FindStringSubmatch(str(t, env, "RECOMMENDER_API_KEYS")); m == nil || env["RECOMMENDER_ALLOW_UNAUTHENTICATED"] != nil ||
		str(t, env, "QDRANT_API_KEY") != "${QDRANT_API_KEY}" {
		t.Errorf("the recommender may run keyless or without Qdrant's key: %v", env)
	}
	for _, name := range []string{"qdrant", "recommender"} {
		if test, _ := get(t, d, "services", name, "healthcheck", "test").([]any); len(test) < 2 || test[0] != "CMD" {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	if str(t, r, "healthcheck", "test", 1) != "/recommender" || str(t, r, "healthcheck", "test", 2) != "health" ||
		str(t, r, "depends_on", "qdrant", "condition") != "service_healthy" {
		t.Errorf("recommender health: %v, depends on %v", get(t, r, "healthcheck"), get(t, r, "depends_on"))
	}
	if e := get(t, d, "services", "embeddings").(doc); !slices.Contains(get(t, e, "profiles").([]any), any("embeddings")) {
		t.Error("the embedding server is not optional (no profile)")
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if n := strings.Count(s, "\nFROM ") + strings.Count(s[:min(len(s), 5)], "FROM "); n < 2 {
		t.Errorf("%d stages, want a multi-stage build", n)
	}
	for _, want := range []string{"CGO_ENABLED=0", "USER nonroot", "EXPOSE 50051 8080 9464", "RECOMMENDER_GRPC_ADDR=0.0.0.0:50051",
		"RECOMMENDER_HTTP_ADDR=0.0.0.0:8080", `HEALTHCHECK --interval=10s --timeout=5s --retries=3 CMD ["/recommender", "health"`, "./cmd/recommender"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The Go version of the build stage matches go.mod's.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goVersion == nil || !strings.Contains(s, "FROM golang:"+string(goVersion[1])) {
		t.Errorf("build stage does not use Go %s", goVersion[1])
	}
}

// The build context leaves out what the image does not need, above all data directories.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for _, want := range []string{".git", "recommender-data/", "web/node_modules/", "!internal/demo/papers.jsonl"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
}
