package arxiv

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// LineError is a line that could not be parsed; reading can go on after it.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Reader reads papers, one JSON object per line. Blank lines are skipped.
type Reader struct {
	r    *bufio.Reader
	line int
	// What Consumed reads: the bytes of the lines read so far (decompressed, when gzipped), and
	// for gzip the compressed bytes the decompressor took and the bytes it gave.
	lines     int64
	zin, zout *countingReader
}

// NewReader returns a Reader over r, decompressing it when it starts with the gzip magic bytes
// (so a file's name need not end in .gz).
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zin := &countingReader{r: br}
		zr, err := gzip.NewReader(zin)
		if err != nil {
			return nil, fmt.Errorf("open gzip stream: %w", err)
		}
		zout := &countingReader{r: zr}
		return &Reader{r: bufio.NewReaderSize(zout, 1<<20), zin: zin, zout: zout}, nil
	}
	return &Reader{r: br}, nil
}

// Consumed is how far into the input (compressed, when it is gzipped) the lines read so far
// reach, for progress: the reader's buffers run up to megabytes ahead of them. With gzip it is
// estimated from the compression ratio of what was decompressed so far.
func (r *Reader) Consumed() int64 {
	if r.zin == nil {
		return r.lines
	}
	if r.zout.n == 0 {
		return 0
	}
	return int64(float64(r.zin.n) * float64(r.lines) / float64(r.zout.n))
}

// countingReader counts the bytes read through it; as an io.ByteReader it keeps gzip from
// adding a buffer of its own in front of it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	br, ok := c.r.(io.ByteReader)
	if !ok {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return 0, err
		}
		return b[0], nil
	}
	b, err := br.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// Line is the number of the line last read, counting from 1.
func (r *Reader) Line() int { return r.line }

// Each calls paper for each paper read and malformed for each malformed line (Line says
// where), in file order, until the end of the input or the first error one of them returns.
// Errors of the underlying reader end it too, naming what was read (name).
func (r *Reader) Each(name string, paper func(*recommenderv1.Paper) error, malformed func(*LineError) error) error {
	for {
		p, err := r.Next()
		var lerr *LineError
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, &lerr):
			err = malformed(lerr)
		case err != nil:
			return fmt.Errorf("read %s: %w", name, err)
		default:
			err = paper(p)
		}
		if err != nil {
			return err
		}
	}
}

// Next returns the next paper, io.EOF at the end, or a *LineError for a malformed line (call
// Next again to go on). Other errors come from the underlying reader and end reading.
func (r *Reader) Next() (*recommenderv1.Paper, error) {
	for {
		raw, err := r.r.ReadBytes('\n')
		if len(raw) == 0 && err != nil {
			return nil, err
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		r.line++
		r.lines += int64(len(raw))
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		p, perr := parse(raw)
		if perr != nil {
			return nil, &LineError{Line: r.line, Err: perr}
		}
		return p, nil
	}
}

// record is the union of the fields we read from the arXiv snapshot and from the shared sample
// (which has year and topics); unknown fields are ignored.
type record struct {
	ID            flexString                 `json:"id"`
	Title         string                     `json:"title"`
	Abstract      string                     `json:"abstract"`
	Authors       flexList                   `json:"authors"`
	AuthorsParsed [][]string                 `json:"authors_parsed"`
	Categories    flexList                   `json:"categories"`
	Topics        []string                   `json:"topics"`
	URL           string                     `json:"url"`
	Year          int32                      `json:"year"`
	UpdateDate    string                     `json:"update_date"`
	Versions      []struct{ Created string } `json:"versions"`
}

func parse(raw []byte) (*recommenderv1.Paper, error) {
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", err)
	}
	p := &recommenderv1.Paper{
		Id:         string(rec.ID),
		Title:      squash(rec.Title),
		Abstract:   squash(rec.Abstract),
		Categories: rec.Categories.split(strings.Fields),
		Topics:     rec.Topics,
		Url:        strings.TrimSpace(rec.URL),
		Year:       rec.Year,
		Date:       firstDate(&rec),
	}
	if len(rec.AuthorsParsed) > 0 {
		for _, parts := range rec.AuthorsParsed {
			// arXiv gives [last, first, suffix]; names read first-name first.
			if len(parts) >= 2 {
				parts = append([]string{parts[1], parts[0]}, parts[2:]...)
			}
			if name := squash(strings.Join(parts, " ")); name != "" {
				p.Authors = append(p.Authors, name)
			}
		}
	} else {
		p.Authors = rec.Authors.split(splitAuthors)
	}
	return p, nil
}

// firstDate is the date of the first version (the publication date), else the last update.
func firstDate(rec *record) string {
	if len(rec.Versions) > 0 {
		// arXiv writes "Mon, 2 Apr 2007 19:18:42 GMT": RFC 1123 but with one-digit days.
		if t, err := time.Parse("Mon, 2 Jan 2006 15:04:05 MST", rec.Versions[0].Created); err == nil {
			return t.Format(time.DateOnly)
		}
	}
	if _, err := time.Parse(time.DateOnly, rec.UpdateDate); err == nil {
		return rec.UpdateDate
	}
	return ""
}

// splitAuthors splits arXiv's authors string: "A. One, B. Two and C. Three".
func splitAuthors(s string) []string {
	var out []string
	for _, part := range strings.Split(squash(s), ",") {
		for _, name := range strings.Split(part, " and ") {
			if name = strings.TrimSpace(name); name != "" {
				out = append(out, name)
			}
		}
	}
	return out
}

// squash collapses runs of white space (arXiv titles and abstracts carry hard line breaks).
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// flexString accepts a JSON string or number (some dumps write numeric ids).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("id must be a string or number")
	}
	*f = flexString(n.String())
	return nil
}

// flexList accepts one string (to be split) or a list of strings.
type flexList struct {
	one  string
	list []string
}

func (f *flexList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &f.list)
	}
	return json.Unmarshal(b, &f.one)
}

func (f flexList) split(fn func(string) []string) []string {
	if f.list != nil {
		return f.list
	}
	return fn(f.one)
}

// ReadAll reads every paper of r, failing on the first malformed line: for inputs we trust
// ReadFile reads every paper of a JSON-lines file (plain or gzip) with ReadAll.
func ReadFile(path string) ([]*recommenderv1.Paper, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	papers, err := ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return papers, nil
}

// (the demo corpus, test data), where a bad line is a bug rather than something to skip.
func ReadAll(r io.Reader) ([]*recommenderv1.Paper, error) {
	rd, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	var out []*recommenderv1.Paper
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}
