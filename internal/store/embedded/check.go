package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Report is what Check found in a data directory.
type Report struct {
	Papers, Vectors int    // records, and records with a vector
	Version         uint64 // the store's write counter
	ANN             string // the vector index file's state
	// OtherVectors counts the vectors kept beside the records (slot 1: a store that moved to
	// another model) and ANN1 describes their index file.
	OtherVectors int
	ANN1         string
	Problems     []string // empty when the directory is sound
}

// maxProblems bounds the problems a report lists; the count goes on.
const maxProblems = 20

// Check verifies a data directory offline (no server may have it open): the papers file's
// header and size, every page bbolt reaches from the root, every record decoded, bbolt's own
// consistency check, and the vector index file's checksum and version. It returns an error only when it cannot look.
// When bbolt fails inside its open, the file stays locked until the process ends.
func Check(ctx context.Context, dir string) (*Report, error) {
	r := &Report{}
	problem := func(format string, args ...any) {
		if len(r.Problems) < maxProblems {
			r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
		}
	}
	path := filepath.Join(dir, FileName)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		if err := checkMissing(dir, false); err != nil {
			problem("%v", err)
		} else {
			problem("%s is missing or empty: not a data directory yet", path)
		}
		return r, nil
	}
	if err := checkBoltFile(path); err != nil {
		problem("%v", err)
		return r, nil
	}
	err := guard(path, func() error {
		// Read-only, loading the free list (from its page, or for a file written without one by
		// walking every page reachable from the root), then reading every record, in this
		// goroutine, where a damaged page's assertion is caught. (bbolt's tx.Check runs in a
		// goroutine of its own, where nothing could catch it, so it is not used.)
		db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second, PreLoadFreelist: true})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return fmt.Errorf("data directory %s is in use by a running server: stop it first", dir)
		}
		if err != nil {
			problem("%s: %v", path, err)
			return nil
		}
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			if meta := tx.Bucket(bucketMeta); meta != nil {
				if v := meta.Get(keyVersion); len(v) == 8 {
					r.Version = binary.BigEndian.Uint64(v)
				}
			}
			papers := tx.Bucket(bucketPapers)
			if papers == nil {
				problem("%s has no papers bucket", path)
				return nil
			}
			err := papers.ForEach(func(k, v []byte) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				p, err := decodeRecord(v)
				switch {
				case err != nil:
					problem("paper %q: %v", k, err)
				case p.ID != string(k):
					problem("paper %q: the record says id %q", k, p.ID)
				default:
					r.Papers++
					if len(p.Dense) > 0 {
						r.Vectors++
					}
				}
				return nil
			})
			if err != nil || len(r.Problems) > 0 {
				return err
			}
			if v1 := tx.Bucket(bucketVectors1); v1 != nil {
				err = v1.ForEach(func(k, v []byte) error {
					if _, err := decodeSetVector(v); err != nil {
						problem("the second-set vector of paper %q: %v", k, err)
					} else if papers.Get(k) == nil {
						problem("a second-set vector for paper %q, which is not stored", k)
					}
					r.OtherVectors++
					return ctx.Err()
				})
				if err != nil {
					return err
				}
			}
			// Every page of every bucket, read whole here, then bbolt's own consistency check
			// (pages used twice, pages neither used nor free), which runs in a goroutine of its
			// own where a damaged page could not be caught, so only after the walk.
			err = tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
				var sum byte
				return b.ForEach(func(k, v []byte) error {
					for _, c := range v {
						sum ^= c
					}
					return ctx.Err()
				})
			})
			if err != nil {
				return err
			}
			for err := range tx.Check() {
				problem("%s: %v", path, err)
			}
			return nil
		})
	})
	var de *DamagedError
	if errors.As(err, &de) {
		problem("%v", err)
	} else if err != nil {
		return nil, err
	}
	r.ANN = checkANNFile(filepath.Join(dir, annFile), r.Version, problem)
	if r.OtherVectors > 0 {
		r.ANN1 = checkANNFile(filepath.Join(dir, slotFile(annFile, 1)), r.Version, problem)
	}
	return r, nil
}

// checkANNFile describes the vector index file; damage is a problem, a stale file is not (the
// next start rebuilds it).
func checkANNFile(path string, version uint64, problem func(string, ...any)) string {
	head, err := readHead(path, len(annMagic)+8)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "absent (built at the next start when there are vectors)"
	case err != nil:
		problem("%s: %v", path, err)
		return "unreadable"
	case len(head) < len(annMagic) || head[:len(annMagic)] != annMagic:
		return "of another format (rebuilt at the next start)"
	}
	if err := verifyChecksum(path); err != nil {
		problem("%s: %v (the next start rebuilds it)", path, err)
		return "damaged"
	}
	if len(head) < len(annMagic)+8 {
		return "damaged"
	}
	if v := binary.BigEndian.Uint64([]byte(head[len(annMagic):])); v != version {
		return fmt.Sprintf("checksum good, made at version %d, the papers are at %d (rebuilt at the next start)", v, version)
	}
	return "checksum good, matches the papers"
}
