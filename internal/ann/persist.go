package ann

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const fileMagic = "RECANN1\n"

// Save writes the graph (not the vectors, which the store keeps). An index with tombstones is
// not saved: the vectors of deleted nodes are gone after a restart, so their links could not
// be followed; the caller rebuilds instead.
func (x *Index) Save(w io.Writer) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.live != len(x.vecs) {
		return errors.New("ann: an index with deleted nodes is rebuilt, not saved")
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString(fileMagic)
	var buf []byte
	buf = binary.AppendUvarint(buf, uint64(x.opts.M))
	buf = binary.AppendUvarint(buf, uint64(x.opts.EfConstruction))
	buf = binary.AppendVarint(buf, int64(x.entry))
	buf = binary.AppendUvarint(buf, uint64(x.maxLevel))
	buf = binary.AppendUvarint(buf, uint64(len(x.vecs)))
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
	return bw.Flush()
}

// Load reads a graph saved by Save; vec gives each node's vector by id.
func Load(r io.Reader, opts Options, vec func(id uint32) []float32) (*Index, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(fileMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != fileMagic {
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
	if err != nil {
		return nil, fmt.Errorf("ann: header: %w", err)
	}
	if int(m) != opts.M || int(efc) != opts.EfConstruction {
		return nil, fmt.Errorf("ann: index built with M %d, ef_construction %d; configured %d, %d", m, efc, opts.M, opts.EfConstruction)
	}
	x := New(opts)
	x.entry, x.maxLevel = int32(entry), int(maxLevel)
	if n > 1<<32-1 {
		return nil, errors.New("ann: corrupt node count")
	}
	x.grow(int(min(n, 1<<20))) // a corrupt count must not allocate terabytes up front
	lists := make([][]uint32, 0, 8)
	for i := range n {
		layers := next()
		if err != nil || layers == 0 || layers > 64 {
			return nil, fmt.Errorf("ann: node %d: corrupt (%v)", i, err)
		}
		lists = lists[:0]
		for l := range int(layers) {
			cnt := next()
			if cnt > uint64(x.maxFriends(l)) {
				return nil, fmt.Errorf("ann: node %d: corrupt neighbour count", i)
			}
			fr := make([]uint32, cnt)
			for j := range fr {
				id := next()
				if id >= n {
					return nil, fmt.Errorf("ann: node %d: neighbour %d out of range", i, id)
				}
				fr[j] = uint32(id)
			}
			lists = append(lists, fr)
		}
		if err != nil {
			return nil, fmt.Errorf("ann: node %d: %w", i, err)
		}
		v := vec(uint32(i))
		if v == nil {
			return nil, fmt.Errorf("ann: no vector for node %d", i)
		}
		x.appendNode(v, int(layers)-1)
		for l, fr := range lists {
			x.setFriends(uint32(i), l, fr)
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
	return x, nil
}
