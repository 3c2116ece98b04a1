package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// A README example block marked <!-- check: demo --> just above it is run by TestREADMEExamples:
// each "$ " command (with its "\" continuation lines) against a fresh `serve --demo`, its output
// compared with the lines that follow it in the README, page tokens and timings aside. So an
// example that no longer prints what the README says fails the tests.
var (
	checkMark = regexp.MustCompile(`^<!-- check: (\w+) -->$`)
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
			p := startServe(t, t.TempDir(), "--demo")
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
		})
	}
}

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
