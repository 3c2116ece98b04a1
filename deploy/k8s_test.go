package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// stack names the objects of one deployment of the service: the kustomize manifests and every
// rendering of the Helm chart are checked by the same rules.
type stack struct {
	app, qdrant, backfill, secret string
	embedding                     bool // an embedding provider is configured (its key is read from the Secret)
}

// loadManifests decodes every manifest under k8s/ and checks the kustomization lists them all.
func loadManifests(t *testing.T) objects {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	o := objects{}
	var listed []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := o.decode(f, b, "Kustomization")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range raw {
			var kust struct {
				APIVersion string   `json:"apiVersion"`
				Kind       string   `json:"kind"`
				Resources  []string `json:"resources"`
			}
			if err := yaml.UnmarshalStrict(k, &kust); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			listed = append(listed, kust.Resources...)
		}
	}
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(listed, base) {
			t.Errorf("kustomization does not list %s", base)
		}
	}
	for _, r := range listed {
		if _, err := os.Stat(filepath.Join("k8s", r)); err != nil {
			t.Errorf("kustomization lists a missing file: %v", err)
		}
	}
	return o
}

func TestKubernetesManifests(t *testing.T) {
	checkStack(t, loadManifests(t), stack{app: "recommender", qdrant: "qdrant", backfill: "recommender-backfill",
		secret: "recommender-secrets", embedding: true})
}

// A misspelt field fails decoding: the strictness the checks above rely on.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 3}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: \"http\"}]}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x, name: y}\n",
	} {
		if _, err := (objects{}).decode("doc", []byte(doc)); err == nil {
			t.Errorf("decoded without an error:\n%s", doc)
		}
	}
}

func checkStack(t *testing.T, o objects, s stack) {
	t.Helper()
	dep := object[*appsv1.Deployment](t, o, "Deployment", s.app)
	pod := dep.Spec.Template
	if dep.Spec.Selector == nil || !selects(dep.Spec.Selector.MatchLabels, pod.Labels) {
		t.Error("deployment selector does not match its pod labels")
	}
	c := pod.Spec.Containers[0]
	if !imageRef.MatchString(c.Image) {
		t.Errorf("image %q is not pinned to a version", c.Image)
	}
	if containerPort(c, "grpc") != 50051 || containerPort(c, "http") != 8080 || containerPort(c, "metrics") != 9464 {
		t.Errorf("container ports: %v", c.Ports)
	}
	if p := c.ReadinessProbe; p == nil || p.GRPC == nil || p.GRPC.Port != 50051 || p.GRPC.Service == nil || *p.GRPC.Service != "recommender.v1.RecommenderService" {
		t.Errorf("readiness is not the recommender's gRPC health on 50051: %+v", p)
	}
	// Liveness asks the overall health: a store outage makes the pod unready, not restarted.
	if p := c.LivenessProbe; p == nil || p.GRPC == nil || p.GRPC.Port != 50051 || (p.GRPC.Service != nil && *p.GRPC.Service != "") {
		t.Errorf("liveness is not the overall gRPC health on 50051: %+v", p)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: %+v", c.Resources)
	}
	want := map[string]string{"RECOMMENDER_API_KEYS": s.secret + "/api-keys", "QDRANT_API_KEY": s.secret + "/qdrant-api-key"}
	if s.embedding {
		want["EMBEDDING_API_KEY"] = s.secret + "/embedding-api-key"
	}
	for env, ref := range want {
		if got := secretRef(c, env); got != ref {
			t.Errorf("%s comes from %q, want the Secret %s", env, got, ref)
		}
	}
	if v := envValue(c, "RECOMMENDER_METRICS_ADDR"); v != "0.0.0.0:9464" || pod.Annotations["prometheus.io/port"] != "9464" ||
		pod.Annotations["prometheus.io/scrape"] != "true" {
		t.Errorf("metrics: RECOMMENDER_METRICS_ADDR %q, annotations %v", v, pod.Annotations)
	}
	if v := envValue(c, "RECOMMENDER_STORE"); v != "qdrant" {
		t.Errorf("RECOMMENDER_STORE = %q", v)
	}
	if v := envValue(c, "QDRANT_URL"); v != "http://"+s.qdrant+":6334" {
		t.Errorf("QDRANT_URL = %q, want the %s Service's gRPC port", v, s.qdrant)
	}
	if v := envValue(c, "RECOMMENDER_HTTP_ADDR"); v != "0.0.0.0:8080" {
		t.Errorf("RECOMMENDER_HTTP_ADDR = %q: the HTTP API would not be reachable from outside the pod", v)
	}
	i := slices.Index(c.Args, "--shutdown-timeout")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatal("args do not set --shutdown-timeout")
	}
	shutdown, err := time.ParseDuration(c.Args[i+1])
	if err != nil {
		t.Fatal(err)
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not longer than the shutdown timeout %v", g, shutdown)
	}
	if !slices.Contains(c.Args, "--max-connection-age") {
		t.Error("args do not set --max-connection-age: clients would never reach replicas added later")
	}
	if sc := pod.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the service may run as root")
	}

	svc := object[*corev1.Service](t, o, "Service", s.app)
	if !selects(svc.Spec.Selector, pod.Labels) || !servicePort(svc, "grpc", 50051, "grpc") || !servicePort(svc, "http", 8080, "http") {
		t.Errorf("service: %+v", svc.Spec)
	}
	if hpa, ok := o["HorizontalPodAutoscaler/"+s.app].(*autoscalingv2.HorizontalPodAutoscaler); ok {
		if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != s.app || hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
			t.Errorf("hpa: %+v", hpa.Spec)
		}
	} else if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Errorf("neither an autoscaler nor two replicas: %v", dep.Spec.Replicas)
	}
	if pdb := object[*policyv1.PodDisruptionBudget](t, o, "PodDisruptionBudget", s.app); pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, pod.Labels) {
		t.Error("the PDB selects no recommender pods")
	}

	if s.backfill != "" {
		cron := object[*batchv1.CronJob](t, o, "CronJob", s.backfill)
		if cron.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Error("backfill CronJob may overlap: concurrencyPolicy is not Forbid")
		}
		bpod := cron.Spec.JobTemplate.Spec.Template.Spec
		bc := bpod.Containers[0]
		if bc.Image != c.Image || len(bc.Args) == 0 || bc.Args[0] != "backfill" || !slices.Contains(bc.Args, s.app+":50051") || !slices.Contains(bc.Args, "--checkpoint") {
			t.Errorf("backfill container: image %q, args %q", bc.Image, bc.Args)
		}
		if ref := secretRef(bc, "RECOMMENDER_API_KEY"); ref != s.secret+"/backfill-api-key" {
			t.Errorf("backfill API key from %q", ref)
		}
		// The checkpoint is written to the snapshot volume: the claim exists and the non-root
		// user can write it.
		if len(bpod.Volumes) == 0 || bpod.Volumes[0].PersistentVolumeClaim == nil {
			t.Fatalf("backfill has no volume claim: %+v", bpod.Volumes)
		}
		claim := bpod.Volumes[0].PersistentVolumeClaim.ClaimName
		sc := bpod.SecurityContext
		if o["PersistentVolumeClaim/"+claim] == nil || sc == nil || sc.FSGroup == nil || sc.RunAsUser == nil || *sc.FSGroup != *sc.RunAsUser {
			t.Errorf("backfill volume: claim %q defined %v, securityContext %+v", claim, o["PersistentVolumeClaim/"+claim] != nil, sc)
		}
	}

	sts := object[*appsv1.StatefulSet](t, o, "StatefulSet", s.qdrant)
	qpod := sts.Spec.Template
	qc := qpod.Spec.Containers[0]
	if !imageRef.MatchString(qc.Image) || !strings.HasSuffix(qc.Image, "-unprivileged") || len(sts.Spec.VolumeClaimTemplates) == 0 ||
		sts.Spec.VolumeClaimTemplates[0].Name != "storage" || len(qc.VolumeMounts) == 0 || qc.VolumeMounts[0].MountPath != "/qdrant/storage" {
		t.Errorf("qdrant statefulset: image %q, volumes %+v", qc.Image, sts.Spec.VolumeClaimTemplates)
	}
	if ref := secretRef(qc, "QDRANT__SERVICE__API_KEY"); ref != s.secret+"/qdrant-api-key" {
		t.Errorf("qdrant API key from %q", ref)
	}
	if sc := qpod.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
		sc.FSGroup == nil || *sc.FSGroup == 0 {
		t.Errorf("qdrant runs as root: %+v", sc)
	}
	if pdb := object[*policyv1.PodDisruptionBudget](t, o, "PodDisruptionBudget", s.qdrant); pdb.Spec.Selector == nil ||
		!selects(pdb.Spec.Selector.MatchLabels, qpod.Labels) || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("qdrant PDB: %+v", pdb.Spec)
	}
	if qsvc := object[*corev1.Service](t, o, "Service", s.qdrant); !selects(qsvc.Spec.Selector, qpod.Labels) || !servicePort(qsvc, "grpc", 6334, "") {
		t.Errorf("qdrant service: %+v", qsvc.Spec)
	}
	// No two workloads' pods are selected by one selector: a Service or PDB of the recommender
	// must not pick Qdrant's pods, or the other way round.
	if selects(dep.Spec.Selector.MatchLabels, qpod.Labels) || selects(sts.Spec.Selector.MatchLabels, pod.Labels) {
		t.Error("the recommender's and Qdrant's selectors overlap")
	}
}

// servicePort says whether the Service has a port of that name and number, aimed at target
// (a named container port) unless target is "".
func servicePort(svc *corev1.Service, name string, port int32, target string) bool {
	for _, p := range svc.Spec.Ports {
		if p.Name == name && p.Port == port && (target == "" || p.TargetPort.String() == target) {
			return true
		}
	}
	return false
}

// imageRef is an image pinned to a version tag (not "latest").
var imageRef = regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9][\w.-]*$`)
