package cli

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the environment variable of a serve flag, by one rule: the flag in upper case
// with underscores, prefixed RECOMMENDER_ unless it names its own system (qdrant-*,
// embedding-*, reembed-*, whose variables are QDRANT_*, EMBEDDING_*, REEMBED_*).
func EnvName(flagName string) string {
	n := strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
	switch strings.SplitN(flagName, "-", 2)[0] {
	case "qdrant", "embedding", "reembed":
		return n
	}
	return "RECOMMENDER_" + n
}

// ApplyEnv sets each flag of fs not given on the command line from its variable, when that is
// set and not empty (or empty, for a flag whose empty value means something: see
// emptyIsAValue). Call it after ParseFlags: a flag given wins. This is where every variable of a
// flag is read: flags are registered with plain defaults.
func ApplyEnv(fs *flag.FlagSet) error { return applyEnv(fs, nil) }

// ApplyEnvTo is ApplyEnv over the named flags of fs only, for a command whose other flags have
// no variable (a client's --server, say).
func ApplyEnvTo(fs *flag.FlagSet, names ...string) error {
	only := make(map[string]bool, len(names))
	for _, n := range names {
		only[n] = true
	}
	return applyEnv(fs, only)
}

// emptyIsAValue is implemented by flag values for which "set to empty" differs from "not set"
// (an instruction prefix: "" is none, unset is the model's preset).
type emptyIsAValue interface{ EmptyIsAValue() bool }

// applyEnv is ApplyEnv over the flags named in only (nil: every flag).
func applyEnv(fs *flag.FlagSet, only map[string]bool) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] || f.Name == "version" || (only != nil && !only[f.Name]) {
			return
		}
		name := EnvName(f.Name)
		_, emptyCounts := f.Value.(emptyIsAValue)
		if v, ok := os.LookupEnv(name); ok && (v != "" || emptyCounts) {
			if e := fs.Set(f.Name, v); e != nil {
				err = UsageError{Msg: fmt.Sprintf("%s=%q is no value for --%s: %v", name, v, f.Name, e)}
			}
		}
	})
	return err
}

// envNote is what --help adds to a flag's description: its variable, unless the description
// names it already.
func envNote(f *flag.Flag) string {
	if f.Name == "version" || strings.Contains(f.Usage, "(env "+EnvName(f.Name)) {
		return ""
	}
	return " (env " + EnvName(f.Name) + ")"
}
