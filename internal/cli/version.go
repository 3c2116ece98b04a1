package cli

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
)

// ErrVersion is what ParseFlags returns for --version: the command prints the version and
// exits 0 without doing anything else.
var ErrVersion = errors.New("version requested")

// Version names this build: the module version (a tag when installed with go install), the
// commit and its time when built from a checkout, and the Go release.
func Version() string {
	v, rev, when, dirty := "(devel)", "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	out := Program + " " + v
	if rev != "" {
		out += fmt.Sprintf(", commit %.12s", rev)
		if dirty {
			out += " with local changes"
		}
		if when != "" {
			out += " of " + when
		}
	}
	return out + ", " + runtime.Version()
}
