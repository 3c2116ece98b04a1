package httpapi

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/paperrec/recommender/internal/apierr"
	"github.com/paperrec/recommender/internal/server"
)

// A request body is read into pooled chunks and kept there until it is known to be within the
// limit, compressed and decompressed: a refused body then allocates nothing that outlives it,
// and an accepted one exactly its size. A gzip body is decompressed twice, first into nothing to
// measure it (a few KB of gzip can hold gigabytes), then into a buffer of its size.

const chunkSize = 64 << 10

var (
	chunkPool = sync.Pool{New: func() any { return new([chunkSize]byte) }}
	gzipPool  sync.Pool // *gzip.Reader
)

// chunks is a body read into pooled chunks.
type chunks struct {
	bufs []*[chunkSize]byte
	n    int64
}

// readFrom reads r to its end, failing with BodyTooLarge past limit bytes.
func (c *chunks) readFrom(r io.Reader, limit int64) error {
	for {
		if c.n > limit {
			return server.BodyTooLarge(limit)
		}
		if c.n%chunkSize == 0 {
			c.bufs = append(c.bufs, chunkPool.Get().(*[chunkSize]byte))
		}
		buf := c.bufs[len(c.bufs)-1][c.n%chunkSize:]
		n, err := r.Read(buf)
		c.n += int64(n)
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			if c.n > limit {
				return server.BodyTooLarge(limit)
			}
			return nil
		case errors.As(err, &tooBig):
			return server.BodyTooLarge(limit)
		case err != nil:
			return server.NewStatus(codes.InvalidArgument, apierr.MalformedRequest, "cannot read the request body", nil)
		}
	}
}

// reader reads the chunks' bytes from offset from.
func (c *chunks) reader(from int64) io.Reader {
	var parts []io.Reader
	for i, b := range c.bufs {
		start, end := int64(i)*chunkSize, min(int64(i+1)*chunkSize, c.n)
		if end <= from {
			continue
		}
		parts = append(parts, &sliceReader{b: b[max(from-start, 0) : end-start]})
	}
	return io.MultiReader(parts...)
}

// bytes copies the chunks' bytes from offset from into a slice of their size.
func (c *chunks) bytes(from int64) []byte {
	out := make([]byte, c.n-from)
	_, _ = io.ReadFull(c.reader(from), out)
	return out
}

func (c *chunks) release() {
	for _, b := range c.bufs {
		chunkPool.Put(b)
	}
	c.bufs, c.n = nil, 0
}

// sliceReader reads a slice without the allocation of a bytes.Reader's bookkeeping.
type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// gunzipped returns the gzip stream read by src within limit bytes decompressed, after room
// bytes left for the caller.
func gunzipped(src func() io.Reader, limit int64, room int) ([]byte, error) {
	zr, _ := gzipPool.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	defer gzipPool.Put(zr)
	notGzip := server.NewStatus(codes.InvalidArgument, apierr.MalformedRequest, "the body is not valid gzip, as its encoding says", nil)
	if err := zr.Reset(src()); err != nil {
		return nil, notGzip
	}
	n, err := io.Copy(io.Discard, io.LimitReader(zr, limit+1))
	switch {
	case err != nil:
		return nil, notGzip
	case n > limit:
		return nil, server.BodyTooLarge(limit)
	}
	if err := zr.Reset(src()); err != nil {
		return nil, notGzip
	}
	out := make([]byte, int64(room)+n)
	if _, err := io.ReadFull(zr, out[room:]); err != nil {
		return nil, notGzip
	}
	return out, nil
}

// readBody reads a request body of at most limit bytes; nothing of a body whose Content-Length
// says it is larger is read. With gunzip it is decompressed, to at most limit bytes too.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, gunzip bool) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, server.BodyTooLarge(limit)
	}
	var c chunks
	defer c.release()
	if err := c.readFrom(http.MaxBytesReader(w, r.Body, limit), limit); err != nil {
		return nil, err
	}
	if gunzip {
		return gunzipped(func() io.Reader { return c.reader(0) }, limit, 0)
	}
	return c.bytes(0), nil
}

// readEnvelope reads a request body that holds one enveloped message (gRPC, gRPC-Web, Connect
// streaming: a flags byte, a 4-byte length, the message) of at most limit bytes, and returns it
// as one uncompressed message, decompressed here when its flag and encoding say gzip.
func readEnvelope(w http.ResponseWriter, r *http.Request, limit int64, encoding string) (body []byte, decompressed bool, err error) {
	if r.ContentLength > limit+envelopeSlack {
		return nil, false, server.BodyTooLarge(limit)
	}
	var c chunks
	defer c.release()
	if err := c.readFrom(http.MaxBytesReader(w, r.Body, limit+envelopeSlack), limit+envelopeSlack); err != nil {
		return nil, false, err
	}
	var prefix [envelopeSlack]byte
	if _, err := io.ReadFull(c.reader(0), prefix[:]); err != nil || prefix[0]&1 == 0 || encoding != "gzip" {
		return c.bytes(0), false, nil // not compressed, or not for us to judge: Vanguard's and gRPC's limits apply
	}
	out, err := gunzipped(func() io.Reader { return c.reader(envelopeSlack) }, limit, envelopeSlack)
	if err != nil {
		return nil, false, err
	}
	out[0] = prefix[0] &^ 1
	binary.BigEndian.PutUint32(out[1:envelopeSlack], uint32(len(out)-envelopeSlack))
	return out, true, nil
}
