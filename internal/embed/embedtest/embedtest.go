// Package embedtest is a local HTTP server that speaks the OpenAI embeddings protocol, with
// deterministic vectors and injectable faults, for tests and benchmarks of the embedding path.
package embedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Fault is what the server does to one request instead of answering it normally.
type Fault struct {
	Status     int    // reply with this HTTP status and an OpenAI error body
	Code       string // the error's code, e.g. "rate_limit_exceeded", "insufficient_quota"
	EchoKey    bool   // the error's message quotes the request's Authorization header, as some providers do
	RetryAfter string // Retry-After header value
	Hang       bool   // never answer: block until the client gives up
	Reset      bool   // close the connection without a response
	WrongDims  bool   // answer with vectors one dimension short
	NaN        bool   // answer with a NaN in the first vector
	WrongCount bool   // answer with one vector too few
	Reorder    bool   // answer with the first two indices swapped
}

// Request is what the server saw of one embeddings request.
type Request struct {
	Inputs     []string
	Model      string
	Dimensions int
	Path       string
	APIKey     string // the bearer token or api-key header
	At         time.Time
}

// Server is the fake API. Its zero latency and empty fault queue answer at once.
type Server struct {
	*httptest.Server
	dims int

	mu       sync.Mutex
	faults   []Fault
	requests []Request
	latency  time.Duration
	release  chan struct{} // closed by Close to free hung handlers
	notify   chan struct{} // signalled after each request is recorded
	inputs   int           // texts received so far
	pause    *pause        // set by PauseAt until Resume
}

// pause holds requests once a number of texts has been received.
type pause struct {
	after  int
	held   chan struct{} // closed when the first request is held
	resume chan struct{} // closed by Resume
}

// New starts a server producing vectors of dims dimensions (the request's dimensions parameter
// wins when set). Its base URL for clients is URL()+"/v1".
func New(dims int) *Server {
	s := &Server{dims: dims, release: make(chan struct{}), notify: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// BaseURL is the OpenAI-style base URL.
func (s *Server) BaseURL() string { return s.URL + "/v1" }

// Close frees hung handlers and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.release:
	default:
		close(s.release)
	}
	s.mu.Unlock()
	s.Server.CloseClientConnections()
	s.Server.Close()
}

// Inject queues faults for the next requests, one each, in order.
func (s *Server) Inject(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// ClearFaults drops the faults not yet applied.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetLatency delays every answer.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// PauseAt holds every request that arrives once n texts have been received, until Resume: a
// client mid-way through a long ingest stops there, at a point the test chooses. The channel
// is closed when the first request is held.
func (s *Server) PauseAt(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pauseLocked(n)
}

// Resume lets the requests held by PauseAt, and all later ones, through.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked()
}

// ResumeAndPauseAt lets the held requests go and, in the same step, holds every later request
// that arrives once n texts have been received: a client cannot slip past the next stop in the
// moment between a Resume and a PauseAt.
func (s *Server) ResumeAndPauseAt(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked()
	return s.pauseLocked(n)
}

func (s *Server) pauseLocked(n int) <-chan struct{} {
	held := make(chan struct{})
	s.pause = &pause{after: n, held: held, resume: make(chan struct{})}
	return held
}

func (s *Server) resumeLocked() {
	if s.pause != nil {
		close(s.pause.resume)
		s.pause = nil
	}
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// WaitInputs blocks until the server has received at least n texts, or ctx ends.
func (s *Server) WaitInputs(ctx context.Context, n int) error {
	for s.Inputs() < n {
		select {
		case <-s.notify:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d inputs, have %d: %w", n, s.Inputs(), ctx.Err())
		}
	}
	return nil
}

// Inputs counts the texts received so far, over all requests.
func (s *Server) Inputs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inputs
}

type embeddingRequest struct {
	Input      []string `json:"input"`
	Model      string   `json:"model"`
	Dimensions int      `json:"dimensions"`
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/embeddings") || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var req embeddingRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "bad JSON: "+err.Error(), "")
		return
	}
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if k := r.Header.Get("api-key"); k != "" {
		key = k
	}
	s.mu.Lock()
	s.requests = append(s.requests, Request{Inputs: req.Input, Model: req.Model, Dimensions: req.Dimensions,
		Path: r.URL.String(), APIKey: key, At: time.Now()})
	var f Fault
	if len(s.faults) > 0 {
		f, s.faults = s.faults[0], s.faults[1:]
	}
	latency := s.latency
	p := s.pause
	hold := p != nil && s.inputs >= p.after
	if hold && p.held != nil {
		close(p.held)
		p.held = nil
	}
	s.inputs += len(req.Input)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if hold {
		select {
		case <-p.resume:
		case <-r.Context().Done():
			return
		case <-s.release:
			return
		}
	}

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch {
	case f.Hang:
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	case f.Reset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
		return
	case f.Status != 0:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		msg := "injected fault"
		if f.EchoKey {
			msg = "Incorrect API key provided: " + r.Header.Get("Authorization")
		}
		writeError(w, f.Status, errorType(f.Status, f.Code), msg, f.Code)
		return
	}

	dims := s.dims
	if req.Dimensions > 0 {
		dims = req.Dimensions
	}
	type datum struct {
		Object    string    `json:"object"`
		Embedding []float32 `json:"embedding"`
		Index     int       `json:"index"`
	}
	data := make([]datum, len(req.Input))
	for i, in := range req.Input {
		v := Vector(in, dims)
		if f.WrongDims {
			v = v[:dims-1]
		}
		data[i] = datum{Object: "embedding", Embedding: v, Index: i}
	}
	const nanMarker = 12345.5
	if f.NaN && len(data) > 0 {
		data[0].Embedding[0] = nanMarker
	}
	if f.WrongCount && len(data) > 0 {
		data = data[1:]
	}
	if f.Reorder && len(data) > 1 {
		data[0].Index, data[1].Index = 1, 0
	}
	body, err := json.Marshal(map[string]any{"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int{"prompt_tokens": 0, "total_tokens": 0}})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if f.NaN {
		// What Python servers emit with json.dumps' default allow_nan=True.
		body = []byte(strings.Replace(string(body), "12345.5", "NaN", 1))
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func errorType(status int, code string) string {
	switch {
	case code == "insufficient_quota":
		return "insufficient_quota"
	case status == http.StatusTooManyRequests:
		return "requests"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func writeError(w http.ResponseWriter, status int, typ, msg, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nilIfEmpty(code)}}
	_ = json.NewEncoder(w).Encode(body)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Vector is the deterministic embedding of text: a hashed bag of lower-cased words, normalised.
// Texts that share words get similar vectors, so dense retrieval over it behaves sensibly.
func Vector(text string, dims int) []float32 {
	v := make([]float32, dims)
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		h := fnv.New64a()
		_, _ = h.Write([]byte(w))
		x := h.Sum64()
		sign := float32(1)
		if x&1 == 1 {
			sign = -1
		}
		v[int((x>>1)%uint64(dims))] += sign
	}
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		v[0] = 1
		return v
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range v {
		v[i] *= inv
	}
	return v
}
