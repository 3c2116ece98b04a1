package main

import (
	"context"
	"fmt"
	"io"

	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/store/embedded"
)

const checkHelp = `
Verifies an embedded store's data directory offline, with no server running on it: the papers
file's header and length, every page bbolt reaches, every paper record decoded, bbolt's own
consistency check, and the vector index file's checksum and version. Prints what it found;
exits 0 when the directory is sound, 1 when it found problems (each listed, with what to do).`

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("check", "--data-dir DIR", checkHelp, stderr)
	dir := fs.String("data-dir", "recommender-data", "the embedded store's directory (env RECOMMENDER_DATA_DIR)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cli.ApplyEnvTo(fs, "data-dir"); err != nil {
		return err
	}
	r, err := embedded.Check(ctx, *dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d papers, %d with a vector, version %d\n", embedded.FileName, r.Papers, r.Vectors, r.Version)
	if r.ANN != "" {
		fmt.Fprintf(stdout, "ann.idx: %s\n", r.ANN)
	}
	if r.Snapshot != "" {
		fmt.Fprintf(stdout, "index.snap: %s\n", r.Snapshot)
	}
	if r.OtherVectors > 0 {
		fmt.Fprintf(stdout, "vectors beside the records (a store moved to another model): %d; ann-1.idx: %s\n", r.OtherVectors, r.ANN1)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(stdout, "no problems found")
		return nil
	}
	for _, p := range r.Problems {
		fmt.Fprintf(stdout, "problem: %s\n", p)
	}
	return fmt.Errorf("%s: problems found (listed above)", *dir)
}
