package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// The Kubernetes objects of the manifests and of the chart are decoded strictly into the API
// types, as the API server would with field validation on: an unknown or misspelt field, a wrong
// type or a duplicate key fails the test instead of being dropped at apply time.

var strict = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := monitoringv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
}()

// objects holds decoded objects by "Kind/name".
type objects map[string]runtime.Object

// decode adds every document of a YAML stream; skip names kinds that are not Kubernetes API
// objects (kustomize's Kustomization), returned raw instead.
func (o objects) decode(source string, data []byte, skip ...string) (skipped [][]byte, err error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return skipped, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		if kind := kindOf(doc); kind != "" && slices.Contains(skip, kind) {
			skipped = append(skipped, doc)
			continue
		}
		obj, gvk, err := strict.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		key := gvk.Kind + "/" + obj.(interface{ GetName() string }).GetName()
		if o[key] != nil {
			return nil, fmt.Errorf("%s: %s defined twice", source, key)
		}
		o[key] = obj
	}
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

func kindOf(doc []byte) string {
	for _, line := range strings.Split(string(doc), "\n") {
		if k, ok := strings.CutPrefix(line, "kind:"); ok {
			return strings.TrimSpace(k)
		}
	}
	return ""
}

// object returns the object of that kind and name, typed, or fails the test.
func object[T runtime.Object](t *testing.T, o objects, kind, name string) T {
	t.Helper()
	obj, ok := o[kind+"/"+name].(T)
	if !ok {
		t.Fatalf("no %s/%s among %v", kind, name, o.keys())
	}
	return obj
}

func (o objects) keys() []string {
	var keys []string
	for k := range o {
		keys = append(keys, k)
	}
	return keys
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// secretRef is "secret/key" of an env var read from a Secret, "" otherwise.
func secretRef(c corev1.Container, name string) string {
	e := envVar(c, name)
	if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		return ""
	}
	return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
}

func envValue(c corev1.Container, name string) string {
	if e := envVar(c, name); e != nil {
		return e.Value
	}
	return ""
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// selects says whether every label of the selector is on the pod.
func selects(selector, pod map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if pod[k] != v {
			return false
		}
	}
	return true
}
