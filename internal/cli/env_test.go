package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for f, want := range map[string]string{
		"grpc-addr": "RECOMMENDER_GRPC_ADDR", "shutdown-timeout": "RECOMMENDER_SHUTDOWN_TIMEOUT",
		"qdrant-url": "QDRANT_URL", "embedding-base-url": "EMBEDDING_BASE_URL", "reembed-model": "REEMBED_MODEL",
		"store": "RECOMMENDER_STORE",
	} {
		if got := EnvName(f); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", f, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	var help bytes.Buffer
	fs := NewEnvFlags("serve", "[flags]", "Test.", &help)
	timeout := fs.Duration("shutdown-timeout", 20*time.Second, "how long")
	addr := fs.String("grpc-addr", "127.0.0.1:50051", "address (env RECOMMENDER_GRPC_ADDR)")
	demo := fs.Bool("demo", false, "load the demo")
	t.Setenv("RECOMMENDER_SHUTDOWN_TIMEOUT", "3s")
	t.Setenv("RECOMMENDER_GRPC_ADDR", "127.0.0.1:1")
	t.Setenv("RECOMMENDER_DEMO", "") // empty: as if unset
	if err := ParseFlags(fs, []string{"--grpc-addr", "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if err := ApplyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if *timeout != 3*time.Second || *addr != "127.0.0.1:2" || *demo {
		t.Fatalf("timeout %v (want 3s from the environment), addr %s (want the flag's), demo %v (want false)", *timeout, *addr, *demo)
	}
	t.Setenv("RECOMMENDER_SHUTDOWN_TIMEOUT", "soon")
	bad := NewEnvFlags("serve", "[flags]", "Test.", &bytes.Buffer{})
	bad.Duration("shutdown-timeout", 20*time.Second, "how long")
	if err := ApplyEnv(bad); err == nil || !strings.Contains(err.Error(), `RECOMMENDER_SHUTDOWN_TIMEOUT="soon"`) {
		t.Fatalf("a bad value: %v, want an error naming the variable", err)
	}
	fs.Usage()
	for _, want := range []string{"how long (env RECOMMENDER_SHUTDOWN_TIMEOUT)", "address (env RECOMMENDER_GRPC_ADDR) (default", "load the demo (env RECOMMENDER_DEMO)"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, help.String())
		}
	}
}
