package deploy_test

import (
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/recommender"

// render renders the chart as `helm install rel deploy/helm/recommender -f values` would (schema
// validation, strict templates), and decodes every object strictly.
func render(t *testing.T, values string) (objects, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	// helm install refuses a chart whose kubeVersion excludes the cluster's (the oldest with
	// gRPC probes on by default is 1.24).
	if !chartutil.IsCompatibleRange(chrt.Metadata.KubeVersion, "v1.24.0") || chartutil.IsCompatibleRange(chrt.Metadata.KubeVersion, "v1.23.9") {
		t.Fatalf("kubeVersion %q", chrt.Metadata.KubeVersion)
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		t.Fatal(err)
	}
	return renderValues(t, chrt, vals, nil)
}

// renderValues renders chrt with vals for a cluster of caps (nil: Helm's defaults).
func renderValues(t *testing.T, chrt *chart.Chart, vals chartutil.Values, caps *chartutil.Capabilities) (objects, error) {
	t.Helper()
	top, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{Name: "rel", Namespace: "papers", IsInstall: true}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Engine{Strict: true}.Render(chrt, top)
	if err != nil {
		return nil, err
	}
	o := objects{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if path.Ext(name) != ".yaml" {
			continue
		}
		if _, err := o.decode(name, []byte(files[name])); err != nil {
			t.Fatalf("%v\n%s", err, files[name])
		}
	}
	return o, nil
}

func mustRender(t *testing.T, values string) objects {
	t.Helper()
	o, err := render(t, values)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// full is a production configuration: bundled Qdrant, an embedding provider, the nightly backfill.
const full = `
secrets: {apiKeys: "write:w-key,read:r-key", qdrantApiKey: q-key, embeddingApiKey: e-key, backfillApiKey: w-key}
embedding: {baseURL: "https://api.openai.com/v1", model: text-embedding-3-small, dimensions: 1536}
backfill: {enabled: true}
`

var release = stack{app: "rel-recommender", qdrant: "rel-recommender-qdrant", backfill: "rel-recommender-backfill",
	secret: "rel-recommender", embedding: true}

func TestHelmChart(t *testing.T) {
	o := mustRender(t, full)
	checkStack(t, o, release)
	checkSecretRefs(t, o)
	sec := object[*corev1.Secret](t, o, "Secret", "rel-recommender")
	if sec.StringData["api-keys"] != "write:w-key,read:r-key" || sec.StringData["embedding-api-key"] != "e-key" {
		t.Errorf("secret: %v", slices.Sorted(maps.Keys(sec.StringData)))
	}
	c := object[*appsv1.Deployment](t, o, "Deployment", "rel-recommender").Spec.Template.Spec.Containers[0]
	for env, want := range map[string]string{"EMBEDDING_BASE_URL": "https://api.openai.com/v1", "EMBEDDING_MODEL": "text-embedding-3-small",
		"EMBEDDING_DIMENSIONS": "1536", "QDRANT_ALLOW_INSECURE_API_KEY": "true", "QDRANT_SHARDS": "3", "QDRANT_REPLICAS": "2",
		"RECOMMENDER_RATE_LIMIT": "200"} {
		if got := envValue(c, env); got != want {
			t.Errorf("%s = %q, want %q", env, got, want)
		}
	}
	if c.Image != "ghcr.io/paperrec/recommender:0.1.0" {
		t.Errorf("image %q: the tag should default to the chart's appVersion", c.Image)
	}
	want := []string{"CronJob/rel-recommender-backfill", "Deployment/rel-recommender", "HorizontalPodAutoscaler/rel-recommender",
		"PersistentVolumeClaim/rel-recommender-snapshot", "PodDisruptionBudget/rel-recommender", "PodDisruptionBudget/rel-recommender-qdrant",
		"Secret/rel-recommender", "Service/rel-recommender", "Service/rel-recommender-qdrant", "Service/rel-recommender-qdrant-headless",
		"StatefulSet/rel-recommender-qdrant"}
	if got := slices.Sorted(maps.Keys(o)); !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
}

// A changed key must roll the pods (keys are read at start): the pod template carries the
// Secret's checksum.
func TestHelmChartRollsOnKeyChange(t *testing.T) {
	sum := func(values string) string {
		return object[*appsv1.Deployment](t, mustRender(t, values), "Deployment", "rel-recommender").Spec.Template.Annotations["checksum/secret"]
	}
	a, b := sum(full), sum(strings.Replace(full, "read:r-key", "read:r-key2", 1))
	if a == "" || a == b {
		t.Errorf("checksum/secret %q then %q", a, b)
	}
}

// Values that would install a deployment that cannot work are refused, saying what to set.
func TestHelmChartRefuses(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"keyless", `secrets: {qdrantApiKey: q}`, "secrets.apiKeys"},
		{"qdrant without a key", `secrets: {apiKeys: "read:r"}`, "secrets.qdrantApiKey"},
		{"external qdrant without a url", `{secrets: {apiKeys: "read:r"}, qdrant: {enabled: false}}`, "qdrant.url is required"},
		{"backfill without a key", `{secrets: {apiKeys: "write:w", qdrantApiKey: q}, backfill: {enabled: true}}`, "secrets.backfillApiKey"},
		{"provider without a model", `{secrets: {apiKeys: "read:r", qdrantApiKey: q}, embedding: {baseURL: "http://e:8080/v1"}}`, "embedding.model"},
		{"misspelt key", `{secrets: {apiKeys: "read:r", qdrantApiKey: q}, replicas: 5}`, "replicas"},
		{"misspelt nested key", `{secrets: {apiKeys: "read:r", qdrantApiKey: q}, qdrant: {storageSize: 5Gi}}`, "storageSize"},
		{"bad duration", `{secrets: {apiKeys: "read:r", qdrantApiKey: q}, grpc: {maxConnectionAge: five}}`, "maxConnectionAge"},
		{"bad size", `{secrets: {apiKeys: "read:r", qdrantApiKey: q}, qdrant: {storage: {size: lots}}}`, "size"},
		{"url without a scheme", `{secrets: {apiKeys: "read:r", qdrantApiKey: q}, embedding: {baseURL: "e:8080", model: m}}`, "baseURL"},
		{"autoscaler bounds", `{secrets: {apiKeys: "read:r", qdrantApiKey: q}, autoscaling: {minReplicas: 5, maxReplicas: 2}}`, "minReplicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestHelmChartOptions(t *testing.T) {
	t.Run("existing secret, external Qdrant over TLS, lexical only", func(t *testing.T) {
		o := mustRender(t, `
secrets: {existingSecret: prod-keys}
qdrant: {enabled: false, url: "https://qdrant.example.com:6334"}
`)
		if o["Secret/rel-recommender"] != nil || o["StatefulSet/rel-recommender-qdrant"] != nil {
			t.Errorf("rendered a Secret or a Qdrant with neither asked for: %v", o.keys())
		}
		c := object[*appsv1.Deployment](t, o, "Deployment", "rel-recommender").Spec.Template.Spec.Containers[0]
		if secretRef(c, "RECOMMENDER_API_KEYS") != "prod-keys/api-keys" || envValue(c, "QDRANT_URL") != "https://qdrant.example.com:6334" ||
			envVar(c, "QDRANT_ALLOW_INSECURE_API_KEY") != nil || envVar(c, "EMBEDDING_BASE_URL") != nil {
			t.Errorf("env: %+v", c.Env)
		}
		// A managed Secret may hold no Qdrant key for an external Qdrant without one.
		if e := envVar(c, "QDRANT_API_KEY"); e == nil || e.ValueFrom.SecretKeyRef.Optional == nil || !*e.ValueFrom.SecretKeyRef.Optional {
			t.Errorf("QDRANT_API_KEY: %+v", e)
		}
	})
	t.Run("one Qdrant node, fixed replicas, a local embedding server without a key", func(t *testing.T) {
		o := mustRender(t, `
secrets: {apiKeys: "read:r", qdrantApiKey: q}
qdrant: {replicas: 1}
autoscaling: {enabled: false}
replicaCount: 2
embedding: {baseURL: "http://embeddings:8080/v1", model: multilingual-e5-small, queryPrefix: "query: ", documentPrefix: "passage: "}
`)
		checkSecretRefs(t, o)
		dep := object[*appsv1.Deployment](t, o, "Deployment", "rel-recommender")
		if o["HorizontalPodAutoscaler/rel-recommender"] != nil || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
			t.Errorf("replicas %v with autoscaling off", dep.Spec.Replicas)
		}
		c := dep.Spec.Template.Spec.Containers[0]
		if envVar(c, "EMBEDDING_API_KEY") != nil || envValue(c, "EMBEDDING_QUERY_PREFIX") != "query: " || envValue(c, "EMBEDDING_DOCUMENT_PREFIX") != "passage: " {
			t.Errorf("embedding env: %+v", c.Env)
		}
		q := object[*appsv1.StatefulSet](t, o, "StatefulSet", "rel-recommender-qdrant").Spec.Template.Spec.Containers[0]
		if envValue(c, "QDRANT_REPLICAS") != "1" {
			t.Errorf("QDRANT_REPLICAS = %q on one Qdrant node", envValue(c, "QDRANT_REPLICAS"))
		}
		if len(q.Command) != 0 || envValue(q, "QDRANT__CLUSTER__ENABLED") != "false" {
			t.Errorf("a single Qdrant node runs as a cluster: command %q, env %+v", q.Command, q.Env)
		}
	})
	t.Run("ServiceMonitor, no pod annotations", func(t *testing.T) {
		o := mustRender(t, `
secrets: {apiKeys: "read:r", qdrantApiKey: q}
metrics: {podAnnotations: false, serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}}
`)
		sm := object[*monitoringv1.ServiceMonitor](t, o, "ServiceMonitor", "rel-recommender")
		svc := object[*corev1.Service](t, o, "Service", "rel-recommender")
		if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" ||
			sm.Spec.Endpoints[0].Interval != "15s" || sm.Labels["release"] != "prom" || !servicePort(svc, "metrics", 9464, "metrics") {
			t.Errorf("ServiceMonitor %+v for Service %+v", sm, svc.Spec)
		}
		if a := object[*appsv1.Deployment](t, o, "Deployment", "rel-recommender").Spec.Template.Annotations; a["prometheus.io/scrape"] != "" {
			t.Errorf("pod annotations %v", a)
		}
	})
	t.Run("existing snapshot claim", func(t *testing.T) {
		o := mustRender(t, full+"backfill: {enabled: true, existingClaim: arxiv}\n")
		pod := object[*batchv1.CronJob](t, o, "CronJob", "rel-recommender-backfill").Spec.JobTemplate.Spec.Template.Spec
		if pod.Volumes[0].PersistentVolumeClaim.ClaimName != "arxiv" || o["PersistentVolumeClaim/rel-recommender-snapshot"] != nil {
			t.Errorf("claim %q, objects %v", pod.Volumes[0].PersistentVolumeClaim.ClaimName, o.keys())
		}
	})
}

// checkSecretRefs: every required key a pod reads from a Secret the chart renders is in it.
func checkSecretRefs(t *testing.T, o objects) {
	t.Helper()
	for key, obj := range o {
		var pod *corev1.PodSpec
		switch w := obj.(type) {
		case *appsv1.Deployment:
			pod = &w.Spec.Template.Spec
		case *appsv1.StatefulSet:
			pod = &w.Spec.Template.Spec
		case *batchv1.CronJob:
			pod = &w.Spec.JobTemplate.Spec.Template.Spec
		default:
			continue
		}
		for _, c := range pod.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || (e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional) {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				sec, ok := o["Secret/"+ref.Name].(*corev1.Secret)
				if !ok {
					t.Errorf("%s: %s reads the Secret %s, which the chart does not render", key, e.Name, ref.Name)
				} else if _, ok := sec.StringData[ref.Key]; !ok {
					t.Errorf("%s: %s reads %s/%s, which is not in it", key, e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
}

// helm lint finds nothing, with the production values.
func TestHelmLint(t *testing.T) {
	vals, err := chartutil.ReadValues([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	l := lint.All(chartDir, vals, "papers", false)
	for _, m := range l.Messages {
		if m.Severity > support.InfoSev {
			t.Errorf("helm lint: %v", m)
		}
	}
	// The values file itself is valid YAML with no duplicate keys.
	var v map[string]any
	if err := yaml.UnmarshalStrict(mustRead(t, chartDir+"/values.yaml"), &v); err != nil {
		t.Error(err)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
