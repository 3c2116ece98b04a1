package embedded

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// DamagedError says a store file is damaged, which file and what to do about it.
type DamagedError struct {
	Path, Problem string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is damaged: %s. Restore the data directory from a backup, or move it aside and "+
		"start with an empty one and backfill again (`recommender check --data-dir %s` describes the damage)",
		e.Path, e.Problem, filepath.Dir(e.Path))
}

// MissingError refuses a data directory whose papers file is missing or empty while the files
// derived from it remain: the papers were lost (a restore that missed a file, a wrong volume),
// and starting empty would hide it.
type MissingError struct {
	Dir, Found string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("data directory %s holds %s but no papers (%s is missing or empty): restore %s, "+
		"or start an empty store there on purpose (--allow-empty-store)", e.Dir, e.Found, FileName, FileName)
}

// checkMissing applies the MissingError rule before bbolt creates an empty file.
func checkMissing(dir string, allowEmpty bool) error {
	if allowEmpty {
		return nil
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err == nil && fi.Size() > 0 {
		return nil
	}
	for _, name := range []string{annFile, vectorsFile, snapFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return &MissingError{Dir: dir, Found: name}
		}
	}
	return nil
}

// boltMagic and the offsets below are bbolt's file format (internal/common): each of the two
// meta pages is a 16-byte page header, then magic, version, page size, flags (uint32 each),
// the root bucket (16 bytes), the freelist page, the high-water page id, the transaction id
// (uint64 each) and an FNV-64a checksum of the 56 bytes before it, in host order
// (little-endian on the platforms we build for).
const (
	boltMagic      = 0xED0CDAED
	boltPageHeader = 16
	boltMetaSumLen = 56
)

// boltMeta is what a meta page says about the file.
type boltMeta struct {
	pageSize  uint32
	highWater uint64 // pages in use
	txid      uint64
}

// checkBoltFile reads the database file's meta pages and refuses a file shorter than they say,
// before bbolt maps it: reading a page past the end of a mapped file is SIGBUS, which kills the
// process with no chance to say why.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	first := make([]byte, 4096)
	n, _ := io.ReadFull(f, first)
	m0, ok0 := parseBoltMeta(first[:n])
	best, ok := m0, ok0
	if ok0 || n >= boltPageHeader+boltMetaSumLen+8 {
		// The second meta page sits one page further; its size comes from the first when valid.
		size := int64(4096)
		if ok0 {
			size = int64(m0.pageSize)
		}
		second := make([]byte, boltPageHeader+boltMetaSumLen+8)
		if k, _ := f.ReadAt(second, size); k == len(second) {
			if m1, ok1 := parseBoltMeta(second); ok1 && (!ok || m1.txid > best.txid) {
				best, ok = m1, true
			}
		}
	}
	if !ok {
		return &DamagedError{Path: path, Problem: "neither of its two header pages is valid"}
	}
	if need := int64(best.highWater) * int64(best.pageSize); fi.Size() < need {
		return &DamagedError{Path: path, Problem: fmt.Sprintf("it is %d bytes long but its header says %d (truncated)", fi.Size(), need)}
	}
	return nil
}

func parseBoltMeta(page []byte) (boltMeta, bool) {
	if len(page) < boltPageHeader+boltMetaSumLen+8 {
		return boltMeta{}, false
	}
	m := page[boltPageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSumLen])
	if h.Sum64() != le.Uint64(m[boltMetaSumLen:]) {
		return boltMeta{}, false
	}
	meta := boltMeta{pageSize: le.Uint32(m[8:]), highWater: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if meta.pageSize < 512 || meta.pageSize > 1<<20 {
		return boltMeta{}, false
	}
	return meta, true
}

// guard runs fn, turning a panic (bbolt asserts on damaged pages) and a fault on mapped memory
// (a page the file no longer has) into a DamagedError about path.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Path: path, Problem: fmt.Sprintf("reading it failed (%v)", r)}
		}
	}()
	return fn()
}

// crcTable is CRC-32C (Castagnoli), which CPUs compute in hardware.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// verifyChecksum checks a file written as content then the CRC-32C of the content (4 bytes,
// big-endian), streaming it once.
func verifyChecksum(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < 4 {
		return errors.New("shorter than its checksum")
	}
	h := crc32.New(crcTable)
	if _, err := io.CopyN(h, f, fi.Size()-4); err != nil {
		return err
	}
	var sum [4]byte
	if _, err := io.ReadFull(f, sum[:]); err != nil {
		return err
	}
	if got, want := h.Sum32(), binary.BigEndian.Uint32(sum[:]); got != want {
		return fmt.Errorf("checksum %08x, the file says %08x", got, want)
	}
	return nil
}

// view and update run a bbolt transaction under guard. The open does not read every page (the
// free list is on disk, and the index comes from the snapshot when there is one), so a damaged
// page can first be met by a read or a write, which then fails with a DamagedError instead of
// stopping the process.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	return guard(s.db.Path(), func() error { return s.db.View(fn) })
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return guard(s.db.Path(), func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return sealMeta(tx)
		})
	})
}

// keyMetaSum holds the CRC-32C of the rest of the meta bucket (the store's version, its models,
// its active vector set), rewritten by every write transaction: a damaged setting would
// otherwise read as another model, and the store would serve as if bound to it.
var keyMetaSum = []byte("meta_crc32c")

func metaSum(meta *bolt.Bucket) uint32 {
	sum := crc32.New(crcTable)
	_ = meta.ForEach(func(k, v []byte) error { // keys in order: the sum is deterministic
		if !bytes.Equal(k, keyMetaSum) {
			sum.Write(binary.AppendUvarint(nil, uint64(len(k))))
			sum.Write(k)
			sum.Write(binary.AppendUvarint(nil, uint64(len(v))))
			sum.Write(v)
		}
		return nil
	})
	return sum.Sum32()
}

func sealMeta(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	want := binary.BigEndian.AppendUint32(nil, metaSum(meta))
	if bytes.Equal(meta.Get(keyMetaSum), want) {
		return nil
	}
	return meta.Put(keyMetaSum, want)
}

// checkMetaSum refuses settings that fail their checksum; a store written before there was one
// has none, and gets one with its next write.
func checkMetaSum(path string, meta *bolt.Bucket) error {
	got := meta.Get(keyMetaSum)
	if got == nil {
		return nil
	}
	if len(got) != 4 || binary.BigEndian.Uint32(got) != metaSum(meta) {
		return &DamagedError{Path: path, Problem: "its settings (the store's version and embedding models) fail their checksum"}
	}
	return nil
}
