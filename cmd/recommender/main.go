// Command recommender is the paper recommendation service and its command-line clients.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"serve", "run the gRPC service on the embedded store", runServe},
	{"backfill", "stream papers from a JSON-lines file (plain or .gz) into a running server", runBackfill},
	{"recommend", "ask a running server for papers similar to a text or to seed papers", runRecommend},
	{"info", "show a running server's index: size, backend, model, version", runInfo},
	{"retire-vectors", "delete the vectors a running server's store kept from before it moved to another model", runRetireVectors},
	{"feed", "save feeds of new papers like a text or seeds, and follow them as papers are written", runFeed},
	{"health", "ask a running server whether it is serving (a container health check)", runHealth},
	{"check", "verify an embedded store's data directory offline (papers, records, vector index)", runCheck},
	{"eval", "measure quality: NDCG on CSFCube, topic precision on the arXiv sample", runEval},
	{"bench-ann", "benchmark the vector index against hnswlib on the same vectors", runBenchANN},
	{"bench-lexical", "benchmark lexical search alone, pruned and not, against tantivy on the same papers", runBenchLexical},
	{"bench-grpc", "load-test Recommend over gRPC with synthetic papers", runBenchGRPC},
	{"synth", "write synthetic papers that read like a sample's, for runs at millions of papers", runSynth},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code: 0 success, 1 failure,
// 2 usage error, or a command's own (backfill: 3, completed with errors).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, version())
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errVersion):
			fmt.Fprintln(stdout, version())
			return 0
		case errors.As(err, new(exitError)):
			var ee exitError
			errors.As(err, &ee)
			fmt.Fprintf(stderr, "recommender %s: %s\n", c.name, ee.msg)
			return ee.code
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "recommender %s: %v\nRun 'recommender %s --help' for usage.\n", c.name, err, c.name)
			return 2
		default:
			fmt.Fprintf(stderr, "recommender %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "recommender: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "recommender: semantic paper recommendation over gRPC.")
	fmt.Fprintln(w, "\nUsage: recommender <command> [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'recommender <command> --help' for the flags of a command, 'recommender --version' for the version.")
}

// exitError ends a command with its own exit code and message.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// usageError is a mistake in the command line, reported with exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// newFlags returns a flag set whose --help prints the command's description and flags.
func newFlags(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: recommender %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(description))
		printFlags(stderr, fs)
	}
	return fs
}

// printFlags lists flags as --name, the form the README and errors use (flag.PrintDefaults
// writes a single dash).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		if typ != "" {
			typ = " " + typ
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "  --%s%s\n      %s%s\n", f.Name, typ, usage, def)
	})
}

// parseFlags parses args, turning parse failures into usage errors and rejecting stray
// positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if v := fs.Lookup("version"); v != nil && v.Value.String() == "true" {
		return errVersion
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// envOr returns the environment variable's value, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// listFlag is a flag that may be repeated.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
