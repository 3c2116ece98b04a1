package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/embed/modeltest"
	"github.com/paperrec/recommender/internal/testutil"
)

// A README example block marked <!-- check: KIND --> just above it is run by a test: each "$ "
// command (with its "\" continuation lines) against the server KIND names, its output compared
// with the lines that follow it in the README, page tokens and timings aside. So an example that
// no longer prints what the README says fails the tests. Kinds: demo (a fresh `serve --demo`,
// TestREADMEExamples), semantic (the sample loaded with the real model,
// TestREADMESemanticExamples), model-demo (the demo with the real model,
// TestREADMEModelDemoExamples).
var (
	checkMark = regexp.MustCompile(`^<!-- check: ([\w-]+) -->$`)
	// What changes from run to run: page tokens (bound to the index version), timings.
	volatile = []*regexp.Regexp{
		regexp.MustCompile(`--page-token \S+`),
		regexp.MustCompile(`in [\d.]+s \([\d.]+ papers/s\)`),
	}
)

// example is one command of a README example block and the output the README shows for it.
type example struct {
	command string
	raw     string // the command's lines as the README has them
	want    []string
}

// readmeExamples returns the examples of the README's blocks marked with kind, block by block.
func readmeExamples(t *testing.T, kind string) [][]example {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var blocks [][]example
	for i := 0; i < len(lines); i++ {
		m := checkMark.FindStringSubmatch(lines[i])
		if m == nil || m[1] != kind {
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "```console" {
			t.Fatalf("README line %d: a check mark must sit just above a ```console block", i+1)
		}
		var block []example
		for i += 2; i < len(lines) && lines[i] != "```"; i++ {
			line := lines[i]
			if !strings.HasPrefix(line, "$ ") {
				if len(block) == 0 {
					t.Fatalf("README line %d: output before any command", i+1)
				}
				block[len(block)-1].want = append(block[len(block)-1].want, line)
				continue
			}
			cmd, raw := strings.TrimPrefix(line, "$ "), line
			for strings.HasSuffix(cmd, "\\") && i+1 < len(lines) {
				i++
				cmd, raw = strings.TrimSuffix(cmd, "\\")+strings.TrimSpace(lines[i]), raw+"\n"+lines[i]
			}
			block = append(block, example{command: cmd, raw: raw})
		}
		blocks = append(blocks, block)
	}
	return blocks
}

func mask(s string) string {
	for _, re := range volatile {
		s = re.ReplaceAllStringFunc(s, func(m string) string { return re.String() })
	}
	return s
}

// TestREADMEExamples runs the README's examples marked "demo", each block against a demo server
// of its own, as a user types them (go run ./cmd/recommender is the binary built for the tests;
// the server's addresses stand in for the default ones). RECOMMENDER_UPDATE_README=1 writes what
// the commands print into the README instead, for when ranking changes.
func TestREADMEExamples(t *testing.T) {
	t.Parallel()
	blocks := readmeExamples(t, "demo")
	if len(blocks) < 3 {
		t.Fatalf("%d README blocks marked demo, want the first example, Ask for recommendations' and the Connect calls'", len(blocks))
	}
	for _, block := range blocks {
		t.Run(block[0].command, func(t *testing.T) {
			t.Parallel()
			runExamples(t, block, startServe(t, t.TempDir(), "--demo"))
		})
	}
}

// runExamples runs a block's commands against p and compares what they print with the README,
// once the server has built its neighbour lists (info shows them).
func runExamples(t *testing.T, block []example, p *process) {
	t.Helper()
	p.awaitLists(t)
	for _, ex := range block {
		cmd := strings.ReplaceAll(ex.command, "go run ./cmd/recommender", binary)
		cmd = strings.NewReplacer("localhost:8080", p.httpAddr, "127.0.0.1:8080", p.httpAddr).Replace(cmd)
		c := exec.Command("bash", "-o", "pipefail", "-c", cmd)
		c.Env = append(os.Environ(), "RECOMMENDER_SERVER="+p.addr)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Errorf("$ %s\n%v\n%s", ex.command, err, out)
			continue
		}
		printed := strings.TrimRight(string(out), "\n")
		if os.Getenv("RECOMMENDER_UPDATE_README") == "1" {
			updateREADME(t, ex, printed)
			continue
		}
		got := mask(printed)
		if want := mask(strings.Join(ex.want, "\n")); got != want {
			t.Errorf("$ %s\nprints:\n%s\nthe README shows:\n%s", ex.command, got, want)
		}
	}
}

// TestREADMESemanticExamples follows "Semantic results on real papers": scripts/model-server
// over the recorded vectors (a copy, as --seed-cache makes it), `serve --load` of the sample
// with the model, and once the log says "load: done" the README's blocks marked "semantic".
// The recorded vectors are then checked against the live model on a random draw of the papers
// and on the queries, so a changed model or text fails here too.
func TestREADMESemanticExamples(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("loads the 4,082-paper sample with a real model; skipped with -short")
	}
	blocks := readmeExamples(t, "semantic")
	if len(blocks) < 2 {
		t.Fatalf("%d README blocks marked semantic, want the recommendation and info", len(blocks))
	}
	shared := testutil.SharedDir(t)
	sample, recorded := filepath.Join(shared, "data", "arxiv-cs-sample.jsonl.gz"), filepath.Join(shared, "data", "e5-cache.sqlite")
	modeltest.Require(t)
	model := modeltest.Run(t, exec.Command("../../scripts/model-server", "--port", "0",
		"--cache", filepath.Join(t.TempDir(), "e5.sqlite"), "--seed-cache", recorded))
	p := startServe(t, t.TempDir(), "--load", sample, "--embedding-base-url", model.BaseURL, "--embedding-model", modeltest.Model)
	deadline := time.Now().Add(5 * time.Minute) // minutes if the vectors are not the recorded ones
	for !strings.Contains(p.logs(), `msg="load: done"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no \"load: done\" after 5 minutes; the server's log:\n%s", p.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, block := range blocks {
		runExamples(t, block, p)
	}

	// What the server was given from the recording, against the live model.
	rec := modeltest.Record(model.Client(t))
	prefixes := model.Config().Prefixes
	texts := []string{}
	for _, block := range blocks {
		for _, ex := range block {
			if m := queryFlag.FindStringSubmatch(ex.command); m != nil {
				texts = append(texts, prefixes.QueryText(m[1]))
			}
		}
	}
	for _, paper := range testutil.ReadPapers(t, sample) {
		texts = append(texts, prefixes.DocumentText(paper.GetTitle(), paper.GetAbstract()))
	}
	if _, err := rec.Embed(context.Background(), texts); err != nil {
		t.Fatal(err)
	}
	rec.RequireLive(t, model, 16)
}

// TestREADMEModelDemoExamples runs the README's blocks marked "model-demo" against `serve --demo`
// with the real model, as "Embeddings" starts it.
func TestREADMEModelDemoExamples(t *testing.T) {
	t.Parallel()
	blocks := readmeExamples(t, "model-demo")
	if len(blocks) == 0 {
		t.Fatal("no README block marked model-demo")
	}
	model := modeltest.Start(t)
	p := startServe(t, t.TempDir(), "--demo", "--embedding-base-url", model.BaseURL, "--embedding-model", modeltest.Model)
	for _, block := range blocks {
		runExamples(t, block, p)
	}
}

// awaitLists waits until the server's neighbour lists reflect every write.
func (p *process) awaitLists(t *testing.T) { awaitLists(t, p.client) }

// awaitLists waits until the neighbour lists of c's server reflect every write.
func awaitLists(t *testing.T, c recommenderv1.RecommenderServiceClient) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		info, err := c.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if l := info.GetNeighbourLists(); l == nil || (l.GetBuilt() && l.GetPendingWrites() == 0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the neighbour lists are not built after 2 minutes: %v", info.GetNeighbourLists())
		}
		time.Sleep(50 * time.Millisecond) // polling a condition
	}
}

var queryFlag = regexp.MustCompile(`--query "([^"]+)"`)

var readmeMu sync.Mutex

// updateREADME replaces the output the README shows for ex by printed.
func updateREADME(t *testing.T, ex example, printed string) {
	readmeMu.Lock()
	defer readmeMu.Unlock()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	old := ex.raw + "\n" + strings.Join(ex.want, "\n")
	if len(ex.want) == 0 {
		old = ex.raw
	}
	if !strings.Contains(string(b), old+"\n") {
		t.Fatalf("README: %q not found", old)
	}
	now := ex.raw
	if printed != "" {
		now += "\n" + printed
	}
	if err := os.WriteFile("../../README.md", []byte(strings.Replace(string(b), old+"\n", now+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestREADMEConfigurationTable: the README's table of serve's flags is serve --help's, flag by
// flag (its variable, default and description), so the two cannot disagree.
// RECOMMENDER_UPDATE_README=1 writes it.
func TestREADMEConfigurationTable(t *testing.T) {
	t.Parallel()
	_, out, code := runCLI(t, "serve", "--help") // the usage goes to stderr
	if code != 0 {
		t.Fatalf("serve --help: exit %d", code)
	}
	rows := []string{"| flag | environment variable | default | |", "| --- | --- | --- | --- |"}
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		m := helpFlag.FindStringSubmatch(lines[i])
		if m == nil || m[1] == "version" || i+1 >= len(lines) {
			continue
		}
		desc := strings.TrimSpace(lines[i+1])
		def := ""
		if d := helpDefault.FindStringSubmatch(desc); d != nil {
			def, desc = "`"+d[1]+"`", strings.TrimSuffix(desc, d[0])
		}
		env := helpEnv.FindStringSubmatch(desc)
		if env == nil {
			t.Errorf("serve --%s names no environment variable in --help", m[1])
			continue
		}
		if want := cli.EnvName(m[1]); env[1] != want {
			t.Errorf("serve --%s: --help names %s, the rule %s", m[1], env[1], want)
		}
		desc = strings.ReplaceAll(strings.TrimSpace(strings.Replace(desc, env[0], "", 1)), " ;", ";")
		rows = append(rows, fmt.Sprintf("| `--%s` | `%s` | %s | %s |", m[1], env[1], def, strings.ReplaceAll(desc, "|", `\|`)))
	}
	table := strings.Join(rows, "\n")
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	start, end := strings.Index(string(b), tableStart), strings.Index(string(b), tableEnd)
	if start < 0 || end < start {
		t.Fatalf("README: no %q ... %q", tableStart, tableEnd)
	}
	now := string(b[start+len(tableStart) : end])
	if want := "\n" + table + "\n"; now != want {
		if os.Getenv("RECOMMENDER_UPDATE_README") == "1" {
			readmeMu.Lock()
			defer readmeMu.Unlock()
			if err := os.WriteFile("../../README.md", []byte(string(b[:start+len(tableStart)])+want+string(b[end:])), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("README's table of serve's flags differs from serve --help; RECOMMENDER_UPDATE_README=1 rewrites it. It should read:\n%s", table)
	}
}

const (
	tableStart = "<!-- serve flags: TestREADMEConfigurationTable writes this table from serve --help -->"
	tableEnd   = "<!-- end of serve flags -->"
)

var (
	helpFlag    = regexp.MustCompile(`^  --([a-z0-9-]+)`)
	helpDefault = regexp.MustCompile(` \(default "([^"]*)"\)$`)
	helpEnv     = regexp.MustCompile(`\(env ([A-Z0-9_]+)[^)]*\)`)
)
