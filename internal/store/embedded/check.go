package embedded

import (
	"bytes"
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
	// Snapshot describes the index snapshot and the vectors files it goes with.
	Snapshot string
	Problems []string // empty when the directory is sound
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
				if err := checkMetaSum(path, meta); err != nil {
					problem("%v", err)
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
			// Every page of every bucket, read whole here, its keys in order. (Not bbolt's own
			// tx.Check: it runs in a goroutine of its own, where a damaged page's panic ends the
			// process before it could be reported.)
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return readAll(ctx, path, string(name), b) })
		})
	})
	var de *DamagedError
	if errors.As(err, &de) {
		problem("%v", err)
	} else if err != nil {
		return nil, err
	}
	r.ANN = checkANNFile(filepath.Join(dir, annFile), r.Version, problem)
	r.Snapshot = checkSnapshotFiles(dir, r.Version, problem)
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
	case len(head) >= len(annMagic) && head[:len(annMagic)] != annMagic && ofAnotherVersion(head, annMagic):
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

// checkSnapshotFiles describes the index snapshot and checks it and every vectors file against
// their checksums; damage is a problem (the next start reads the papers instead), a stale
// snapshot is not.
func checkSnapshotFiles(dir string, version uint64, problem func(string, ...any)) (state string) {
	path := filepath.Join(dir, snapFile)
	head, err := readHead(path, 256)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "absent (saved at the next clean stop)"
	case err != nil:
		problem("%s: %v", path, err)
		return "unreadable"
	}
	if err := verifyChecksum(path); err != nil {
		if ofAnotherVersion(head, snapMagic) {
			return "of another format (not used: the next start reads the papers)"
		}
		problem("%s: %v (not used: the next start reads the papers)", path, err)
		return "damaged"
	}
	var h snapHeader
	func() {
		defer func() {
			if recover() != nil {
				err = errors.New("header cut short")
			}
		}()
		h, err = (&snapReader{b: []byte(head)}).header()
	}()
	if err != nil {
		return fmt.Sprintf("%v (not used: the next start reads the papers)", err)
	}
	for slot := range h.dims {
		if h.dims[slot] == 0 {
			continue
		}
		vpath := filepath.Join(dir, slotFile(vectorsFile, slot))
		if fi, err := os.Stat(vpath); err != nil || fi.Size() != h.sizes[slot] {
			problem("%s does not go with %s: %d bytes expected (the next start reads the papers)", vpath, snapFile, h.sizes[slot])
			return "damaged"
		}
		if err := checkFileSum(vpath, h.sums[slot]); err != nil {
			problem("%v (the next start reads the papers)", err)
			return "damaged"
		}
	}
	if h.version != version {
		return fmt.Sprintf("checksums good, made at version %d, the papers are at %d (not used: the next start reads the papers)", h.version, version)
	}
	return "checksums good (the snapshot and its vectors files), matches the papers"
}

// readAll reads every key and value of bucket b (named name) and of the buckets nested in it,
// so that a damaged page fails here, where guard catches it, and checks that the keys come in
// order, as a b-tree's must: a damaged key or page header breaks it.
func readAll(ctx context.Context, path, name string, b *bolt.Bucket) error {
	var sum byte
	var prev []byte
	return b.ForEach(func(k, v []byte) error {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return &DamagedError{Path: path, Problem: fmt.Sprintf("the keys of bucket %q are out of order at %q", name, k)}
		}
		// Found walking the leaves, the key must be found searching from the root too: a
		// damaged key of a branch page sends the search to another page.
		if v != nil && b.Get(k) == nil {
			return &DamagedError{Path: path, Problem: fmt.Sprintf("bucket %q holds key %q, but a search for it does not reach it", name, k)}
		}
		prev = append(prev[:0], k...)
		if v == nil {
			if nested := b.Bucket(k); nested != nil {
				if err := readAll(ctx, path, name+"/"+string(k), nested); err != nil {
					return err
				}
			}
		}
		for _, c := range v {
			sum ^= c
		}
		return ctx.Err()
	})
}
