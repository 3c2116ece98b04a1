package main

import (
	"os"
	"os/exec"
	"path/filepath"
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
