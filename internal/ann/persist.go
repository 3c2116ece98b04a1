package ann

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"unsafe"
)

// File formats: RECANN1 is the graph alone; RECANN2 adds the int8 codes and scales after it
// (dims in the header, 0 without), so an int8 index reloads without reading and encoding every
// float vector: at a million vectors that read is most of a reload.
const (
	fileMagicV1 = "RECANN1\n"
	fileMagic   = "RECANN2\n"
)

// Save writes the graph and, with Options.Int8, the codes (not the float vectors, which the
// store keeps). An index with tombstones is not saved: the vectors of deleted nodes are gone
// after a restart, so their links could not be followed; the caller rebuilds instead.
func (x *Index) Save(w io.Writer) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.live != len(x.vecs) {
		return errors.New("ann: an index with deleted nodes is rebuilt, not saved")
	}
	codeDims := 0
	if x.opts.Int8 && len(x.codes) == len(x.vecs)*x.dims {
		codeDims = x.dims
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString(fileMagic)
	var buf []byte
	buf = binary.AppendUvarint(buf, uint64(x.opts.M))
	buf = binary.AppendUvarint(buf, uint64(x.opts.EfConstruction))
	buf = binary.AppendVarint(buf, int64(x.entry))
	buf = binary.AppendUvarint(buf, uint64(x.maxLevel))
	buf = binary.AppendUvarint(buf, uint64(len(x.vecs)))
	buf = binary.AppendUvarint(buf, uint64(codeDims))
	bw.Write(buf)
	for i := range x.vecs {
		layers := x.level(uint32(i)) + 1
		buf = binary.AppendUvarint(buf[:0], uint64(layers))
		for l := range layers {
			fr := x.friends(uint32(i), l)
			buf = binary.AppendUvarint(buf, uint64(len(fr)))
			for _, f := range fr {
				buf = binary.AppendUvarint(buf, uint64(f))
			}
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	if codeDims > 0 {
		buf = buf[:0]
		for _, s := range x.scales {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(s))
		}
		bw.Write(buf)
		bw.Write(int8Bytes(x.codes))
	}
	return bw.Flush()
}

func int8Bytes(c []int8) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(c))), len(c))
}

// Load reads a file written by Save; vec gives each node's vector by id. The codes of an int8
// index come from the file when it has them for vectors of this length, else from the vectors.
func Load(r io.Reader, opts Options, vec func(id uint32) []float32) (*Index, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(fileMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != fileMagic && string(magic) != fileMagicV1 {
		return nil, errors.New("ann: not an index file")
	}
	var err error
	next := func() uint64 {
		var v uint64
		if err == nil {
			v, err = binary.ReadUvarint(br)
		}
		return v
	}
	m, efc := next(), next()
	entry, verr := binary.ReadVarint(br)
	if verr != nil && err == nil {
		err = verr
	}
	maxLevel, n := next(), next()
	var codeDims uint64
	if string(magic) == fileMagic {
		codeDims = next()
	}
	if err != nil {
		return nil, fmt.Errorf("ann: header: %w", err)
	}
	if int(m) != opts.M || int(efc) != opts.EfConstruction {
		return nil, fmt.Errorf("ann: index built with M %d, ef_construction %d; configured %d, %d", m, efc, opts.M, opts.EfConstruction)
	}
	if n > 1<<32-1 || codeDims > 1<<16 {
		return nil, errors.New("ann: corrupt header")
	}
	x := New(opts)
	x.entry, x.maxLevel = int32(entry), int(maxLevel)
	x.grow(int(min(n, 1<<20))) // a corrupt count must not allocate terabytes up front
	for i := range n {
		layers := next()
		if err != nil || layers == 0 || layers > 64 {
			return nil, fmt.Errorf("ann: node %d: corrupt (%v)", i, err)
		}
		v := vec(uint32(i))
		if v == nil {
			return nil, fmt.Errorf("ann: no vector for node %d", i)
		}
		x.appendNode(v, int(layers)-1)
		for l := range int(layers) {
			cnt := next()
			if cnt > uint64(x.maxFriends(l)) {
				return nil, fmt.Errorf("ann: node %d: corrupt neighbour count", i)
			}
			// Layer 0 is read straight into the flat array, the rest into one list each.
			var fr []uint32
			if l == 0 {
				b := int(i) * x.stride0
				x.links0[b] = uint32(cnt)
				fr = x.links0[b+1 : b+1+int(cnt)]
			} else {
				fr = make([]uint32, cnt)
				x.upper[i][l-1] = fr
			}
			for j := range fr {
				id := next()
				if id >= n {
					return nil, fmt.Errorf("ann: node %d: neighbour %d out of range", i, id)
				}
				fr[j] = uint32(id)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ann: node %d: %w", i, err)
		}
	}
	if n == 0 && entry != -1 || n > 0 && (entry < 0 || entry >= int64(n) || x.level(uint32(entry)) != x.maxLevel) {
		return nil, errors.New("ann: corrupt entry point")
	}
	// A search follows a link on layer l into the friend list of its target on layer l.
	for i := range x.upper {
		for l, fr := range x.upper[i] {
			for _, f := range fr {
				if x.level(f) < l+1 {
					return nil, fmt.Errorf("ann: node %d: link on layer %d to node %d, which is not on it", i, l+1, f)
				}
			}
		}
	}
	if err := x.loadCodes(br, int(n), int(codeDims)); err != nil {
		return nil, err
	}
	return x, nil
}

// loadCodes reads the file's codes section (codeDims per node, 0: none) into an int8 index, or
// encodes the vectors when the file has no codes for them.
func (x *Index) loadCodes(r io.Reader, n, codeDims int) error {
	if !x.opts.Int8 {
		return nil
	}
	if codeDims == 0 || codeDims != x.dims {
		for _, v := range x.vecs {
			x.encode(v)
		}
		return nil
	}
	scales := make([]byte, 4*n)
	x.codes = make([]int8, n*codeDims)
	if _, err := io.ReadFull(r, scales); err != nil {
		return fmt.Errorf("ann: codes: %w", err)
	}
	if _, err := io.ReadFull(r, int8Bytes(x.codes)); err != nil {
		return fmt.Errorf("ann: codes: %w", err)
	}
	x.scales = make([]float32, n)
	for i := range x.scales {
		x.scales[i] = math.Float32frombits(binary.LittleEndian.Uint32(scales[4*i:]))
	}
	return nil
}
