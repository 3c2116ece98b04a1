package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrowserPage runs tests/browser/e2e.mjs: the page, served by the binary with the demo
// corpus, driven in Debian's Chromium by Playwright. It needs node, chromium and
// `npm ci` in tests/browser (.ci/run installs them); without them it is skipped, unless
// RECOMMENDER_REQUIRE_BROWSER=1 (as in CI) makes that a failure. RECOMMENDER_SCREENSHOT keeps the
// screenshot at that path.
func TestBrowserPage(t *testing.T) {
	t.Parallel()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	script, err := filepath.Abs("../../tests/browser/e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node"
	} else if _, err := os.Stat(chromium); err != nil {
		missing = chromium
	} else if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "playwright-core")); err != nil {
		missing = "tests/browser/node_modules (run npm ci there)"
	}
	if missing != "" {
		if os.Getenv("RECOMMENDER_REQUIRE_BROWSER") == "1" {
			t.Fatalf("browser test cannot run: %s is missing", missing)
		}
		t.Skipf("browser test skipped: %s is missing (apt-get install chromium; cd tests/browser && npm ci)", missing)
	}
	p := startServe(t, t.TempDir(), "--demo")
	if p.httpAddr == "" {
		t.Fatalf("no HTTP address in the log:\n%s", p.logs())
	}
	shot := os.Getenv("RECOMMENDER_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "screenshot.png")
	}
	cmd := exec.Command("node", script, "http://"+p.httpAddr, shot)
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("\n%s", out)
	if err != nil {
		t.Fatalf("browser test: %v", err)
	}
}

// TestNodeClient runs examples/node/example.mjs, a Node program using the TypeScript client
// package as another project would (installed from the tarball `npm pack` makes of
// clients/typescript; .ci/run does that), against a demo server with API keys. Without node or
// the installed package it is skipped, unless RECOMMENDER_REQUIRE_BROWSER=1 (CI).
func TestNodeClient(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs("../../examples/node")
	if err != nil {
		t.Fatal(err)
	}
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "@paperrec", "recommender-client", "dist", "index.js")); err != nil {
		missing = "the client package in examples/node/node_modules (npm pack in clients/typescript, then npm install the tarball in examples/node)"
	}
	if missing != "" {
		if os.Getenv("RECOMMENDER_REQUIRE_BROWSER") == "1" {
			t.Fatalf("Node client test cannot run: %s is missing", missing)
		}
		t.Skipf("Node client test skipped: %s is missing", missing)
	}
	p := startServeEnv(t, []string{keysEnv}, t.TempDir(), "--demo")
	run := func(key string) (string, error) {
		cmd := exec.Command("node", "example.mjs", "http://"+p.httpAddr, "federated learning with privacy")
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "RECOMMENDER_API_KEY="+key)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run(readKey)
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 4 || lines[0] != "48 papers, model lexical" || !strings.Contains(lines[1], "demo-0014 Differential Privacy for Federated Learning") ||
		!strings.Contains(lines[1], "(shares ") {
		t.Fatalf("the Node example: %v", err)
	}
	// A wrong key: the client reports the service's error.
	if out, err := run("wrong"); err == nil || !strings.Contains(out, "unauthenticated") {
		t.Fatalf("with a wrong key: %v\n%s", err, out)
	}
}
