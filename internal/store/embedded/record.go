package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
)

// recordVersion leads every encoded record so the format can evolve without a migration of
// records already on disk. Version 2 ends with the CRC-32C of what comes before it (bbolt
// checks none of its pages' contents); version 1 records, without it, are still read, and
// rewritten as version 2 when their paper is next written.
const (
	recordVersion   = 2
	recordVersionV1 = 1
)

var errCorrupt = errors.New("corrupt record")

// encodeRecord serialises a paper compactly: varint lengths, raw little-endian floats. It is
// deterministic, so equal papers encode to equal bytes, which is how Upsert detects "unchanged".
func encodeRecord(p *store.Paper) []byte {
	b := make([]byte, 0, 64+len(p.Title)+len(p.Abstract)+8*p.Lexical.Len()+4*len(p.Dense))
	b = append(b, recordVersion)
	for _, s := range []string{p.ID, p.Title, p.Abstract, p.Date} {
		b = appendString(b, s)
	}
	for _, ss := range [][]string{p.Authors, p.Categories, p.Topics} {
		b = binary.AppendUvarint(b, uint64(len(ss)))
		for _, s := range ss {
			b = appendString(b, s)
		}
	}
	b = binary.AppendVarint(b, int64(p.Year))
	b = binary.AppendUvarint(b, uint64(p.Lexical.Len()))
	for i, id := range p.Lexical.Indices {
		b = binary.LittleEndian.AppendUint32(b, id)
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(p.Lexical.Values[i]))
	}
	b = binary.AppendUvarint(b, uint64(len(p.Dense)))
	for _, x := range p.Dense {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	b = appendString(b, p.DenseHash)
	if p.URL != "" { // last and only when set: records written before it read as they are
		b = appendString(b, p.URL)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord is the inverse of encodeRecord. The returned paper does not alias buf (bbolt's
// buffers are only valid inside their transaction).
func decodeRecord(buf []byte) (store.Paper, error) { return decode(buf, true, allFields) }

// decodeMetadata is decodeRecord without the lexical and dense vectors, which a search hit
// usually does not need and which are most of a record's bytes.
func decodeMetadata(buf []byte) (store.Paper, error) { return decode(buf, false, allFields) }

// decodeForIndex is decodeRecord without the abstract and topics, which the in-memory index
// does not keep: what opening a store reads.
func decodeForIndex(buf []byte) (store.Paper, error) { return decode(buf, true, indexFields) }

// fields says which of a record's fields decode reads; it skips the others.
type fields int

const (
	allFields   fields = iota // all
	indexFields               // all but the abstract and topics (the in-memory index's)
)

func decode(buf []byte, vectors bool, f fields) (store.Paper, error) {
	if len(buf) == 0 {
		return store.Paper{}, fmt.Errorf("%w: empty", errCorrupt)
	}
	switch buf[0] {
	case recordVersion:
		if len(buf) < 5 {
			return store.Paper{}, fmt.Errorf("%w: truncated", errCorrupt)
		}
		body := buf[:len(buf)-4]
		if got, want := crc32.Checksum(body, crcTable), binary.LittleEndian.Uint32(buf[len(buf)-4:]); got != want {
			return store.Paper{}, fmt.Errorf("%w: checksum %08x, the record says %08x", errCorrupt, got, want)
		}
		buf = body
	case recordVersionV1:
	default:
		return store.Paper{}, fmt.Errorf("%w: version %d", errCorrupt, buf[0])
	}
	d := decoder{buf: buf[1:]}
	var p store.Paper
	str := func(s *string, read bool) {
		if read {
			*s = d.string()
		} else {
			d.skip(d.count(1))
		}
	}
	p.ID = d.string()
	p.Title = d.string()
	str(&p.Abstract, f == allFields)
	p.Date = d.string()
	for _, ss := range []*[]string{&p.Authors, &p.Categories} {
		for range d.count(1) {
			*ss = append(*ss, d.string())
		}
	}
	for range d.count(1) {
		var topic string
		str(&topic, f == allFields)
		if f == allFields {
			p.Topics = append(p.Topics, topic)
		}
	}
	p.Year = int32(d.varint())
	switch {
	case !vectors:
		d.skip(d.count(8) * 8)
		d.skip(d.count(4) * 4)
	default:
		if n := d.count(8); n > 0 {
			p.Lexical = lexical.Vector{Indices: make([]uint32, n), Values: make([]float32, n)}
			for i := range n {
				p.Lexical.Indices[i] = d.uint32()
				p.Lexical.Values[i] = math.Float32frombits(d.uint32())
			}
		}
		if n := d.count(4); n > 0 {
			p.Dense = make([]float32, n)
			for i := range n {
				p.Dense[i] = math.Float32frombits(d.uint32())
			}
		}
	}
	p.DenseHash = d.string()
	if len(d.buf) > 0 {
		p.URL = d.string()
	}
	if d.err != nil {
		return store.Paper{}, d.err
	}
	if len(d.buf) != 0 {
		return store.Paper{}, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.buf))
	}
	return p, nil
}

// decoder reads from buf, remembering the first error so callers check once at the end.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errCorrupt)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) < 1 {
		d.fail()
		return 0
	}
	c := d.buf[0]
	d.buf = d.buf[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// count reads an element count and checks that the rest of the buffer can hold that many
// elements of at least size bytes, so a corrupt count cannot cause a huge allocation.
func (d *decoder) count(size int) int {
	n := d.uvarint()
	if n > uint64(len(d.buf)/size) {
		d.fail()
		return 0
	}
	return int(n)
}

// skip drops n bytes (count has checked they are there).
func (d *decoder) skip(n int) { d.buf = d.buf[n:] }

func (d *decoder) string() string {
	n := d.count(1)
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

func (d *decoder) uint32() uint32 {
	if len(d.buf) < 4 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint32(d.buf)
	d.buf = d.buf[4:]
	return v
}
