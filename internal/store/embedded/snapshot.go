package embedded

import (
	"bufio"
	"context"
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

// snapFile holds the in-memory index (papers' filter fields, titles and dates, lengths and
// sketches, and the postings) from a clean close to the next open, which reads it instead of
// decoding every record and rebuilding the postings. It is written after the vectors files it
// goes with, and deleted once read: a snapshot is only ever the state of the close just before,
// and a crash between two opens leaves none (that open reads the records).
const snapFile = "index.snap"

const snapMagic = "RECSTORE-SNAP5\n" // 5: the vectors files' checksums

// postingSize is the bytes of one posting in memory and in the snapshot (doc, tf).
const postingSize = int(unsafe.Sizeof(posting{}))

// saveSnapshot writes the vectors files and then the snapshot, each to a temporary file made
// durable and renamed. Called by Close with the locks held.
func (s *Store) saveSnapshot(ctx context.Context) error {
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
	var sums [2]uint32 // CRC-32C of each vectors file, kept in the snapshot: the file is raw floats
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
		err := writeAtomic(ctx, filepath.Join(s.dir, slotFile(vectorsFile, slot)), false, func(w io.Writer) error {
			for _, n := range live {
				if v := x.docs[n].dense[slot]; v != nil {
					b := unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
					sums[slot] = crc32.Update(sums[slot], crcTable, b)
					if _, err := w.Write(b); err != nil {
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
	return writeAtomic(ctx, filepath.Join(s.dir, snapFile), true, func(w io.Writer) error {
		cw := &countingWriter{w: w}
		return s.writeSnapshot(cw, &cw.n, live, dims, sizes, sums)
	})
}

func (s *Store) writeSnapshot(w io.Writer, written *int64, live []uint32, dims [2]int, sizes [2]int64, sums [2]uint32) error {
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
		b = binary.BigEndian.AppendUint32(b, sums[slot])
	}
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(x.sumLen))
	b = binary.BigEndian.AppendUint32(b, math.Float32bits(x.boundAvg))
	// Strings, as one block read into one string.
	var str []byte
	for _, n := range live {
		d := &x.docs[n]
		for _, v := range []string{d.id, d.title, d.date} {
			str = appendString(str, v)
		}
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
	// The term table (id, df, maxW, postings), then, 8-byte aligned, every term's postings in one
	// block that the next open maps instead of reading: renumbered, without dead docs' (their
	// order is kept: renumbering is monotone).
	keep := func(p posting) bool { return x.dead == 0 || x.docs[p.doc].alive }
	b = binary.AppendUvarint(b, uint64(len(x.terms)))
	ids := make([]uint32, len(x.terms))
	x.termOf.each(func(t uint32, ti int32) { ids[ti] = t })
	for ti := range x.terms {
		e := &x.terms[ti]
		n := len(e.ps)
		if x.dead > 0 {
			n = 0
			for _, p := range e.ps {
				if keep(p) {
					n++
				}
			}
		}
		b = binary.LittleEndian.AppendUint32(b, ids[ti])
		b = binary.LittleEndian.AppendUint32(b, uint32(e.df))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(e.maxW))
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		if len(b) > 1<<20 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if pad := (8 - *written%8) % 8; pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	var buf []posting
	for ti := range x.terms {
		ps := x.terms[ti].ps
		if x.dead > 0 {
			buf = buf[:0]
			for _, p := range ps {
				if keep(p) {
					buf = append(buf, posting{doc: renum[p.doc], tf: p.tf})
				}
			}
			ps = buf
		}
		if len(ps) > 0 {
			if _, err := w.Write(unsafe.Slice((*byte)(unsafe.Pointer(&ps[0])), postingSize*len(ps))); err != nil {
				return err
			}
		}
	}
	return nil
}

// errNoSnapshot: there is no snapshot to read (the records are).
var errNoSnapshot = errors.New("no snapshot")

// loadSnapshot maps the snapshot and builds the index from it, the postings staying in the
// mapping (in the page cache, read as queries touch them), maps the vectors files, and deletes the
// snapshot (the mapping outlives the name). errNoSnapshot, or another error saying why it could
// not be used, means the caller reads the records instead; the index is then left empty.
func (s *Store) loadSnapshot() (err error) {
	path := filepath.Join(s.dir, snapFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return errNoSnapshot
	}
	defer func() {
		if !errors.As(err, new(*DamagedError)) { // kept, to refuse the next start too
			_ = os.Remove(path)
		}
	}()
	b, unmap, err := mmap.Bytes(path)
	if err != nil {
		return err
	}
	s.unmaps = append(s.unmaps, unmap)
	if len(b) < 4 {
		err = errors.New("shorter than its checksum")
	} else {
		// The checksum is computed while the index is built (two cores), and the index kept
		// only if it holds.
		sum := make(chan error, 1)
		go func() {
			if err := checkSum(b); err != nil {
				sum <- fmt.Errorf("%w: %s: %v", errDerivedDamaged, path, err)
				return
			}
			sum <- nil
		}()
		readErr := s.readSnapshot(b[:len(b)-4])
		if err = <-sum; err == nil { // a damaged snapshot's contents say nothing, its version included
			err = readErr
		}
	}
	if err != nil {
		_ = s.unmap()
		s.idx = newIndex(s.idx.annCfg, s.idx.prune)
		return err
	}
	// Reading it (the checksum) brought every page into the process; what was copied out is not
	// needed again, and postings come back as queries read them, so serving RSS is what serving
	// touches. Only a hint: an error changes nothing.
	_ = mmap.Release(b)
	return nil
}

// checkSum checks mapped content followed by its CRC-32C, as verifyChecksum does for a file,
// a part at a time, releasing each part once summed (mmap.Release): the whole file is read, but
// never resident all at once, so RSS while opening stays near RSS while serving.
func checkSum(b []byte) error {
	if len(b) < 4 {
		return errors.New("shorter than its checksum")
	}
	const part = 64 << 20 // a multiple of the page size, as Release needs
	body := b[:len(b)-4]
	var got uint32
	for off := 0; off < len(body); off += part {
		p := body[off:min(off+part, len(body))]
		got = crc32.Update(got, crcTable, p)
		_ = mmap.Release(p)
	}
	want := binary.BigEndian.Uint32(b[len(b)-4:])
	if got != want {
		return fmt.Errorf("checksum %08x, the file says %08x", got, want)
	}
	return nil
}

// snapReader reads a mapped snapshot; a read past its end panics, which readSnapshot recovers.
type snapReader struct {
	b   []byte
	pos int
}

func (r *snapReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b[r.pos:])
	if n <= 0 {
		panic("bad varint")
	}
	r.pos += n
	return v
}

// varint decodes binary.AppendVarint's zig-zag form.
func (r *snapReader) varint() int64 {
	u := r.uvarint()
	if u&1 != 0 {
		return ^int64(u >> 1)
	}
	return int64(u >> 1)
}

func (r *snapReader) next(n int) []byte {
	v := r.b[r.pos : r.pos+n]
	r.pos += n
	return v
}

// snapHeader is what a snapshot says before its index: the store version it was made at, its
// papers, and each vectors file's dimensions, size and checksum.
type snapHeader struct {
	version uint64
	docs    int
	dims    [2]int
	sizes   [2]int64
	sums    [2]uint32
}

func (r *snapReader) header() (h snapHeader, err error) {
	if string(r.next(len(snapMagic))) != snapMagic {
		return h, errors.New("not a snapshot of this format")
	}
	h.version = binary.BigEndian.Uint64(r.next(8))
	h.docs = int(r.uvarint())
	for slot := range h.dims {
		h.dims[slot], h.sizes[slot] = int(r.uvarint()), int64(r.uvarint())
		h.sums[slot] = binary.BigEndian.Uint32(r.next(4))
	}
	return h, nil
}

func (s *Store) readSnapshot(b []byte) (err error) {
	defer func() { // a damaged file reads as garbage; the checksum makes this unlikely
		if p := recover(); p != nil {
			err = fmt.Errorf("unreadable snapshot: %v", p)
		}
	}()
	x := s.idx
	r := &snapReader{b: b}
	h, err := r.header()
	if err != nil {
		return err
	}
	if h.version > s.version { // saved by a clean stop, after every write it knew was durable
		return &DamagedError{Path: filepath.Join(s.dir, FileName), Problem: fmt.Sprintf("it is at version %d, older than the index "+
			"snapshot its last clean stop saved (version %d): a damaged header page has lost its latest writes (restored "+
			"from a backup on purpose? then delete %s and %s)", s.version, h.version, snapFile, annFile)}
	}
	if h.version != s.version {
		return fmt.Errorf("snapshot of version %d, the papers are at %d", h.version, s.version)
	}
	ndocs, dims, sizes, sums := h.docs, h.dims, h.sizes, h.sums
	x.sumLen = math.Float64frombits(binary.BigEndian.Uint64(r.next(8)))
	x.boundAvg = math.Float32frombits(binary.BigEndian.Uint32(r.next(4)))
	var flat [2][]float32
	for slot := range dims {
		if dims[slot] == 0 {
			continue
		}
		path := filepath.Join(s.dir, slotFile(vectorsFile, slot))
		if fi, err := os.Stat(path); err != nil || fi.Size() != sizes[slot] {
			return fmt.Errorf("%s does not go with the snapshot", path)
		}
		if err := checkFileSum(path, sums[slot]); err != nil {
			return err
		}
		ff, err := s.mapFloats(path)
		if err != nil {
			return err
		}
		flat[slot] = ff.Flat
	}

	// The strings block (one copy; the docs' strings are slices of it), the fixed-size fields,
	// then the terms, which are read beside the docs.
	sr := &snapReader{b: []byte(string(r.next(int(r.uvarint()))))}
	const fixedSize = 5 + lexical.SketchSize
	fixed := r.next(ndocs * fixedSize)
	terms := make(chan error, 1)
	go func() { terms <- x.readTerms(r) }()
	defer func() { // also after a panic: not to return while it still writes the index
		if e := <-terms; err == nil {
			err = e
		}
	}()
	str := unsafe.String(unsafe.SliceData(sr.b), len(sr.b))
	text := func() string {
		n := int(sr.uvarint())
		v := str[sr.pos : sr.pos+n]
		sr.pos += n
		return v
	}
	x.docs = make([]doc, ndocs)
	x.lengths = make([]float32, ndocs)
	x.byID = make(map[string]uint32, ndocs)
	for i := range x.docs {
		d := &x.docs[i]
		d.id, d.title, d.date = text(), text(), text()
		d.year = int32(sr.varint())
		for _, list := range []*[]string{&d.categories, &d.authors} {
			*list = make([]string, sr.uvarint())
			for j := range *list {
				(*list)[j] = text()
			}
		}
		d.alive, d.ann = true, [2]int32{-1, -1}
		x.byID[d.id] = uint32(i)
	}
	var off [2]int
	for i := range x.docs {
		d, f := &x.docs[i], fixed[i*fixedSize:]
		d.length = math.Float32frombits(binary.LittleEndian.Uint32(f))
		x.lengths[i] = d.length
		for slot := range dims {
			if f[4]&(1<<slot) != 0 {
				n := dims[slot]
				d.dense[slot] = flat[slot][off[slot] : off[slot]+n : off[slot]+n]
				off[slot] += n
			}
		}
		d.sketch.SetBinary(f[5:])
	}
	x.live = ndocs
	return nil
}

// readTerms builds the term table, its postings left in the mapping, from what follows the
// docs; it runs beside the docs' parsing.
func (x *index) readTerms(r *snapReader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("unreadable snapshot: %v", p)
		}
	}()
	nterms := int(r.uvarint())
	const entry = 16
	table := r.next(entry * nterms)
	r.pos += (8 - r.pos%8) % 8
	all := unsafe.Slice((*posting)(unsafe.Pointer(unsafe.SliceData(r.b[r.pos:]))), (len(r.b)-r.pos)/postingSize)
	x.terms = make([]term, nterms)
	x.termOf = newTermTable(nterms)
	at := 0
	for i := range x.terms {
		e := table[entry*i:]
		n := int(binary.LittleEndian.Uint32(e[12:]))
		// Capacity ends with the term's postings: a paper written later appends to a copy.
		x.terms[i] = term{df: int32(binary.LittleEndian.Uint32(e[4:])), maxW: math.Float32frombits(binary.LittleEndian.Uint32(e[8:])),
			ps: all[at : at+n : at+n]}
		x.termOf.set(binary.LittleEndian.Uint32(e), int32(i))
		at += n
	}
	if at != len(all) {
		return fmt.Errorf("the term table counts %d postings, the file holds %d", at, len(all))
	}
	return nil
}

// countingWriter counts what it writes, for alignment.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeAtomic writes a file through a temporary one, made durable and renamed over it: a crash
// leaves the old file or the new one. With checksum, the file ends with the CRC-32C of the rest
// (verifyChecksum).
func writeAtomic(ctx context.Context, path string, checksum bool, write func(io.Writer) error) error {
	f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	sum := crc32.New(crcTable)
	w := bufio.NewWriterSize(io.MultiWriter(ctxWriter{ctx}, f, sum), 1<<20)
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

// ctxWriter fails every write once ctx is done: a save given up leaves the file it replaces.
type ctxWriter struct{ ctx context.Context }

func (w ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// checkFileSum checks that the CRC-32C of the file at path is want, reading it through a buffer
// (not the mapping, which would leave every page in the process).
func checkFileSum(path string, want uint32) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sum := crc32.New(crcTable)
	if _, err := io.CopyBuffer(sum, f, make([]byte, 1<<20)); err != nil {
		return err
	}
	if got := sum.Sum32(); got != want {
		return fmt.Errorf("%w: %s: checksum %08x, the snapshot says %08x", errDerivedDamaged, path, got, want)
	}
	return nil
}

// errDerivedDamaged marks a damaged file the store derives from its papers (the snapshot, a
// vectors file): it is set aside, with a warning naming it, and rebuilt from the records.
var errDerivedDamaged = errors.New("damaged")
