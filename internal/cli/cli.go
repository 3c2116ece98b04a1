// Package cli is what the recommender's binaries share on their command lines: flag sets whose
// --help lists --flags, usage and exit errors, the store and embedding flags, and the rendering
// of errors and rates for a person.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// ExitError ends a command with its own exit code and message.
type ExitError struct {
	Code int
	Msg  string
}

func (e ExitError) Error() string { return e.Msg }

// UsageError is a mistake in the command line, reported with exit code 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// NewFlags returns a flag set whose --help prints the command's description and flags.
func NewFlags(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	return newFlags(name, synopsis, description, stderr, false)
}

// NewEnvFlags is NewFlags for a command whose every flag (but --version) has an environment
// variable named by EnvName: --help names it, and ApplyEnv reads it.
func NewEnvFlags(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	return newFlags(name, synopsis, description, stderr, true)
}

func newFlags(name, synopsis, description string, stderr io.Writer, env bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s %s %s\n\n%s\n\nFlags:\n", Program, name, synopsis, strings.TrimSpace(description))
		printFlags(stderr, fs, env)
	}
	return fs
}

// printFlags lists flags as --name, the form the README and errors use (flag.PrintDefaults
// writes a single dash), with each one's environment variable when env.
func printFlags(w io.Writer, fs *flag.FlagSet, env bool) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		if typ != "" {
			typ = " " + typ
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		note := ""
		if env {
			note = envNote(f)
		}
		fmt.Fprintf(w, "  --%s%s\n      %s%s%s\n", f.Name, typ, usage, note, def)
	})
}

// ParseFlags parses args, turning parse failures into usage errors and rejecting stray
// positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{Msg: err.Error()}
	}
	if v := fs.Lookup("version"); v != nil && v.Value.String() == "true" {
		return ErrVersion
	}
	if fs.NArg() > 0 {
		return UsageError{Msg: fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// EnvOr returns the environment variable's value, or def when it is unset or empty.
func EnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// ListFlag is a flag that may be repeated.
type ListFlag []string

func (l *ListFlag) String() string     { return strings.Join(*l, ",") }
func (l *ListFlag) Set(v string) error { *l = append(*l, v); return nil }

// RPCError renders a gRPC error for a person: the code, the message and each field violation.
func RPCError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", st.Code(), st.Message())
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fmt.Fprintf(&b, "\n  %s: %s", v.GetField(), v.GetDescription())
			}
		}
	}
	return errors.New(b.String())
}

// Rate formats a rate with a decimal when it is small (a CPU embedding model ingests a few
// papers a second).
func Rate(r float64) string {
	if r < 100 {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

// Program is the binary's name in usage lines and errors ("recommender", "recommender-lab").
var Program = "recommender"

// Main runs the binary named program: the subcommand args name, stopped by SIGINT or SIGTERM
// through its context; it exits with Run's code.
func Main(program, about string, commands []Command) {
	Program = program
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, about, commands, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Command is one subcommand of a binary.
type Command struct {
	Name, Summary string
	Run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	Hidden        bool // not listed in the usage (a command that moved, say)
}

// Run dispatches args to one of commands and returns the process exit code: 0 success, 1
// failure, 2 usage error, or a command's own (ExitError). about is the binary's one-line
// description for its usage.
func Run(ctx context.Context, about string, commands []Command, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(stdout, Version())
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, about, commands)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.Name != args[0] {
			continue
		}
		err := c.Run(ctx, args[1:], stdout, stderr)
		var ee ExitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, ErrVersion):
			fmt.Fprintln(stdout, Version())
			return 0
		case errors.As(err, &ee):
			fmt.Fprintf(stderr, "%s %s: %s\n", Program, c.Name, ee.Msg)
			return ee.Code
		case errors.As(err, new(UsageError)):
			fmt.Fprintf(stderr, "%s %s: %v\nRun '%s %s --help' for usage.\n", Program, c.Name, err, Program, c.Name)
			return 2
		default:
			fmt.Fprintf(stderr, "%s %s: %v\n", Program, c.Name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", Program, args[0])
	usage(stderr, about, commands)
	return 2
}

func usage(w io.Writer, about string, commands []Command) {
	fmt.Fprintf(w, "%s: %s\n", Program, about)
	fmt.Fprintf(w, "\nUsage: %s <command> [flags]\n\nCommands:\n", Program)
	for _, c := range commands {
		if !c.Hidden {
			fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
		}
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for the flags of a command, '%s --version' for the version.\n", Program, Program)
}

// Secret reads a key from file when one is named, else from the environment variable env:
// keys never come from flags, which other users of the machine can read.
func Secret(env, file, what string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}
