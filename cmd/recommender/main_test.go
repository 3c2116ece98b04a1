package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/embed/embedtest"
	"github.com/paperrec/recommender/internal/store/qdrant/qdranttest"
	"github.com/paperrec/recommender/internal/testutil"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// binary is the recommender binary built once for the process-level tests, and lab the
// recommender-lab binary (eval, bench-*, synth).
var binary, lab string

// labCommands are recommender-lab's; runCLI runs them with lab.
var labCommands = []string{"eval", "bench-ann", "bench-lexical", "bench-grpc", "synth"}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "recommender-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, lab = filepath.Join(dir, "recommender"), filepath.Join(dir, "recommender-lab")
	// Under -race the child processes (the kill and shutdown tests' servers) get the race
	// detector too.
	build := []string{"build", "-o", binary}
	if race.Enabled {
		build = append(build, "-race")
		// A race-enabled program sleeps a second before it exits unless told not to; the
		// tests run the binary hundreds of times.
		_ = os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build recommender: %v\n%s", err, out)
		os.Exit(1)
	}
	build[2] = lab
	if out, err := exec.Command("go", append(build, "../recommender-lab")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build recommender-lab: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// process is a `recommender serve` child process.
type process struct {
	httpAddr string
	dataDir  string
	logs     func() string // everything the process logged so far
	cmd      *exec.Cmd
	addr     string
	client   recommenderv1.RecommenderServiceClient
	conn     *grpc.ClientConn
	exited   chan struct{}
}

var servingAddr = regexp.MustCompile(`msg=serving grpc_addr=(\S+)`)

// startServe starts the binary on a free loopback port with the data directory and waits for it
// to log the address it serves on.
func startServe(t testing.TB, dataDir string, extra ...string) *process {
	t.Helper()
	return startServeEnv(t, nil, dataDir, extra...)
}

// startServeEnv is startServe with extra environment variables.
func startServeEnv(t testing.TB, env []string, dataDir string, extra ...string) *process {
	t.Helper()
	args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", dataDir}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	p := watchServe(t, cmd)
	p.dataDir = dataDir
	return p
}

// watchServe starts a serve command and waits for it to log the address it serves on; the
// returned process has a plaintext client connected.
func watchServe(t testing.TB, cmd *exec.Cmd) *process {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	p.logs = func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs.String()
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := servingAddr.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("serve exited before serving:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("serve did not report its address within 30s")
	}
	if m := regexp.MustCompile(`msg=http addr=(\S+)`).FindStringSubmatch(p.logs()); m != nil {
		p.httpAddr = m[1]
	}
	p.conn, err = grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p.client = recommenderv1.NewRecommenderServiceClient(p.conn)
	t.Cleanup(func() {
		p.kill(t)
		noDataRace(t, "serve", p.logs())
	})
	return p
}

// noDataRace fails the test when a child built with -race reported a data race: a server is
// usually killed, so its exit code cannot say so.
func noDataRace(t testing.TB, what, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "WARNING: DATA RACE") {
		t.Errorf("%s reported a data race:\n%s", what, stderr)
	}
}

// kill sends SIGKILL: no shutdown code of ours runs.
func (p *process) kill(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.conn.Close()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// stop stops the server as an orchestrator would (SIGTERM) and waits for it to exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.conn.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

func extraPapers(prefix string, from, n int) []*recommenderv1.Paper {
	out := make([]*recommenderv1.Paper, n)
	for i := range out {
		out[i] = &recommenderv1.Paper{Id: fmt.Sprintf("%s-%05d", prefix, from+i),
			Title: fmt.Sprintf("Filler paper %d on tessellations", from+i), Abstract: "Tilings of the plane by polygons.", Year: 2020}
	}
	return out
}

func top10(t *testing.T, c recommenderv1.RecommenderServiceClient) []string {
	t.Helper()
	resp, err := c.Recommend(context.Background(), &recommenderv1.RecommendRequest{Query: "graph neural networks for speech and robots", PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range resp.GetResults() {
		ids = append(ids, r.GetPaper().GetId())
	}
	if len(ids) != 10 {
		t.Fatalf("%d results, want 10", len(ids))
	}
	return ids
}

func wantPapers(t *testing.T, c recommenderv1.RecommenderServiceClient, ids []string) {
	t.Helper()
	for _, id := range ids {
		if _, err := c.GetPaper(context.Background(), &recommenderv1.GetPaperRequest{PaperId: id}); err != nil {
			t.Fatalf("acknowledged paper %s lost: %v", id, err)
		}
	}
}

// TestSIGKILLLosesNoAcknowledgedWrite kills the server process with SIGKILL, first right after
// acknowledged writes, then while writes are in flight, and restarts it on the same data
// directory each time.
func TestSIGKILLLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	p := startServe(t, dir)
	papers, err := demo.Papers()
	if err != nil {
		t.Fatal(err)
	}
	papers = append(papers, extraPapers("a", 0, 200)...)
	var acked []string
	for i := 0; i < len(papers); i += 25 {
		batch := papers[i:min(i+25, len(papers))]
		if _, err := p.client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: batch}); err != nil {
			t.Fatal(err)
		}
		for _, b := range batch {
			acked = append(acked, b.GetId())
		}
	}
	before := top10(t, p.client)
	p.kill(t)

	p = startServe(t, dir)
	wantPapers(t, p.client, acked)
	if after := top10(t, p.client); !slices.Equal(before, after) {
		t.Fatalf("top 10 changed across kill -9:\nbefore %v\nafter  %v", before, after)
	}

	// Now kill while a writer is mid-stream; every batch acknowledged before the kill survives.
	var mu sync.Mutex
	writerDone := make(chan struct{})
	thirtyBatches := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i += 10 {
			batch := extraPapers("b", i, 10)
			if _, err := p.client.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: batch}); err != nil {
				return // the server is gone
			}
			mu.Lock()
			for _, b := range batch {
				acked = append(acked, b.GetId())
			}
			mu.Unlock()
			if i == 290 {
				close(thirtyBatches) // the writer keeps going: the kill lands mid-stream
			}
		}
	}()
	<-thirtyBatches
	p.kill(t)
	<-writerDone

	p = startServe(t, dir)
	wantPapers(t, p.client, acked)
	info, err := p.client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The batch in flight at the kill may or may not have committed, but never in part.
	if n := info.GetPaperCount(); n != int64(len(acked)) && n != int64(len(acked)+10) {
		t.Fatalf("%d papers after the kill, want %d acknowledged (+10 if the in-flight batch committed)", n, len(acked))
	}
	t.Logf("%d acknowledged papers survived two SIGKILLs; %d stored", len(acked), info.GetPaperCount())
}

// runCLI runs the binary and returns its stdout, stderr and exit code.
// startCLI starts the binary with args; its standard output collects in stdout, its standard
// error is read line by line from stderr.
func startCLI(ctx context.Context, t *testing.T, args ...string) (cmd *exec.Cmd, stdout *strings.Builder, stderr *bufio.Scanner) {
	t.Helper()
	cmd = exec.CommandContext(ctx, binary, args...)
	stdout = &strings.Builder{}
	cmd.Stdout = stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, bufio.NewScanner(pipe)
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	bin := binary
	if len(args) > 0 && slices.Contains(labCommands, args[0]) {
		bin = lab
	}
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	noDataRace(t, strings.Join(append([]string{"recommender"}, args...), " "), stderr.String())
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

var summary = regexp.MustCompile(`inserted (\d+), updated (\d+), unchanged (\d+), rejected (\d+), malformed lines (\d+)`)

func backfillCounts(t *testing.T, addr, file string) string {
	t.Helper()
	out, errOut, code := runCLI(t, "backfill", "--server", addr, "--file", file)
	if code != 0 {
		t.Fatalf("backfill exit %d:\n%s%s", code, out, errOut)
	}
	m := summary.FindString(out)
	if m == "" {
		t.Fatalf("no summary in backfill output:\n%s", out)
	}
	t.Log(strings.TrimSpace(out))
	return m
}

func TestBackfillSharedSampleTwice(t *testing.T) {
	t.Parallel()
	sample := filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz")
	p := startServe(t, t.TempDir())
	if got := backfillCounts(t, p.addr, sample); got != "inserted 4082, updated 0, unchanged 0, rejected 0, malformed lines 0" {
		t.Fatalf("first backfill: %s", got)
	}
	info1, err := p.client.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := backfillCounts(t, p.addr, sample); got != "inserted 0, updated 0, unchanged 4082, rejected 0, malformed lines 0" {
		t.Fatalf("second backfill: %s", got)
	}
	info2, err := p.client.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info1.GetPaperCount() != 4082 || info2.GetIndexVersion() != info1.GetIndexVersion() {
		t.Fatalf("index info %v then %v: want 4082 papers and an unchanged version", info1, info2)
	}
}

func TestBackfillReportsBadLinesAndGoesOn(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "papers.jsonl")
	content := `{"id":"good-1","title":"Good"}
{"id":"bad json
{"id":"good-2","abstract":"Also good"}
{"id":"","title":"No id"}
`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, t.TempDir())
	// By default it goes on to the end and the exit code says "completed with errors".
	out, errOut, code := runCLI(t, "backfill", "--server", p.addr, "--file", file, "--batch-size", "1")
	if code != 3 || !strings.Contains(errOut, "completed with errors: 1 rejected papers and 1 malformed lines") {
		t.Fatalf("exit %d, want 3 and the reason: %s%s", code, out, errOut)
	}
	if !strings.Contains(out, "inserted 2, updated 0, unchanged 0, rejected 1, malformed lines 1") {
		t.Errorf("summary:\n%s", out)
	}
	if !strings.Contains(errOut, "line 2: malformed JSON") || !strings.Contains(errOut, `line 4 (id "") rejected`) {
		t.Errorf("problems not reported by line:\n%s", errOut)
	}
	// --max-errors 2 accepts both problem lines; --max-errors 0 stops at the first.
	if out, errOut, code := runCLI(t, "backfill", "--server", p.addr, "--file", file, "--batch-size", "1", "--max-errors", "2"); code != 0 {
		t.Errorf("--max-errors 2: exit %d, want 0: %s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "backfill", "--server", p.addr, "--file", file, "--batch-size", "1", "--max-errors", "0")
	if code != 1 || !strings.Contains(errOut, "more than --max-errors 0") || strings.Contains(out, "inserted") {
		t.Errorf("--max-errors 0: exit %d, want 1, stopped before the summary: %s%s", code, out, errOut)
	}
	// Every line malformed is not a success either.
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte("not json\n{\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, "backfill", "--server", p.addr, "--file", bad); code != 3 {
		t.Errorf("all lines malformed: exit %d, want 3: %s%s", code, out, errOut)
	}
}

// Off a terminal (a CronJob's log) backfill prints progress lines while it runs: papers
// acknowledged, share of the file, rate, time left. A checkpoint keeps the counts across a
// resume, and one made for another version of the file is set aside with a message.
func TestBackfillForBatchJobs(t *testing.T) {
	t.Parallel()
	const n = 400
	api := embedtest.New(16)
	defer api.Close()
	p := startServeEnv(t, []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake-model"}, t.TempDir(), "--embedding-max-inputs", "50")
	file := writePapers(t, n)
	checkpoint := filepath.Join(t.TempDir(), "checkpoint")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The embedding API holds the backfill half way; a progress line must come while it waits.
	api.PauseAt(n / 2)
	cmd, _, sc := startCLI(ctx, t, "backfill", "--server", p.addr, "--file", file, "--checkpoint", checkpoint,
		"--batch-size", "50", "--stream-papers", "100", "--progress-every", "20ms")
	// While held, the line says how far the file is stored (not read: the reader's buffer holds
	// all of a file this small), the time left, and that the server is working on papers sent.
	progress := regexp.MustCompile(`^progress: (\d+) papers acknowledged \((\d+) sent this run\), [\d.]+ papers/s, ([\d.]+)% of the file done, about \S+ left; the server is storing (\d+) papers, sent \S+ ago$`)
	var seen string
	for seen == "" && sc.Scan() {
		m := progress.FindStringSubmatch(sc.Text())
		if m == nil || m[1] == "0" {
			continue
		}
		acked, sent, pending := atoi(t, m[1]), atoi(t, m[2]), atoi(t, m[4])
		done, _ := strconv.ParseFloat(m[3], 64)
		if share := 100 * float64(acked) / n; sent-acked != pending || done < share-2 || done > share+2 {
			t.Fatalf("%s: want %d pending and about %.0f%% done", sc.Text(), sent-acked, share)
		}
		seen = sc.Text()
	}
	if seen == "" {
		t.Fatalf("no progress line with papers acknowledged while the backfill was held")
	}
	t.Logf("while held: %s", seen)
	// Killed while held, once the checkpoint has moved (it is written just after the counts
	// move): it keeps what was acknowledged, with its counts.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(checkpoint); err == nil {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("no checkpoint written")
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	api.Resume()
	out, errOut, code := runCLI(t, "backfill", "--server", p.addr, "--file", file, "--checkpoint", checkpoint, "--batch-size", "50", "--stream-papers", "100")
	if code != 0 || !strings.Contains(errOut, "resuming after line") {
		t.Fatalf("resumed run: exit %d\n%s%s", code, out, errOut)
	}
	var inserted, updated, unchanged, before int
	if _, err := fmt.Sscanf(summary.FindString(out), "inserted %d, updated %d, unchanged %d", &inserted, &updated, &unchanged); err != nil ||
		inserted+updated+unchanged != n || updated != 0 || !strings.Contains(out, "acknowledged before the resume") {
		t.Fatalf("resumed run's summary does not cover the whole file once (%v):\n%s", err, out)
	}
	fmt.Sscanf(out[strings.Index(out, "the whole file: ")+len("the whole file: "):], "%d", &before)
	t.Logf("resumed run: %s (%d acknowledged before)", summary.FindString(out), before)
	if before == 0 || before >= n {
		t.Fatalf("%d papers acknowledged before the resume, want some and not all", before)
	}

	// The file changes: the checkpoint is set aside, with a message, and the run starts over.
	if err := os.WriteFile(file, append(testutil.ReadFile(t, file), `{"id":"bf-extra","title":"Appended"}`+"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "backfill", "--server", p.addr, "--file", file, "--checkpoint", checkpoint)
	if code != 0 || !strings.Contains(errOut, "was made for another file or an earlier version of it") ||
		!strings.Contains(out, fmt.Sprintf("inserted 1, updated 0, unchanged %d", n)) {
		t.Fatalf("after the file changed: exit %d\n%s%s", code, out, errOut)
	}
}

func TestRecommendCommand(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "--demo")
	out, errOut, code := runCLI(t, "recommend", "--server", p.addr, "--seed", "demo-0013", "--limit", "3")
	if code != 0 || !strings.HasPrefix(out, "3 results (lexical)") || !strings.Contains(out, "next page: --page-token ") {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	out, _, code = runCLI(t, "recommend", "--server", p.addr, "--query", "speech recognition", "--json", "--limit", "2")
	var resp recommenderv1.RecommendResponse
	if err := protojson.Unmarshal([]byte(out), &resp); code != 0 || err != nil ||
		resp.GetMode() != recommenderv1.RetrievalMode_RETRIEVAL_MODE_LEXICAL || len(resp.GetResults()) != 2 {
		t.Fatalf("json output (exit %d, %v):\n%s", code, err, out)
	}
	_, errOut, code = runCLI(t, "recommend", "--server", p.addr, "--seed", "no-such-paper")
	if code != 1 || !strings.Contains(errOut, "NotFound: paper not found: no-such-paper") {
		t.Fatalf("unknown seed: exit %d, %s", code, errOut)
	}
	// Papers the store does not hold, from a file (one JSON object per line) and from flags, beside
	// an unknown id: used, noted, never stored.
	seedFile := filepath.Join(t.TempDir(), "drafts.jsonl")
	if err := os.WriteFile(seedFile, []byte(`{"title":"A draft on speech recognition","abstract":"Acoustic models for low-resource speech recognition.","authors":["A. Writer"],"year":2026}`+"\n"+
		`{"id":"ignored","title":"Another draft","abstract":"Keyword spotting on small devices.","date":"2026-01-01"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "recommend", "--server", p.addr, "--seed-file", seedFile, "--seed", "no-such-paper",
		"--seed-title", "Speaker verification", "--limit", "3", "--json")
	resp.Reset()
	if err := protojson.Unmarshal([]byte(out), &resp); code != 0 || err != nil || len(resp.GetResults()) != 3 || len(resp.GetSeeds()) != 4 ||
		resp.GetSeeds()[1].GetStatus() != recommenderv1.SeedStatus_SEED_STATUS_INLINE || resp.GetSeeds()[3].GetTitle() != "Speaker verification" ||
		!strings.Contains(errOut, "note: seed no-such-paper is not stored: left out") {
		t.Fatalf("inline seeds: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	out, errOut, code = runCLI(t, "recommend", "--server", p.addr, "--seed-file", seedFile+".missing")
	if code == 0 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing seed file: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runCLI(t, "recommend", "--server", p.addr, "--query", "   ")
	if code != 1 || !strings.Contains(errOut, "InvalidArgument") || !strings.Contains(errOut, "\n  query: ") {
		t.Fatalf("blank query: exit %d, %s", code, errOut)
	}
	out, _, code = runCLI(t, "info", "--server", p.addr)
	if code != 0 || !strings.Contains(out, "papers:     48") {
		t.Fatalf("info: exit %d, %s", code, out)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Commands:"},
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"serve", "--help"}, 0, "--data-dir"},
		{[]string{"backfill", "--help"}, 0, "arXiv metadata snapshot"},
		{[]string{"backfill"}, 2, "--file is required"},
		{[]string{"recommend"}, 2, "give --query, --seed, --seed-file or --seed-title"},
		{[]string{"recommend", "--query", "x", "--mode", "fuzzy"}, 2, "--mode must be"},
		{[]string{"serve", "--log-format", "xml"}, 2, "--log-format must be"},
		{[]string{"serve", "stray"}, 2, `unexpected argument "stray"`},
	} {
		_, errOut, code := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("recommender %v: exit %d, stderr:\n%s\nwant exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// TestVersion: every command answers --version on stdout, exit 0, doing nothing else (serve
// does not start, backfill needs no --file).
func TestVersion(t *testing.T) {
	t.Parallel()
	want := regexp.MustCompile(`^recommender(-lab)? \S+.*, go1\.\d+`)
	args := [][]string{{"--version"}, {"version"}}
	for _, c := range append([]string{"serve", "backfill", "recommend", "info", "health", "check"}, labCommands...) {
		args = append(args, []string{c, "--version"})
	}
	for _, a := range args {
		out, errOut, code := runCLI(t, a...)
		if code != 0 || !want.MatchString(out) || strings.Count(out, "\n") != 1 || errOut != "" {
			t.Errorf("recommender %v: exit %d, stdout %q, stderr %q; want exit 0 and one version line", a, code, out, errOut)
		}
	}
}

// TestServeRefusesABusyDataDir shows a second server on the same directory fails clearly
// instead of corrupting it.
func TestServeRefusesABusyDataDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startServe(t, dir)
	cmd := exec.Command(binary, "serve", "--grpc-addr", "127.0.0.1:0", "--data-dir", dir)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another process") {
		t.Fatalf("second serve: %v\n%s", err, out)
	}
}

// TestServeWithEmbeddingAPI configures the binary through the EMBEDDING_* variables against a
// local fake of the OpenAI embeddings API.
func TestServeWithEmbeddingAPI(t *testing.T) {
	t.Parallel()
	api := embedtest.New(32)
	defer api.Close()
	const key = "sk-do-not-log-me"
	env := []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake-model", "EMBEDDING_API_KEY=" + key}
	p := startServeEnv(t, env, t.TempDir(), "--demo")
	out, errOut, code := runCLI(t, "recommend", "--server", p.addr, "--query", "speech recognition", "--mode", "dense", "--limit", "3")
	if code != 0 || !strings.HasPrefix(out, "3 results (dense)") {
		t.Fatalf("dense recommend: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, "info", "--server", p.addr)
	if !strings.Contains(out, "model:      fake-model") || !strings.Contains(out, "dimensions: 32") {
		t.Fatalf("info:\n%s", out)
	}
	if reqs := api.Requests(); len(reqs) == 0 || reqs[0].APIKey != key {
		t.Fatalf("the API did not receive the key")
	}
	if logs := p.logs(); strings.Contains(logs, key) || !strings.Contains(logs, "api_key_set=true") {
		t.Fatalf("logs leak the key or do not say it is set:\n%s", logs)
	}
	// A data directory bound to one model refuses another.
	dir := t.TempDir()
	startServeEnv(t, env, dir).kill(t)
	cmd := exec.Command(binary, "serve", "--grpc-addr", "127.0.0.1:0", "--data-dir", dir)
	cmd.Env = append(os.Environ(), "EMBEDDING_BASE_URL="+api.BaseURL(), "EMBEDDING_MODEL=other-model")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), `holds vectors of model "fake-model"`) {
		t.Fatalf("serve with another model: %v\n%s", err, b)
	}
}

// TestServeOnQdrantDouble runs the binary with --store qdrant against the Qdrant contract double:
// ingest and recommend work end to end over gRPC, and the health service follows Qdrant going
// away and coming back, without a restart.
func TestServeOnQdrantDouble(t *testing.T) {
	t.Parallel()
	d, err := qdranttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	p := startServe(t, t.TempDir(), "--store", "qdrant", "--qdrant-url", d.URL(), "--qdrant-health-interval", "50ms", "--demo")
	out, errOut, code := runCLI(t, "recommend", "--server", p.addr, "--seed", "demo-0013", "--limit", "3")
	if code != 0 || !strings.HasPrefix(out, "3 results (lexical)") {
		t.Fatalf("recommend on qdrant: exit %d\n%s%s", code, out, errOut)
	}
	for _, line := range strings.Split(out, "\n")[1:] {
		if strings.Contains(line, "demo-0013") {
			t.Fatalf("seed recommended itself: %s", line)
		}
	}
	backfillOne(t, p.addr, "Federated learning on a Qdrant backend")
	out, _, _ = runCLI(t, "info", "--server", p.addr)
	if !strings.Contains(out, "papers:     49") || !strings.Contains(out, "backend:    qdrant") {
		t.Fatalf("info on qdrant:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch, err := healthpb.NewHealthClient(p.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "recommender.v1.RecommenderService"})
	if err != nil {
		t.Fatal(err)
	}
	next := func(want healthpb.HealthCheckResponse_ServingStatus) { t.Helper(); waitHealth(t, watch, want) }
	next(healthpb.HealthCheckResponse_SERVING)
	d.Stop()
	next(healthpb.HealthCheckResponse_NOT_SERVING)
	_, errOut, code = runCLI(t, "recommend", "--server", p.addr, "--query", "federated")
	// The client learns the store is down, not Qdrant's own error text.
	if code != 1 || !strings.Contains(errOut, "Unavailable: store unavailable; retry later") || strings.Contains(errOut, "rpc error") {
		t.Fatalf("recommend while Qdrant is down: exit %d, %s", code, errOut)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	next(healthpb.HealthCheckResponse_SERVING)
	if out, _, code := runCLI(t, "recommend", "--server", p.addr, "--query", "federated"); code != 0 || !strings.Contains(out, "q-1") {
		_, e, _ := runCLI(t, "recommend", "--server", p.addr, "--query", "federated")
		t.Fatalf("recommend after Qdrant is back: exit %d\n%s%s", code, out, e)
	}
}

// TestServeStartsBeforeQdrant starts the binary with an embedding model while Qdrant is not up
// yet: it serves at once, NOT_SERVING, refuses Recommend with UNAVAILABLE, and once Qdrant
// answers it creates the collection bound to the model, turns SERVING and serves, without a
// restart.
func TestServeStartsBeforeQdrant(t *testing.T) {
	t.Parallel()
	d, err := qdranttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	d.Stop() // keeps its address: Qdrant will come up there later
	defer d.Stop()
	api := embedtest.New(16)
	defer api.Close()
	p := startServeEnv(t, []string{"EMBEDDING_BASE_URL=" + api.BaseURL(), "EMBEDDING_MODEL=fake-model"}, t.TempDir(),
		"--store", "qdrant", "--qdrant-url", d.URL(), "--qdrant-health-interval", "50ms", "--qdrant-timeout", "200ms",
		"--qdrant-bm25-average-length", "150")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	watch, err := healthpb.NewHealthClient(p.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "recommender.v1.RecommenderService"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before Qdrant is up: %v, %v; want NOT_SERVING", first, err)
	}
	_, errOut, code := runCLI(t, "recommend", "--server", p.addr, "--query", "federated")
	if code != 1 || !strings.Contains(errOut, "Unavailable: store unavailable; retry later") {
		t.Fatalf("recommend before Qdrant is up: exit %d, %s", code, errOut)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, watch, healthpb.HealthCheckResponse_SERVING)
	// The papers' collection, once (the neighbour lists have one of their own).
	creates := slices.DeleteFunc(d.Calls("Collections/Create"), func(c qdranttest.Call) bool {
		return strings.HasSuffix(c.Req.(*qc.CreateCollection).GetCollectionName(), "_lists")
	})
	if len(creates) != 1 {
		t.Fatalf("%d collections of papers created, want 1", len(creates))
	}
	if avg := creates[0].Req.(*qc.CreateCollection).GetMetadata()["bm25_average_length"].GetDoubleValue(); avg != 150 {
		t.Errorf("collection created for BM25 average length %v, want 150 (--qdrant-bm25-average-length)", avg)
	}
	backfillOne(t, p.addr, "Federated learning")
	out, errOut, code := runCLI(t, "recommend", "--server", p.addr, "--query", "federated")
	if code != 0 || !strings.HasPrefix(out, "1 results (hybrid)") {
		t.Fatalf("recommend once Qdrant is up: exit %d\n%s%s", code, out, errOut)
	}
}

// waitHealth reads the health stream until it reports want.
func waitHealth(t *testing.T, watch healthpb.Health_WatchClient, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatalf("waiting for %v: %v", want, err)
		}
		if resp.GetStatus() == want {
			return
		}
	}
}

// backfillOne backfills one paper q-1 with title and checks it was inserted.
func backfillOne(t *testing.T, addr, title string) {
	t.Helper()
	sample := filepath.Join(t.TempDir(), "one.jsonl")
	line := fmt.Sprintf(`{"id":"q-1","title":%q,"abstract":"Clients train together."}`+"\n", title)
	if err := os.WriteFile(sample, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := backfillCounts(t, addr, sample); got != "inserted 1, updated 0, unchanged 0, rejected 0, malformed lines 0" {
		t.Fatalf("backfill: %s", got)
	}
}

// evalCSFCube runs the lab's eval on CSFCube alone with the fake embedding API and extra args,
// and returns its output and the rankings file it was given.
func evalCSFCube(t *testing.T, args ...string) (output []byte, rankings string) {
	t.Helper()
	api := embedtest.New(32)
	defer api.Close()
	rankings = filepath.Join(t.TempDir(), "rankings.jsonl")
	cmd := exec.Command(lab, append([]string{"eval", "--csfcube", filepath.Join(testutil.SharedDir(t), "eval", "csfcube"),
		"--arxiv", "", "--out", rankings}, args...)...)
	cmd.Env = append(os.Environ(), "EMBEDDING_BASE_URL="+api.BaseURL(), "EMBEDDING_MODEL=fake")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("eval %v: %v\n%s", args, err, b)
	}
	t.Logf("\n%s", b)
	return b, rankings
}

// rankingRows counts the rows of a rankings file.
func rankingRows(t *testing.T, path string) int {
	t.Helper()
	rows, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(rows), "\n")
}

// TestEvalCommand runs the quality benchmark end to end with the fake embedding API, so every
// mode is measured, and checks the rankings file covers all 50 rows.
func TestEvalCommand(t *testing.T) {
	t.Parallel()
	race.Skip(t)
	b, out := evalCSFCube(t)
	for _, mode := range []string{"lexical", "dense", "hybrid"} {
		if !regexp.MustCompile(`(?m)^  ` + mode + ` +0\.\d{4} +0\.\d{4} +\(24 dev rows; relevance ECE 0\.\d{4} over \d+ judged results, relevant: graded 1 or more\)$`).Match(b) {
			t.Errorf("no NDCG line for %s", mode)
		}
	}
	if n := rankingRows(t, out); n != 50 {
		t.Fatalf("%d ranking rows, want 50", n)
	}
}

// eval --strategy prints each strategy's figures beside today's and writes its rankings.
func TestEvalStrategies(t *testing.T) {
	t.Parallel()
	race.Skip(t)
	b, out := evalCSFCube(t, "--strategy", "sent-chamfer,rrf:2:5")
	for _, name := range []string{"today", "sent-chamfer", "rrf:2:5"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` +0\.\d{4} +0\.\d{4} +- +[+-]0\.\d{4} \(0\.\d{4}\), -$`).Match(b) {
			t.Errorf("no figures line for %s", name)
		}
		if n := rankingRows(t, strings.TrimSuffix(out, ".jsonl")+"-"+strings.ReplaceAll(name, ":", "_")+".jsonl"); n != 50 {
			t.Errorf("%s: %d ranking rows, want 50", name, n)
		}
	}
	cmd := exec.Command(lab, "eval", "--arxiv", "", "--csfcube", "", "--strategy", "no-such")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), `unknown strategy "no-such"; known: today, `) {
		t.Errorf("an unknown strategy: %v\n%s", err, b)
	}
}

// check verifies a stopped server's data directory; a directory that lost its papers.db is
// refused by serve (unless --allow-empty-store) and reported by check.
func TestCheckCommandAndLostPapersFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	startServe(t, dir, "--demo").stop(t)
	out, errOut, code := runCLI(t, "check", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "papers.db: 48 papers, 0 with a vector") || !strings.Contains(out, "no problems found") {
		t.Fatalf("check of a sound directory: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.Remove(filepath.Join(dir, "papers.db")); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "no papers (papers.db is missing or empty)") || !strings.Contains(errOut, "--allow-empty-store") {
		t.Fatalf("serve without papers.db: exit %d\n%s", code, errOut)
	}
	if out, _, code := runCLI(t, "check", "--data-dir", dir); code != 1 || !strings.Contains(out, "problem: ") {
		t.Fatalf("check without papers.db: exit %d\n%s", code, out)
	}
	q := startServe(t, dir, "--allow-empty-store")
	if info, err := q.client.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{}); err != nil || info.GetPaperCount() != 0 {
		t.Fatalf("with --allow-empty-store: %v, %v; want an empty store", info, err)
	}
}

// synth writes the same papers for the same seed, in the format backfill reads.
func TestSynthCommand(t *testing.T) {
	t.Parallel()
	sample := filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz")
	dir := t.TempDir()
	var files [][]byte
	for _, name := range []string{"a.jsonl.gz", "b.jsonl.gz"} {
		out := filepath.Join(dir, name)
		if _, errOut, code := runCLI(t, "synth", "--from", sample, "--papers", "300", "--seed", "5", "--out", out); code != 0 ||
			!strings.Contains(errOut, "synth: 300 papers on ") {
			t.Fatalf("synth: exit %d, %s", code, errOut)
		}
		papers := testutil.ReadPapers(t, out)
		if len(papers) != 300 || papers[0].GetId() != "synth-0000000" || papers[0].GetTitle() == "" || len(papers[0].GetAuthors()) == 0 {
			t.Fatalf("%d papers read back, first %v", len(papers), papers[0])
		}
		files = append(files, testutil.ReadFile(t, out))
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("the same seed wrote two different files")
	}
	if _, errOut, code := runCLI(t, "synth", "--papers", "10", "--out", filepath.Join(dir, "c.jsonl")); code != 2 || !strings.Contains(errOut, "give --from and --out") {
		t.Fatalf("without --from: exit %d, %s", code, errOut)
	}
}

// bench-lexical: fills a store from a file, runs seed and title queries scored every posting and
// pruned, finds them equal, and reads a peer's answers (here a shell script standing in for the
// tantivy one, answering each title with the paper it came from).
func TestBenchLexicalCommand(t *testing.T) {
	t.Parallel()
	sample := filepath.Join(testutil.SharedDir(t), "data", "arxiv-cs-sample.jsonl.gz")
	dir := t.TempDir()
	peer := filepath.Join(dir, "peer.sh")
	script := `echo '{"build_seconds": 0.5}'; while read -r line; do id=${line#*\"id\":\"}; echo "{\"seconds\": 0.001, \"ids\": [\"${id%%\"*}\"]}"; done < "$3"`
	if err := os.WriteFile(peer, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"bench-lexical", "--papers", sample, "--data-dir", filepath.Join(dir, "store"), "--queries", "60",
		"--python", "/bin/sh", "--peer-script", peer, "--peer-dir", filepath.Join(dir, "peer")}
	out, errOut, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"filled the store with 4082 papers", "seed: pruned and every posting gave the same papers and scores for 60 of 60 queries",
		"title: pruned and every posting gave the same papers and scores for 60 of 60 queries", "title: tantivy indexed the papers in 0.5s",
		"of its top 10, 100.0% are in ours"} { // each title finds its own paper
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	t.Log(out)
	// The store is kept: a second run queries it without filling it again.
	if out, errOut, code = runCLI(t, args...); code != 0 || strings.Contains(out, "filled the store") {
		t.Fatalf("second run: exit %d, %s\n%s", code, errOut, out)
	}
}

// feed: create, list, follow while a paper is written (stopped by Ctrl-C, it says where to
// resume), delete.
func TestFeedCommand(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "--demo")
	out, errOut, code := runCLI(t, "feed", "create", "--server", p.addr, "--query", "federated learning privacy", "--name", "fl", "--min-relevance", "0.5")
	id, _, _ := strings.Cut(out, " ")
	if code != 0 || len(id) != 36 || !strings.Contains(out, `"fl", query "federated learning privacy"`) {
		t.Fatalf("create: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code := runCLI(t, "feed", "list", "--server", p.addr); code != 0 || !strings.HasPrefix(out, id) {
		t.Fatalf("list: exit %d\n%s", code, out)
	}

	cmd := exec.Command(binary, "feed", "stream", id, "--server", p.addr, "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	events := bufio.NewScanner(stdout)
	next := func() *recommenderv1.StreamFeedResponse {
		t.Helper()
		if !events.Scan() {
			t.Fatalf("stream ended: %s", stderr.String())
		}
		ev := &recommenderv1.StreamFeedResponse{}
		if err := protojson.Unmarshal(events.Bytes(), ev); err != nil {
			t.Fatalf("%v: %s", err, events.Text())
		}
		return ev
	}
	if ev := next(); ev.GetPaper() != nil {
		t.Fatalf("first event %v, want the heartbeat of a caught-up stream", ev)
	}
	file := filepath.Join(t.TempDir(), "new.jsonl")
	if err := os.WriteFile(file, []byte(`{"id":"fl-new","title":"Federated learning with differential privacy on phones","abstract":"Private federated training."}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runCLI(t, "backfill", "--server", p.addr, "--file", file); code != 0 {
		t.Fatalf("backfill: %s", errOut)
	}
	ev := next()
	for ev.GetPaper() == nil {
		ev = next()
	}
	if ev.GetPaper().GetId() != "fl-new" || ev.GetRelevance() < 0.5 {
		t.Fatalf("event %v, want fl-new", ev)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(stderr.String(), "resume with: --cursor ") {
		t.Fatalf("after Ctrl-C: %v, %s", err, stderr.String())
	}

	if out, _, code := runCLI(t, "feed", "delete", id, "--server", p.addr); code != 0 || out != "deleted "+id+"\n" {
		t.Fatalf("delete: exit %d, %s", code, out)
	}
	if _, errOut, code := runCLI(t, "feed", "get", id, "--server", p.addr); code != 1 || !strings.Contains(errOut, "NotFound") {
		t.Fatalf("get after delete: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runCLI(t, "feed", "stream"); code != 2 || !strings.Contains(errOut, "needs a FEED_ID") {
		t.Fatalf("stream without an id: exit %d, %s", code, errOut)
	}
}

// A title holding terminal escapes (clear the screen, retitle the window, reorder the line) is
// printed by recommend as visible escapes, never as the sequences themselves.
func TestRecommendPrintsEscapesNotSequences(t *testing.T) {
	t.Parallel()
	p := startServe(t, t.TempDir(), "--demo")
	hostile := "Speech recognition \x1b[2J\x1b]0;PWNED\x07 with \u202eoverrides"
	if _, err := p.client.UpsertPapers(context.Background(), &recommenderv1.UpsertPapersRequest{Papers: []*recommenderv1.Paper{
		{Id: "evil-1", Title: hostile, Abstract: "Speech recognition for terminals.", Authors: []string{"Mallory \x1b[31m"}}}}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "recommend", "--server", p.addr, "--query", "speech recognition terminals", "--limit", "3")
	if code != 0 || !strings.Contains(out, `Speech recognition \x1b[2J\x1b]0;PWNED\x07 with \u202eoverrides`) || !strings.Contains(out, `Mallory \x1b[31m`) {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if strings.ContainsAny(out, "\x1b\x07\u202e") {
		t.Fatalf("raw control characters in the output: %q", out)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
