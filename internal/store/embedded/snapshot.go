package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/mmap"
)

// snapFile holds the in-memory index (papers' filter fields, lengths and sketches, and the
// postings) from a clean close to the next open, which reads it instead of decoding every record
// and rebuilding the postings. It is written after the vectors files it goes with, and deleted
// once read: a snapshot is only ever the state of the close just before, and a crash between
// two opens leaves none (that open reads the records).
const snapFile = "index.snap"

const snapMagic = "RECSTORE-SNAP1\n"

// postingSize is the bytes of one posting in memory and in the snapshot (doc, tf).
const postingSize = int(unsafe.Sizeof(posting{}))

// saveSnapshot writes the vectors files and then the snapshot, each to a temporary file made
// durable and renamed. Called by Close with the locks held.
func (s *Store) saveSnapshot() error {
	x := s.idx
	if s.unretired > 0 {
		return nil // records still hold a retired set's vectors: the next open reads them
	}
	live := make([]uint32, 0, x.live)
	for i := range x.docs {
		if x.docs[i].alive {
			live = append(live, uint32(i))
		}
	}
	var dims [2]int
	var sizes [2]int64
	for slot := range dims {
		if slot == 1 && s.specs[1].Model == "" {
			continue
		}
		for _, n := range live {
			v := x.docs[n].dense[slot]
			if v == nil {
				continue
			}
			if dims[slot] == 0 {
				dims[slot] = len(v)
			}
			if len(v) != dims[slot] {
				return fmt.Errorf("slot %d holds vectors of %d and %d dimensions", slot, dims[slot], len(v))
			}
			sizes[slot] += int64(4 * len(v))
		}
		err := writeAtomic(filepath.Join(s.dir, slotFile(vectorsFile, slot)), false, func(w io.Writer) error {
			for _, n := range live {
				if v := x.docs[n].dense[slot]; v != nil {
					if _, err := w.Write(unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return writeAtomic(filepath.Join(s.dir, snapFile), true, func(w io.Writer) error {
		return s.writeSnapshot(w, live, dims, sizes)
	})
}

func (s *Store) writeSnapshot(w io.Writer, live []uint32, dims [2]int, sizes [2]int64) error {
	x := s.idx
	renum := make([]uint32, len(x.docs)) // old doc number -> new; only live docs are read
	for i, n := range live {
		renum[n] = uint32(i)
	}
	var b []byte
	b = append(b, snapMagic...)
	b = binary.BigEndian.AppendUint64(b, s.version)
	b = binary.AppendUvarint(b, uint64(len(live)))
	for slot := range dims {
		b = binary.AppendUvarint(b, uint64(dims[slot]))
		b = binary.AppendUvarint(b, uint64(sizes[slot]))
	}
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(x.sumLen))
	// Strings, as one block read into one string.
	var str []byte
	for _, n := range live {
		d := &x.docs[n]
		str = appendString(str, d.id)
		str = binary.AppendVarint(str, int64(d.year))
		for _, list := range [][]string{d.categories, d.authors} {
			str = binary.AppendUvarint(str, uint64(len(list)))
			for _, v := range list {
				str = appendString(str, v)
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(len(str)))
	if _, err := w.Write(append(b, str...)); err != nil {
		return err
	}
	// Fixed-size fields.
	b = b[:0]
	for _, n := range live {
		d := &x.docs[n]
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(d.length))
		var flags byte
		for slot := range d.dense {
			if d.dense[slot] != nil {
				flags |= 1 << slot
			}
		}
		b = append(b, flags)
		b = d.sketch.AppendBinary(b)
		if len(b) > 1<<20 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	// Postings, renumbered, without dead docs' (their order is kept: renumbering is monotone).
	b = binary.AppendUvarint(b, uint64(len(x.terms)))
	var buf []posting
	for t, ti := range x.termOf {
		e := &x.terms[ti]
		ps := e.ps
		if x.dead > 0 {
			buf = buf[:0]
			for _, p := range e.ps {
				if x.docs[p.doc].alive {
					buf = append(buf, posting{doc: renum[p.doc], tf: p.tf})
				}
			}
			ps = buf
		}
		b = binary.LittleEndian.AppendUint32(b, t)
		b = binary.LittleEndian.AppendUint32(b, uint32(e.df))
		b = binary.AppendUvarint(b, uint64(len(ps)))
		if _, err := w.Write(b); err != nil {
			return err
		}
		b = b[:0]
		if len(ps) > 0 {
			if _, err := w.Write(unsafe.Slice((*byte)(unsafe.Pointer(&ps[0])), postingSize*len(ps))); err != nil {
				return err
			}
		}
	}
	_, err := w.Write(b)
	return err
}

// errNoSnapshot: there is no snapshot to read (the records are).
var errNoSnapshot = errors.New("no snapshot")

// loadSnapshot reads the snapshot into the (empty) index and maps the vectors files, then
// deletes the snapshot. errNoSnapshot, or another error saying why it could not be used, means
// the caller reads the records instead; the index is then left empty.
func (s *Store) loadSnapshot() error {
	path := filepath.Join(s.dir, snapFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return errNoSnapshot
	}
	defer os.Remove(path)
	if err := verifyChecksum(path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = s.readSnapshot(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		_ = s.unmap()
		s.idx = newIndex(s.idx.annCfg)
	}
	return err
}

func (s *Store) readSnapshot(r *bufio.Reader) (err error) {
	defer func() { // a short or damaged file reads as garbage; the checksum makes this unlikely
		if p := recover(); p != nil {
			err = fmt.Errorf("unreadable snapshot: %v", p)
		}
	}()
	x := s.idx
	head := make([]byte, len(snapMagic)+8)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:len(snapMagic)]) != snapMagic {
		return errors.New("not a snapshot")
	}
	if v := binary.BigEndian.Uint64(head[len(snapMagic):]); v != s.version {
		return fmt.Errorf("snapshot of version %d, the papers are at %d", v, s.version)
	}
	uv := func() uint64 {
		v, err := binary.ReadUvarint(r)
		if err != nil {
			panic(err)
		}
		return v
	}
	full := func(n uint64) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			panic(err)
		}
		return b
	}
	ndocs := int(uv())
	var dims [2]int
	var sizes [2]int64
	for slot := range dims {
		dims[slot], sizes[slot] = int(uv()), int64(uv())
	}
	x.sumLen = math.Float64frombits(binary.BigEndian.Uint64(full(8)))
	var flat [2][]float32
	for slot := range dims {
		if dims[slot] == 0 {
			continue
		}
		path := filepath.Join(s.dir, slotFile(vectorsFile, slot))
		if fi, err := os.Stat(path); err != nil || fi.Size() != sizes[slot] {
			return fmt.Errorf("%s does not go with the snapshot", path)
		}
		v, unmap, err := mmap.Floats(path)
		if err != nil {
			return err
		}
		s.unmaps = append(s.unmaps, unmap)
		flat[slot] = v
	}

	str := string(full(uv())) // one allocation; the docs' strings are slices of it
	pos := 0
	next := func() uint64 {
		v, n := binary.Uvarint([]byte(str[pos:min(len(str), pos+binary.MaxVarintLen64)]))
		if n <= 0 {
			panic("bad varint")
		}
		pos += n
		return v
	}
	text := func() string {
		n := int(next())
		v := str[pos : pos+n]
		pos += n
		return v
	}
	x.docs = make([]doc, ndocs)
	x.lengths = make([]float32, ndocs)
	x.byID = make(map[string]uint32, ndocs)
	for i := range x.docs {
		d := &x.docs[i]
		d.id = text()
		y, n := binary.Varint([]byte(str[pos:min(len(str), pos+binary.MaxVarintLen64)]))
		if n <= 0 {
			panic("bad year")
		}
		pos += n
		d.year = int32(y)
		for _, list := range []*[]string{&d.categories, &d.authors} {
			*list = make([]string, next())
			for j := range *list {
				(*list)[j] = text()
			}
		}
		d.alive, d.ann = true, [2]int32{-1, -1}
		x.byID[d.id] = uint32(i)
	}
	fixed := full(uint64(ndocs * (5 + lexical.SketchSize)))
	var off [2]int
	for i := range x.docs {
		d, b := &x.docs[i], fixed[i*(5+lexical.SketchSize):]
		d.length = math.Float32frombits(binary.LittleEndian.Uint32(b))
		x.lengths[i] = d.length
		for slot := range dims {
			if b[4]&(1<<slot) != 0 {
				n := dims[slot]
				d.dense[slot] = flat[slot][off[slot] : off[slot]+n : off[slot]+n]
				off[slot] += n
			}
		}
		d.sketch.SetBinary(b[5:])
	}
	nterms := int(uv())
	x.terms = make([]term, nterms)
	x.termOf = make(map[uint32]int32, nterms)
	for i := range x.terms {
		h := full(8)
		t := binary.LittleEndian.Uint32(h)
		x.terms[i].df = int32(binary.LittleEndian.Uint32(h[4:]))
		ps := make([]posting, uv())
		if len(ps) > 0 {
			if _, err := io.ReadFull(r, unsafe.Slice((*byte)(unsafe.Pointer(&ps[0])), postingSize*len(ps))); err != nil {
				panic(err)
			}
		}
		x.terms[i].ps = ps
		x.termOf[t] = int32(i)
	}
	x.live = ndocs
	return nil
}

// writeAtomic writes a file through a temporary one, made durable and renamed over it: a crash
// leaves the old file or the new one. With checksum, the file ends with the CRC-32C of the rest
// (verifyChecksum).
func writeAtomic(path string, checksum bool, write func(io.Writer) error) error {
	f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	sum := crc32.New(crcTable)
	w := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	err = write(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil && checksum {
		_, err = f.Write(binary.BigEndian.AppendUint32(nil, sum.Sum32()))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path + ".tmp")
		return err
	}
	return os.Rename(path+".tmp", path)
}
