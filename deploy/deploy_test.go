package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

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

// load parses every document of every YAML file under k8s/, by kind and name.
func load(t *testing.T) map[string]doc {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string]doc{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var d doc
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if str(t, d, "apiVersion") == "" || str(t, d, "kind") == "" {
				t.Fatalf("%s: a document without apiVersion or kind", f)
			}
			key := str(t, d, "kind") + "/" + str(t, d, "metadata", "name")
			if key == "Kustomization/" {
				for _, r := range get(t, d, "resources").([]any) {
					if _, err := os.Stat(filepath.Join("k8s", r.(string))); err != nil {
						t.Errorf("kustomization lists a missing file: %v", err)
					}
				}
			}
			out[key] = d
		}
	}
	return out
}

func container(t *testing.T, d doc, path ...any) doc {
	t.Helper()
	return get(t, d, append(path, "containers", 0)...).(doc)
}

func envRef(t *testing.T, c doc, name string) (value string, secret string) {
	t.Helper()
	for _, e := range get(t, c, "env").([]any) {
		if str(t, e, "name") == name {
			if ref, ok := get(t, e, "valueFrom", "secretKeyRef").(doc); ok {
				return "", str(t, ref, "name") + "/" + str(t, ref, "key")
			}
			return str(t, e, "value"), ""
		}
	}
	return "", ""
}

// imageRef is an image pinned to a version tag (not "latest").
var imageRef = regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9][\w.-]*$`)

func TestKubernetesManifests(t *testing.T) {
	m := load(t)
	for _, want := range []string{"Deployment/recommender", "Service/recommender", "HorizontalPodAutoscaler/recommender",
		"PodDisruptionBudget/recommender", "CronJob/recommender-backfill", "StatefulSet/qdrant", "Service/qdrant",
		"PodDisruptionBudget/qdrant", "PersistentVolumeClaim/arxiv-snapshot"} {
		if m[want] == nil {
			t.Fatalf("missing %s", want)
		}
	}

	dep := m["Deployment/recommender"]
	labels := get(t, dep, "spec", "template", "metadata", "labels").(doc)
	if sel := get(t, dep, "spec", "selector", "matchLabels").(doc); str(t, sel, "app.kubernetes.io/name") != str(t, labels, "app.kubernetes.io/name") {
		t.Error("deployment selector does not match its pod labels")
	}
	c := container(t, dep, "spec", "template", "spec")
	image := str(t, c, "image")
	if !imageRef.MatchString(image) {
		t.Errorf("image %q is not pinned to a version", image)
	}
	if num(t, c, "ports", 0, "containerPort") != 50051 || str(t, c, "ports", 0, "name") != "grpc" {
		t.Errorf("container port: %v", get(t, c, "ports"))
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if num(t, c, probe, "grpc", "port") != 50051 {
			t.Errorf("%s is not a gRPC probe on 50051: %v", probe, get(t, c, probe))
		}
	}
	if s := str(t, c, "readinessProbe", "grpc", "service"); s != "recommender.v1.RecommenderService" {
		t.Errorf("readiness probes service %q", s)
	}
	if get(t, c, "resources", "requests", "cpu") == nil || get(t, c, "resources", "requests", "memory") == nil {
		t.Error("no resource requests")
	}
	for env, want := range map[string]string{"EMBEDDING_API_KEY": "recommender-secrets/embedding-api-key",
		"QDRANT_API_KEY": "recommender-secrets/qdrant-api-key", "RECOMMENDER_API_KEYS": "recommender-secrets/api-keys"} {
		if _, secret := envRef(t, c, env); secret != want {
			t.Errorf("%s comes from %q, want the Secret %s", env, secret, want)
		}
	}
	if v, _ := envRef(t, c, "RECOMMENDER_METRICS_ADDR"); !strings.HasSuffix(v, ":9464") || num(t, c, "ports", 1, "containerPort") != 9464 ||
		str(t, dep, "spec", "template", "metadata", "annotations", "prometheus.io/port") != "9464" {
		t.Errorf("metrics: RECOMMENDER_METRICS_ADDR %q, ports %v", v, get(t, c, "ports"))
	}
	if v, _ := envRef(t, c, "RECOMMENDER_STORE"); v != "qdrant" {
		t.Errorf("RECOMMENDER_STORE = %q", v)
	}
	if v, _ := envRef(t, c, "QDRANT_URL"); v != "http://qdrant:6334" {
		t.Errorf("QDRANT_URL = %q, want the qdrant Service's gRPC port", v)
	}
	args := get(t, c, "args").([]any)
	i := slices.Index(args, any("--shutdown-timeout"))
	if i < 0 || i+1 >= len(args) {
		t.Fatal("args do not set --shutdown-timeout")
	}
	shutdown, err := time.ParseDuration(args[i+1].(string))
	if err != nil {
		t.Fatal(err)
	}
	if grace := time.Duration(num(t, dep, "spec", "template", "spec", "terminationGracePeriodSeconds")) * time.Second; grace <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not longer than the shutdown timeout %v", grace, shutdown)
	}

	if !slices.Contains(args, any("--max-connection-age")) {
		t.Error("args do not set --max-connection-age: clients would never reach replicas added later")
	}
	// The HTTP API and page: listening on all interfaces, a named port, and in the Service.
	if v, _ := envRef(t, c, "RECOMMENDER_HTTP_ADDR"); v != "0.0.0.0:8080" || !hasPort(t, c, "http", 8080, "containerPort") {
		t.Errorf("HTTP: RECOMMENDER_HTTP_ADDR %q, ports %v", v, get(t, c, "ports"))
	}

	svc := m["Service/recommender"]
	if str(t, svc, "spec", "ports", 0, "targetPort") != "grpc" || str(t, svc, "spec", "selector", "app.kubernetes.io/name") != "recommender" ||
		!hasPort(t, svc, "spec", "http", 8080, "port") {
		t.Errorf("service: %v", get(t, svc, "spec"))
	}
	hpa := m["HorizontalPodAutoscaler/recommender"]
	if str(t, hpa, "spec", "scaleTargetRef", "kind") != "Deployment" || str(t, hpa, "spec", "scaleTargetRef", "name") != "recommender" ||
		num(t, hpa, "spec", "minReplicas") < 2 {
		t.Errorf("hpa: %v", get(t, hpa, "spec"))
	}
	if pdb := m["PodDisruptionBudget/recommender"]; str(t, pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/name") != "recommender" {
		t.Error("pdb selects no recommender pods")
	}

	cron := m["CronJob/recommender-backfill"]
	if str(t, cron, "spec", "concurrencyPolicy") != "Forbid" {
		t.Error("backfill CronJob may overlap: concurrencyPolicy is not Forbid")
	}
	bc := container(t, cron, "spec", "jobTemplate", "spec", "template", "spec")
	if args := get(t, bc, "args").([]any); str(t, bc, "image") != image || str(t, bc, "args", 0) != "backfill" ||
		!slices.Contains(args, any("recommender:50051")) || !slices.Contains(args, any("--checkpoint")) {
		t.Errorf("backfill container: %v", bc)
	}
	if _, secret := envRef(t, bc, "RECOMMENDER_API_KEY"); secret != "recommender-secrets/backfill-api-key" {
		t.Errorf("backfill API key from %q", secret)
	}
	// The checkpoint is written to the snapshot volume: the claim exists and the non-root user
	// can write it.
	pod := get(t, cron, "spec", "jobTemplate", "spec", "template", "spec").(doc)
	claim := str(t, pod, "volumes", 0, "persistentVolumeClaim", "claimName")
	if m["PersistentVolumeClaim/"+claim] == nil || num(t, pod, "securityContext", "fsGroup") != num(t, pod, "securityContext", "runAsUser") {
		t.Errorf("backfill volume: claim %q defined %v, securityContext %v", claim, m["PersistentVolumeClaim/"+claim] != nil, get(t, pod, "securityContext"))
	}

	sts := m["StatefulSet/qdrant"]
	qcn := container(t, sts, "spec", "template", "spec")
	if !imageRef.MatchString(str(t, qcn, "image")) || str(t, sts, "spec", "volumeClaimTemplates", 0, "metadata", "name") != "storage" ||
		str(t, qcn, "volumeMounts", 0, "mountPath") != "/qdrant/storage" {
		t.Errorf("qdrant statefulset: image %q, volumes %v", str(t, qcn, "image"), get(t, sts, "spec", "volumeClaimTemplates"))
	}
	if _, secret := envRef(t, qcn, "QDRANT__SERVICE__API_KEY"); secret != "recommender-secrets/qdrant-api-key" {
		t.Errorf("qdrant API key from %q", secret)
	}
	qsc := get(t, sts, "spec", "template", "spec", "securityContext")
	if get(t, qsc, "runAsNonRoot") != true || num(t, qsc, "runAsUser") == 0 || num(t, qsc, "fsGroup") == 0 ||
		!strings.HasSuffix(str(t, qcn, "image"), "-unprivileged") {
		t.Errorf("qdrant runs as root: securityContext %v, image %q", qsc, str(t, qcn, "image"))
	}
	if pdb := m["PodDisruptionBudget/qdrant"]; str(t, pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/name") != "qdrant" ||
		num(t, pdb, "spec", "maxUnavailable") != 1 {
		t.Errorf("qdrant PDB: %v", pdb)
	}
	var ports []int
	for _, p := range get(t, m["Service/qdrant"], "spec", "ports").([]any) {
		ports = append(ports, num(t, p, "port"))
	}
	if !slices.Contains(ports, 6334) {
		t.Errorf("qdrant service ports %v lack gRPC 6334", ports)
	}
}

// hasPort says whether the ports list at path holds one named name with number in field.
func hasPort(t *testing.T, d any, path ...any) bool {
	t.Helper()
	n := len(path)
	name, number, field := path[n-3].(string), path[n-2].(int), path[n-1].(string)
	list, _ := get(t, d, append(path[:n-3:n-3], "ports")...).([]any)
	for _, p := range list {
		if str(t, p, "name") == name && num(t, p, field) == number {
			return true
		}
	}
	return false
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
