package main

import (
	"bytes"
	"compress/gzip"
	"context"
	bin "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/testutil/race"
)

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// gzipBomb is n zero bytes gzipped: 1 GiB makes 1.3 MB.
func gzipBomb(t *testing.T, n int64) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	if _, err := io.CopyN(w, zeros{}, n); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hostileCall is one request of TestHostileBodiesAreRefusedCheaply.
type hostileCall struct {
	name    string
	path    string
	headers map[string]string
	body    func() (io.Reader, int64) // -1: chunked, no Content-Length
	status  int                       // HTTP status wanted
	code    string                    // Connect error code, or gRPC status in the grpc-status header
	reason  string                    // ErrorInfo reason wanted, "" for none
}

// TestHostileBodiesAreRefusedCheaply sends what an attacker would over each protocol of the HTTP
// port, with and without a key: a call without a valid key is refused before its body is read,
// and a body over --max-message-bytes, compressed or once decompressed, with 413
// BODY_TOO_LARGE (Connect) or RESOURCE_EXHAUSTED (gRPC-Web), logged and counted, while the
// server's peak memory grows by at most twice the limit. It prints each answer's time.
func TestHostileBodiesAreRefusedCheaply(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20
	p := startServeEnv(t, []string{keysEnv}, t.TempDir(), "--demo", "--max-message-bytes", fmt.Sprint(limit), "--metrics-addr", "127.0.0.1:0")
	base := "http://" + p.httpAddr
	bomb := gzipBomb(t, 1<<30)
	bytesOf := func(b []byte) func() (io.Reader, int64) {
		return func() (io.Reader, int64) { return bytes.NewReader(b), int64(len(b)) }
	}
	connectJSON := func(key string, extra ...string) map[string]string {
		h := map[string]string{"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
		if key != "" {
			h["Authorization"] = "Bearer " + key
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	// A gRPC-Web message of JSON, its envelope marked compressed: the bomb.
	webBomb := append([]byte{1, 0, 0, 0, 0}, bomb...)
	bin.BigEndian.PutUint32(webBomb[1:5], uint32(len(bomb)))
	recommend := "/recommender.v1.RecommenderService/Recommend"
	calls := []hostileCall{
		{"Connect, 1.3 MB gzip bomb, no key", recommend, connectJSON("", "Content-Encoding", "gzip"), bytesOf(bomb), 401, "unauthenticated", "API_KEY_INVALID"},
		{"Connect, 1.3 MB gzip bomb (1 GiB)", recommend, connectJSON(readKey, "Content-Encoding", "gzip"), bytesOf(bomb), 413, "resource_exhausted", "BODY_TOO_LARGE"},
		{"Connect, 300 MB body, no key", recommend, connectJSON(""), func() (io.Reader, int64) { return io.LimitReader(zeros{}, 300<<20), 300 << 20 }, 401, "unauthenticated", "API_KEY_INVALID"},
		{"Connect, 300 MB body", recommend, connectJSON(readKey), func() (io.Reader, int64) { return io.LimitReader(zeros{}, 300<<20), 300 << 20 }, 413, "resource_exhausted", "BODY_TOO_LARGE"},
		{"Connect, 300 MB chunked body", recommend, connectJSON(readKey), func() (io.Reader, int64) { return io.LimitReader(zeros{}, 300<<20), -1 }, 413, "resource_exhausted", "BODY_TOO_LARGE"},
		{"gRPC-Web JSON, gzip bomb in the envelope", recommend, map[string]string{"Content-Type": "application/grpc-web+json",
			"Grpc-Encoding": "gzip", "Authorization": "Bearer " + readKey}, bytesOf(webBomb), 200, "8", ""},
		{"/v1, 300 MB body, no key", "/v1/Recommend", map[string]string{"Content-Type": "application/json"},
			func() (io.Reader, int64) { return io.LimitReader(zeros{}, 300<<20), 300 << 20 }, 401, "Unauthenticated", "API_KEY_INVALID"},
	}
	// Just under 4 MiB of seed ids: within the size limit, refused by the seed limit.
	var ids []string
	for n := 0; n < limit-64<<10; n += 13 {
		ids = append(ids, fmt.Sprintf("p%09d", len(ids)))
	}
	idsJSON, _ := json.Marshal(map[string]any{"positivePaperIds": ids})
	calls = append(calls, hostileCall{fmt.Sprintf("Connect, %.1f MiB of seed ids", float64(len(idsJSON))/(1<<20)), recommend,
		connectJSON(readKey), bytesOf(idsJSON), 400, "invalid_argument", "INVALID_REQUEST"})
	// growth is how much a call raised the server's peak RSS, checked against allowed.
	growth := func(what string, allowed int64, call func()) {
		t.Helper()
		before := peakRSS(t, p.cmd.Process.Pid)
		call()
		grew := peakRSS(t, p.cmd.Process.Pid) - before
		bound := fmt.Sprintf("allowed %d MiB", allowed>>20)
		if allowed >= 1<<40 {
			bound = "not bounded: the store grows by what it holds"
		}
		t.Logf("%-45s peak RSS +%.1f MiB (%s)", "", float64(grew)/(1<<20), bound)
		if grew > allowed && !race.Enabled { // the race detector's shadow memory inflates RSS several times
			t.Errorf("%s: peak RSS grew by %.1f MiB, more than %d MiB", what, float64(grew)/(1<<20), allowed>>20)
		}
	}
	for _, c := range calls {
		growth(c.name, 2*limit, func() {
			httpStatus, header, body, took := post(t, base+c.path, c.headers, c.body)
			code, reason := errorOf(header, body)
			t.Logf("%-45s HTTP %d %s %s in %v", c.name, httpStatus, code, reason, took.Round(100*time.Microsecond))
			if httpStatus != c.status || code != c.code || (c.reason != "" && reason != c.reason) {
				t.Errorf("%s: HTTP %d, code %q, reason %q; want %d, %q, %q\n%.300s", c.name, httpStatus, code, reason, c.status, c.code, c.reason, body)
			}
		})
	}
	// Twenty more bombs: what each costs must not add up.
	t.Logf("%-45s", "Connect, 20 more gzip bombs")
	growth("20 more gzip bombs", 2*limit, func() {
		for range 20 {
			post(t, base+recommend, connectJSON(readKey, "Content-Encoding", "gzip"), bytesOf(bomb))
		}
	})
	// The same ids over gRPC.
	c, _ := clientWithKey(t, p.addr, readKey)
	start := time.Now()
	_, err := c.Recommend(context.Background(), &recommenderv1.RecommendRequest{PositivePaperIds: ids})
	t.Logf("%-45s %v in %v", "gRPC, the same seed ids", status.Code(err), time.Since(start).Round(100*time.Microsecond))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC, %d seed ids: %v", len(ids), err)
	}

	// Accepted: 1,000 papers of nearly 4 KiB each in one Connect call, the most a call holds.
	// Written the first time (the store grows by what it holds: printed, not bounded), unchanged
	// the second (what handling the call costs: bounded).
	var papers []map[string]string
	for i := range 1000 {
		papers = append(papers, map[string]string{"id": fmt.Sprintf("big-%04d", i), "title": "Large paper",
			"abstract": strings.Repeat(fmt.Sprintf("word%d ", i%97), 3900/7)})
	}
	upsert, _ := json.Marshal(map[string]any{"papers": papers})
	w, _ := clientWithKey(t, p.addr, writeKey)
	for i, what := range []string{"written", "unchanged"} {
		allowed := int64(1 << 40)
		if i == 1 {
			allowed = 4 * limit
		}
		growth("UpsertPapers, "+what, allowed, func() {
			httpStatus, _, body, took := post(t, base+"/recommender.v1.RecommenderService/UpsertPapers", connectJSON(writeKey), bytesOf(upsert))
			t.Logf("%-45s HTTP %d in %v", fmt.Sprintf("Connect, UpsertPapers of %.1f MiB, %s", float64(len(upsert))/(1<<20), what), httpStatus, took.Round(100*time.Microsecond))
			if httpStatus != 200 {
				t.Errorf("upsert of 1,000 large papers: HTTP %d: %.300s", httpStatus, body)
			}
		})
		awaitLists(t, w) // the lists' upkeep of the written papers is not the next call's
	}
	// The same over gRPC, and the same message 5 bytes over the limit, refused.
	var req recommenderv1.UpsertPapersRequest
	if err := protojson.Unmarshal(upsert, &req); err != nil {
		t.Fatal(err)
	}
	growth("gRPC, UpsertPapers, unchanged", 4*limit, func() {
		start := time.Now()
		_, err := w.UpsertPapers(context.Background(), &req)
		t.Logf("%-45s %v in %v", fmt.Sprintf("gRPC, UpsertPapers of %.1f MiB, unchanged", float64(proto.Size(&req))/(1<<20)), status.Code(err), time.Since(start).Round(100*time.Microsecond))
		if err != nil {
			t.Errorf("gRPC upsert of 1,000 large papers: %v", err)
		}
	})
	req.Papers[0].Abstract += strings.Repeat("x", limit-proto.Size(&req)+5)
	growth("gRPC, a message over the limit", 2*limit, func() {
		start := time.Now()
		_, err := w.UpsertPapers(context.Background(), &req)
		t.Logf("%-45s %v in %v", "gRPC, UpsertPapers 5 bytes over the limit", status.Code(err), time.Since(start).Round(100*time.Microsecond))
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("gRPC upsert over the limit: %v", err)
		}
	})

	// Each refusal is logged and counted by its transport.
	for _, want := range []string{`code=ResourceExhausted duration=\S+ caller=key-\w+ transport=connect`, `code=Unauthenticated duration=\S+ caller="" transport=connect`} {
		if !regexp.MustCompile(want).MatchString(p.logs()) {
			t.Errorf("no log line like %s:\n%s", want, p.logs())
		}
	}
	metrics := regexp.MustCompile(`msg=metrics addr=(\S+)`).FindStringSubmatch(p.logs())
	if metrics == nil {
		t.Fatal("no metrics address in the log")
	}
	_, _, m, _ := get(t, "http://"+metrics[1]+"/metrics")
	for _, want := range []string{
		`recommender_rpcs_total{code="ResourceExhausted",method="` + recommend + `",transport="connect"} 23`,
		`recommender_rpcs_total{code="ResourceExhausted",method="` + recommend + `",transport="grpc-web"} 1`,
		`recommender_rpcs_total{code="Unauthenticated",method="` + recommend + `",transport="connect"} 2`,
		`recommender_rpcs_total{code="Unauthenticated",method="` + recommend + `",transport="http-json"} 1`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s:\n%s", want, regexp.MustCompile(`(?m)^recommender_rpcs_total.*$`).FindAll(m, -1))
		}
	}
	if _, err := p.client.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("server unwell after the hostile calls: %v", err)
	}
}

// post sends a request and returns what came back, and how long it took.
func post(t *testing.T, url string, headers map[string]string, body func() (io.Reader, int64)) (int, http.Header, []byte, time.Duration) {
	t.Helper()
	r, n := body()
	req, err := http.NewRequest(http.MethodPost, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = n
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, time.Since(start)
}

// get fetches url.
func get(t *testing.T, url string) (int, http.Header, []byte, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, time.Since(start)
}

// errorOf reads an error answer: a Connect or /v1 JSON error's code and ErrorInfo reason, or a
// gRPC-Web answer's grpc-status header.
func errorOf(h http.Header, body []byte) (code, reason string) {
	if s := h.Get("Grpc-Status"); s != "" {
		return s, ""
	}
	var e struct {
		Code    string
		Details []struct {
			Type  string
			Debug struct{ Reason string }
			// /v1 errors carry the detail's fields inline.
			Reason string
		}
	}
	_ = json.Unmarshal(body, &e)
	for _, d := range e.Details {
		if d.Debug.Reason != "" {
			return e.Code, d.Debug.Reason
		}
		if d.Reason != "" {
			return e.Code, d.Reason
		}
	}
	return e.Code, ""
}
