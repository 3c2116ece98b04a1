package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
	corev1 "k8s.io/api/core/v1"
)

// TestREADMEHelmCommands runs the README's Helm commands as a shell runs them (quoting,
// variables, command substitution), with helm, kubectl and openssl standing in, and gives each
// helm call's --set flags to the very code the helm CLI parses them with before rendering the
// chart (strvals, as helm's values.Options does): a value split at a comma, or a chart refused for its kubeVersion, fails here.
func TestREADMEHelmCommands(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString(`set -eu
helm() { printf '%s\0' "$@"; printf '\n\0'; }
kubectl() { :; }
openssl() { od -An -tx1 -N"$3" /dev/urandom | tr -d ' \n'; } # openssl rand -hex N
`)
	for _, block := range fenced(string(readme), "sh") {
		if strings.Contains(block, "helm ") || strings.Contains(block, "kubectl create secret") {
			script.WriteString(block)
		}
	}
	out, err := exec.Command("bash", "-c", script.String()).Output()
	if err != nil {
		t.Fatalf("the README's Helm commands as a script: %v\n%s", err, script.String())
	}
	calls := bytes.Split(bytes.TrimSuffix(out, []byte("\n\x00")), []byte("\n\x00"))
	if len(calls) < 3 {
		t.Fatalf("%d helm commands in the README, want an install with keys, one with a Secret, a template", len(calls))
	}
	key := regexp.MustCompile(`^write:[0-9a-f]{48},read:[0-9a-f]{48}$`)
	for i, call := range calls {
		args := strings.Split(strings.TrimSuffix(string(call), "\x00"), "\x00")
		t.Run(fmt.Sprint(i+1, "-", args[0]), func(t *testing.T) {
			t.Logf("helm %s", strings.Join(args, " "))
			if len(args) < 3 || (args[0] != "install" && args[0] != "template") || args[2] != "deploy/"+chartDir {
				t.Fatalf("want helm install|template NAME deploy/%s ...", chartDir)
			}
			vals := map[string]any{}
			caps := chartutil.DefaultCapabilities.Copy()
			if args[0] == "install" {
				caps.KubeVersion = chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"} // the cluster's
			}
			for i := 3; i < len(args); i += 2 {
				if i+1 == len(args) {
					t.Fatalf("flag %s without a value", args[i])
				}
				var err error
				switch v := args[i+1]; args[i] {
				case "--set":
					err = strvals.ParseInto(v, vals)
				case "--set-string":
					err = strvals.ParseIntoString(v, vals)
				case "--kube-version":
					kv, err := chartutil.ParseKubeVersion(v)
					if err != nil {
						t.Fatal(err)
					}
					caps.KubeVersion = *kv
				default:
					t.Fatalf("flag %s: not one this test knows", args[i])
				}
				if err != nil {
					t.Fatalf("helm's --set parser: %v", err)
				}
			}
			chrt, err := loader.Load(chartDir)
			if err != nil {
				t.Fatal(err)
			}
			if !chartutil.IsCompatibleRange(chrt.Metadata.KubeVersion, caps.KubeVersion.String()) {
				t.Fatalf("helm %s refuses the chart: kubeVersion %s, Kubernetes %s (add --kube-version)", args[0], chrt.Metadata.KubeVersion, caps.KubeVersion)
			}
			o, err := renderValues(t, chrt, vals, caps)
			if err != nil {
				t.Fatal(err)
			}
			if _, own := vals["secrets"].(map[string]any)["existingSecret"]; !own {
				checkSecretRefs(t, o) // else the Secret is the user's
			}
			if sec, ok := o["Secret/rel-recommender"].(*corev1.Secret); ok && !key.MatchString(sec.StringData["api-keys"]) {
				t.Errorf("api-keys %q, want write:<48 hex>,read:<48 hex>", sec.StringData["api-keys"])
			}
		})
	}
}

// fenced returns the bodies of the code blocks of markdown fenced as lang.
func fenced(markdown, lang string) []string {
	var blocks []string
	var cur *strings.Builder
	for _, line := range strings.SplitAfter(markdown, "\n") {
		switch trimmed := strings.TrimSpace(line); {
		case cur == nil && trimmed == "```"+lang:
			cur = &strings.Builder{}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line)
		}
	}
	return blocks
}
