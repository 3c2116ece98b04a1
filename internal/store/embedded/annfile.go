package embedded

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/paperrec/recommender/internal/ann"
)

// ANNOptions configure the approximate index of dense vectors.
type ANNOptions struct {
	// Graph shapes the HNSW graph (M, ef_construction).
	Graph ann.Options
	// EfSearch is the candidate list of a graph search (at least the number of results asked).
	EfSearch int
	// ExactBelow: with fewer live papers than this, searches scan exactly, which is as fast.
	ExactBelow int
	// Quantization of the vectors the graph walk compares: "int8" (codes a quarter of the
	// float32 size, candidates rescored exactly; about twice as fast) or "none".
	Quantization string
}

// DefaultANN returns the defaults: M 16, ef_construction 200, ef_search 64, exact below 10,000,
// int8 quantization.
func DefaultANN() ANNOptions {
	return ANNOptions{Graph: ann.DefaultOptions(), EfSearch: 64, ExactBelow: 10_000, Quantization: "int8"}
}

// annFile keeps the graph between runs, so a restart does not rebuild it.
const annFile = "ann.idx"

// slotFile names slot's copy of a file: name itself for slot 0 (the files of stores from before
// there were two sets), name with "-1" before its extension for slot 1.
func slotFile(name string, slot int) string {
	if slot == 0 {
		return name
	}
	ext := filepath.Ext(name)
	return fmt.Sprintf("%s-%d%s", name[:len(name)-len(ext)], slot, ext)
}

// annMagic leads the file; version 2 ends with a CRC-32C of everything before it, so damage
// anywhere (a bad disk, a partial copy) is found before the graph is trusted.
const annMagic = "RECSTORE-ANN2\n"

// saveANN writes the graph with the store version it matches and the paper id of each node
// (doc numbers change between runs). Write, fsync, rename: a crash leaves the old file or the
// new one, and a stale one is recognised by its version.
func (s *Store) saveANN(ctx context.Context, slot int) error {
	x, vs := s.idx, &s.idx.sets[slot]
	if vs.ann == nil || vs.ann.Nodes() == 0 || vs.ann.Deleted() > 0 {
		return nil
	}
	return writeAtomic(ctx, filepath.Join(s.dir, slotFile(annFile, slot)), true, func(w io.Writer) error {
		buf := []byte(annMagic)
		buf = binary.BigEndian.AppendUint64(buf, s.version)
		buf = binary.AppendUvarint(buf, uint64(len(vs.annDocs)))
		for _, n := range vs.annDocs {
			buf = binary.AppendUvarint(buf, uint64(len(x.docs[n].id)))
			buf = append(buf, x.docs[n].id...)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		return vs.ann.Save(w)
	})
}

// loadANN reads the saved graph when its checksum holds and it matches the store's version;
// otherwise (no file, an older version, any damage) it builds the graph from the vectors, and
// says why.
func (s *Store) loadANN(slot int) (loaded bool, err error) {
	x := s.idx
	path := filepath.Join(s.dir, slotFile(annFile, slot))
	if head, err := readHead(path, len(annMagic)); err == nil && head != annMagic && ofAnotherVersion(head, annMagic) {
		s.log.Info("vector index file of another format; rebuilding it", "file", path)
		x.buildANN(slot)
		return false, nil
	}
	if err := verifyChecksum(path); errors.Is(err, os.ErrNotExist) {
		x.buildANN(slot)
		return false, nil
	} else if err != nil {
		s.log.Warn("vector index file damaged; rebuilding it from the vectors", "file", path, "error", err)
		x.buildANN(slot)
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := s.readANN(bufio.NewReaderSize(f, 1<<20), slot); err != nil {
		s.log.Info("vector index file does not match the papers; rebuilding it", "file", path, "reason", err)
		x.buildANN(slot)
		return false, nil
	}
	return true, nil
}

func (s *Store) readANN(r *bufio.Reader, slot int) error {
	x := s.idx
	magic := make([]byte, len(annMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != annMagic {
		return errors.New("not an index file")
	}
	var ver [8]byte
	if _, err := io.ReadFull(r, ver[:]); err != nil || binary.BigEndian.Uint64(ver[:]) != s.version {
		return errors.New("stale index")
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(len(x.docs)) {
		return errors.New("bad node count")
	}
	docs := make([]uint32, n)
	for i := range docs {
		l, err := binary.ReadUvarint(r)
		if err != nil || l > MaxIDLen {
			return errors.New("bad id")
		}
		id := make([]byte, l)
		if _, err := io.ReadFull(r, id); err != nil {
			return err
		}
		d, ok := x.byID[string(id)]
		if !ok || x.docs[d].dense[slot] == nil {
			return fmt.Errorf("node %d: paper %q has no vector", i, id)
		}
		docs[i] = d
	}
	g, err := ann.Load(r, x.annCfg.Graph, func(id uint32) []float32 { return x.docs[docs[id]].dense[slot] })
	if err != nil {
		return err
	}
	for i := range x.docs {
		x.docs[i].ann[slot], x.docs[i].listed[slot] = -1, false
	}
	for i, d := range docs {
		x.docs[d].ann[slot] = int32(i)
	}
	// Vectors the linker had not reached when the graph was saved wait for it again.
	var queued []uint32
	for i := range x.docs {
		if d := &x.docs[i]; d.alive && d.dense[slot] != nil && d.ann[slot] == -1 {
			d.ann[slot], d.listed[slot] = annQueued, true
			queued = append(queued, uint32(i))
		}
	}
	x.sets[slot] = vecSet{ann: g, annDocs: docs, queued: queued}
	return nil
}

// MaxIDLen bounds paper ids read from files.
const MaxIDLen = 1024

// readHead reads the first n bytes of a file (fewer if it is shorter).
func readHead(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, n)
	k, _ := io.ReadFull(f, b)
	return string(b[:k]), nil
}

// ofAnotherVersion reports whether head starts as a file of magic's kind, of another version
// ("RECSTORE-ANN1\n" for "RECSTORE-ANN2\n"): one an earlier build wrote, rebuilt quietly.
// Anything else that is not magic is damage.
func ofAnotherVersion(head, magic string) bool {
	if strings.HasPrefix(head, magic) {
		return false
	}
	rest, ok := strings.CutPrefix(head, strings.TrimRight(magic, "0123456789\n"))
	digits := len(rest) - len(strings.TrimLeft(rest, "0123456789"))
	return ok && digits > 0 && strings.HasPrefix(rest[digits:], "\n")
}
