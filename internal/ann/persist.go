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
	if x.live != len(x.nodes) {
		return errors.New("ann: an index with deleted nodes is rebuilt, not saved")
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString(fileMagic)
	var buf []byte
	buf = binary.AppendUvarint(buf, uint64(x.opts.M))
	buf = binary.AppendUvarint(buf, uint64(x.opts.EfConstruction))
	buf = binary.AppendVarint(buf, int64(x.entry))
	buf = binary.AppendUvarint(buf, uint64(x.maxLevel))
	buf = binary.AppendUvarint(buf, uint64(len(x.nodes)))
	bw.Write(buf)
	for i := range x.nodes {
		buf = binary.AppendUvarint(buf[:0], uint64(len(x.nodes[i].friends)))
		for _, fr := range x.nodes[i].friends {
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
	x.nodes = make([]node, n)
	for i := range x.nodes {
		layers := next()
		if err != nil || layers > 64 {
			return nil, fmt.Errorf("ann: node %d: corrupt (%v)", i, err)
		}
		x.nodes[i].friends = make([][]uint32, layers)
		for l := range x.nodes[i].friends {
			cnt := next()
			if cnt > uint64(4*opts.M) {
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
			x.nodes[i].friends[l] = fr
		}
		if err != nil {
			return nil, fmt.Errorf("ann: node %d: %w", i, err)
		}
		if x.nodes[i].vec = vec(uint32(i)); x.nodes[i].vec == nil {
			return nil, fmt.Errorf("ann: no vector for node %d", i)
		}
		x.encode(x.nodes[i].vec)
	}
	x.live = int(n)
	return x, nil
}
