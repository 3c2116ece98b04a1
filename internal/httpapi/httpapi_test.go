package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
	"github.com/paperrec/recommender/internal/app"
	"github.com/paperrec/recommender/internal/auth"
	"github.com/paperrec/recommender/internal/demo"
	"github.com/paperrec/recommender/internal/httpapi"
	"github.com/paperrec/recommender/internal/server"
	"github.com/paperrec/recommender/internal/store/embedded"
)

const (
	writeKey = "write-key-0123456789abcdef"
	readKey  = "read-key-0123456789abcdef0"
	allowed  = "https://app.example.com"
)

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (b bearer) RequireTransportSecurity() bool { return false }

// setup serves the demo corpus over gRPC and HTTP from one service, with API keys.
func setup(t *testing.T) (recommenderv1.RecommenderServiceClient, string) {
	t.Helper()
	return serve(t, true, httpapi.Config{CORSOrigins: []string{allowed}, MaxBodyBytes: 1 << 20})
}

// serve is setup with or without API keys, and the HTTP API's configuration.
func serve(t *testing.T, withKeys bool, hc httpapi.Config) (recommenderv1.RecommenderServiceClient, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := embedded.Open(ctx, embedded.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := server.NewService(a)
	papers, _ := demo.Papers()
	if _, err := svc.UpsertPapers(ctx, &recommenderv1.UpsertPapersRequest{Papers: papers}); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.ParseKeys(strings.NewReader("write " + writeKey + "\nread " + readKey))
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	if !withKeys {
		keys = nil
	}
	if cfg.Gate, err = auth.NewGate(keys, 0, 20); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Listen(cfg, svc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	if hc.RPC, err = srv.HTTPHandler(); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(httpapi.Handler(svc, srv.UnaryInterceptor(), hc))
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(readKey)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		web.Close()
		cancel()
		<-done
		_ = st.Close()
	})
	return recommenderv1.NewRecommenderServiceClient(conn), web.URL
}

// post sends a JSON request and returns the status and body.
func post(t *testing.T, url, key, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // Go sends req.Host, not a Host header
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestJSONMatchesGRPC(t *testing.T) {
	grpcClient, base := setup(t)
	first, err := grpcClient.Recommend(context.Background(), &recommenderv1.RecommendRequest{Query: "speech recognition", PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*recommenderv1.RecommendRequest{
		{Query: "speech recognition", PageSize: 3},
		{Query: "speech recognition", PageSize: 3, PageToken: first.GetNextPageToken()},
		{PositivePaperIds: []string{"demo-0013"}, NegativePaperIds: []string{"demo-0014"}, Explain: true, Diversity: 0.3},
		{Query: "learning", Filter: &recommenderv1.Filter{MinYear: 2021, Categories: []string{"cs.LG"}}, PageSize: 20},
		// A paper the store does not hold, given inline, beside an id the store does not know.
		{PositivePaperIds: []string{"no-such-paper"}, PositivePapers: []*recommenderv1.SeedPaper{{Title: "Pasted draft on speech recognition",
			Abstract: "End-to-end acoustic models for low-resource speech recognition.", Authors: []string{"A. Writer"}, Year: 2026}}},
	} {
		want, err := grpcClient.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := protojson.Marshal(req)
		resp, b := post(t, base+"/v1/Recommend", readKey, string(body))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP %d: %s", resp.StatusCode, b)
		}
		var got recommenderv1.RecommendResponse
		if err := protojson.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, want) || len(want.GetResults()) == 0 {
			t.Fatalf("request %v: JSON answer differs from gRPC's\n got %v\nwant %v", req, &got, want)
		}
	}
	// Other methods too.
	resp, b := post(t, base+"/v1/GetPaper", readKey, `{"paperId":"demo-0001"}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"title":"Message Passing on Heterogeneous Citation Graphs"`) {
		t.Fatalf("GetPaper: %d %s", resp.StatusCode, b)
	}
	resp, b = post(t, base+"/v1/GetIndexInfo", readKey, ``)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"paperCount":"48"`) {
		t.Fatalf("GetIndexInfo: %d %s", resp.StatusCode, b)
	}
	resp, b = post(t, base+"/v1/UpsertPapers", writeKey, `{"papers":[{"id":"http-1","title":"Posted over HTTP"}]}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"inserted":1`) {
		t.Fatalf("UpsertPapers: %d %s", resp.StatusCode, b)
	}
}

type errorBody struct {
	Code     string `json:"code"`
	GRPCCode int    `json:"grpcCode"`
	Message  string `json:"message"`
	Details  []struct {
		Type            string `json:"@type"`
		Reason, Domain  string
		FieldViolations []struct{ Field, Description string }
		ResourceType    string
		ResourceName    string
		Violations      []struct{ Type, Subject, Description string }
	} `json:"details"`
}

// TestErrorsCarryStatusAndCode checks each error's HTTP status, gRPC code, ErrorInfo reason
// (always the first detail) and the detail its code calls for.
func TestErrorsCarryStatusAndCode(t *testing.T) {
	_, base := setup(t)
	cases := []struct {
		name, method, key, body string
		status                  int
		code                    string
		grpcCode                int
		reason                  string
		detail                  string // type of the second detail, if any
	}{
		{"blank query", "Recommend", readKey, `{"query":"  "}`, 400, "InvalidArgument", 3, "INVALID_REQUEST", "google.rpc.BadRequest"},
		{"negative page size", "Recommend", readKey, `{"query":"speech","pageSize":-1}`, 400, "InvalidArgument", 3, "INVALID_REQUEST", "google.rpc.BadRequest"},
		{"not JSON", "Recommend", readKey, `{"query":`, 400, "InvalidArgument", 3, "MALFORMED_REQUEST", ""},
		{"unknown field", "Recommend", readKey, `{"qeury":"speech"}`, 400, "InvalidArgument", 3, "MALFORMED_REQUEST", ""},
		{"unknown seed", "Recommend", readKey, `{"positivePaperIds":["nope"]}`, 404, "NotFound", 5, "PAPER_NOT_FOUND", "google.rpc.ResourceInfo"},
		{"dense without a model", "Recommend", readKey, `{"query":"speech","mode":"RETRIEVAL_MODE_DENSE"}`, 400, "FailedPrecondition", 9, "EMBEDDING_NOT_CONFIGURED", "google.rpc.PreconditionFailure"},
		{"no key", "Recommend", "", `{"query":"speech"}`, 401, "Unauthenticated", 16, "API_KEY_INVALID", ""},
		{"read key writing", "DeletePapers", readKey, `{"paperIds":["demo-0001"]}`, 403, "PermissionDenied", 7, "API_KEY_SCOPE", ""},
		{"body too large", "UpsertPapers", writeKey, `{"papers":[{"id":"x","abstract":"` + strings.Repeat("a", 2<<20) + `"}]}`, 413, "ResourceExhausted", 8, "BODY_TOO_LARGE", ""},
		{"streaming method", "IngestPapers", writeKey, `{}`, 404, "NotFound", 5, "METHOD_NOT_FOUND", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, base+"/v1/"+tc.method, tc.key, tc.body)
			var e errorBody
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("error body is not JSON: %s", b)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || e.GRPCCode != tc.grpcCode || e.Message == "" ||
				resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("HTTP %d %+v, want %d %s (%d)", resp.StatusCode, e, tc.status, tc.code, tc.grpcCode)
			}
			if len(e.Details) == 0 || e.Details[0].Type != "type.googleapis.com/google.rpc.ErrorInfo" ||
				e.Details[0].Reason != tc.reason || e.Details[0].Domain != "recommender.paperrec.dev" {
				t.Fatalf("details %s, want an ErrorInfo with reason %s first", b, tc.reason)
			}
			if tc.detail != "" && (len(e.Details) < 2 || e.Details[1].Type != "type.googleapis.com/"+tc.detail) {
				t.Fatalf("details %s, want a %s", b, tc.detail)
			}
			switch tc.detail {
			case "google.rpc.BadRequest":
				if len(e.Details[1].FieldViolations) == 0 {
					t.Fatalf("no field violation in %s", b)
				}
			case "google.rpc.ResourceInfo":
				if e.Details[1].ResourceType != "recommender.v1.Paper" || e.Details[1].ResourceName != "nope" {
					t.Fatalf("resource info %s", b)
				}
			case "google.rpc.PreconditionFailure":
				if len(e.Details[1].Violations) != 1 || e.Details[1].Violations[0].Type != tc.reason {
					t.Fatalf("precondition failure %s", b)
				}
			}
		})
	}
}

func TestCORSAllowList(t *testing.T) {
	_, base := setup(t)
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, base+"/v1/Recommend", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := preflight(allowed); r.StatusCode != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != allowed ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("allowed preflight: %d %v", r.StatusCode, r.Header)
	}
	if r := preflight("https://evil.example.com"); r.StatusCode != http.StatusForbidden || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin's preflight: %d %v", r.StatusCode, r.Header)
	}
	resp, _ := post(t, base+"/v1/GetIndexInfo", readKey, ``, "Origin", allowed)
	if resp.Header.Get("Access-Control-Allow-Origin") != allowed {
		t.Fatal("allowed origin's request lacks Access-Control-Allow-Origin")
	}
	resp, _ = post(t, base+"/v1/GetIndexInfo", readKey, ``, "Origin", "https://evil.example.com")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("another origin got Access-Control-Allow-Origin")
	}
}

func TestPageAndOpenAPI(t *testing.T) {
	_, base := setup(t)
	for path, want := range map[string]string{"/": "<title>Paper recommender</title>", "/app.js": "Connect-Protocol-Version", "/style.css": ".card"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(want)) || resp.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("GET %s: %d, %q missing or no CSP", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, m := range recommenderv1.RecommenderService_ServiceDesc.Methods {
		if _, ok := doc.Paths["/v1/"+m.MethodName]; !ok {
			t.Errorf("openapi.json lacks /v1/%s", m.MethodName)
		}
	}
	// Every unary method, and the feed stream as Server-Sent Events.
	if _, ok := doc.Paths["/v1/feeds/{feed_id}/events"]; !ok {
		t.Errorf("openapi.json lacks the feed events route")
	}
	if doc.OpenAPI != "3.0.3" || len(doc.Paths) != len(recommenderv1.RecommenderService_ServiceDesc.Methods)+1 {
		t.Fatalf("openapi %s with %d paths", doc.OpenAPI, len(doc.Paths))
	}
}

// TestNoCrossSiteWrites sends what a foreign page can make a browser send without a CORS
// preflight (text/plain and form bodies, a foreign Origin, a rebound Host) to a server without
// API keys, and checks each is refused with nothing written; JSON from the page's own origin,
// an allowed one or a non-browser client still works.
func TestNoCrossSiteWrites(t *testing.T) {
	client, base := serve(t, false, httpapi.Config{CORSOrigins: []string{allowed}, MaxBodyBytes: 1 << 20, LoopbackHostsOnly: true})
	ctx := context.Background()
	papers, _ := demo.Papers()
	victim := papers[0].GetId()
	upsert := func(id string) string {
		return fmt.Sprintf(`{"papers":[{"id":%q,"title":"Planted","abstract":"Written by another site."}]}`, id)
	}
	deleteVictim := fmt.Sprintf(`{"paper_ids":[%q]}`, victim)
	const evil = "http://evil.example"
	const connectPath = "/recommender.v1.RecommenderService/"
	for _, tc := range []struct {
		name, path, body string
		header           []string
		want             int
	}{
		{"upsert as text/plain from another origin", "/v1/UpsertPapers", upsert("x-1"), []string{"Content-Type", "text/plain", "Origin", evil}, http.StatusUnsupportedMediaType},
		{"upsert as text/plain without Origin", "/v1/UpsertPapers", upsert("x-2"), []string{"Content-Type", "text/plain;charset=UTF-8"}, http.StatusUnsupportedMediaType},
		{"delete as a form from another origin", "/v1/DeletePapers", deleteVictim, []string{"Content-Type", "application/x-www-form-urlencoded", "Origin", evil}, http.StatusUnsupportedMediaType},
		{"delete as multipart from another origin", "/v1/DeletePapers", deleteVictim, []string{"Content-Type", "multipart/form-data; boundary=x", "Origin", evil}, http.StatusUnsupportedMediaType},
		{"JSON from another origin", "/v1/UpsertPapers", upsert("x-3"), []string{"Origin", evil}, http.StatusForbidden},
		{"JSON from another port of the same host", "/v1/DeletePapers", deleteVictim, []string{"Origin", "http://127.0.0.1:1"}, http.StatusForbidden},
		{"JSON marked cross-site without Origin", "/v1/DeletePapers", deleteVictim, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"Connect as text/plain from another origin", connectPath + "DeletePapers", deleteVictim, []string{"Content-Type", "text/plain", "Origin", evil, "Connect-Protocol-Version", "1"}, http.StatusUnsupportedMediaType},
		{"Connect as text/plain without Origin", connectPath + "DeletePapers", deleteVictim, []string{"Content-Type", "text/plain", "Connect-Protocol-Version", "1"}, http.StatusUnsupportedMediaType},
		{"Connect JSON from another origin", connectPath + "UpsertPapers", upsert("x-5"), []string{"Origin", evil, "Connect-Protocol-Version", "1"}, http.StatusForbidden},
		{"JSON to a rebound host name", "/v1/UpsertPapers", upsert("x-4"), []string{"Host", "evil.example"}, http.StatusForbidden},
		{"JSON to a rebound host name with the port", "/v1/DeletePapers", deleteVictim, []string{"Host", "evil.example:" + strings.Split(base, ":")[2]}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, base+tc.path, "", tc.body, tc.header...)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			var e struct{ Code, Message string }
			if err := json.Unmarshal(b, &e); err != nil || e.Message == "" {
				t.Fatalf("error body %s: %v", b, err)
			}
		})
	}
	if _, err := client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: victim}); err != nil {
		t.Fatalf("the paper refused deletes were about is gone: %v", err)
	}
	info, err := client.GetIndexInfo(ctx, &recommenderv1.GetIndexInfoRequest{})
	if err != nil || info.GetPaperCount() != int64(len(papers)) {
		t.Fatalf("after the refused requests: %v papers (want %d), %v", info.GetPaperCount(), len(papers), err)
	}
	// What a legitimate client sends still works: no Origin (curl, services), the page's own
	// origin, an allowed one, and localhost as the host.
	for i, header := range [][]string{nil, {"Origin", base}, {"Origin", allowed}, {"Host", "localhost"}} {
		id := fmt.Sprintf("ok-%d", i)
		if resp, b := post(t, base+"/v1/UpsertPapers", "", upsert(id), header...); resp.StatusCode != http.StatusOK {
			t.Fatalf("upsert with %v: %d %s", header, resp.StatusCode, b)
		}
		if _, err := client.GetPaper(ctx, &recommenderv1.GetPaperRequest{PaperId: id}); err != nil {
			t.Fatalf("upsert with %v not stored: %v", header, err)
		}
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ event, id, data string }

// readEvent reads the next event of a text/event-stream body.
func readEvent(t *testing.T, r *bufio.Reader) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v (event so far %+v)", err, ev)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			return ev
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

// openEvents starts GET /v1/feeds/{id}/events; the returned func ends it.
func openEvents(t *testing.T, url, lastEventID string) (*http.Response, *bufio.Reader, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+readKey)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, bufio.NewReader(resp.Body), func() { cancel(); resp.Body.Close() }
}

// A feed streams over HTTP as Server-Sent Events, resumable with Last-Event-ID.
func TestFeedServerSentEvents(t *testing.T) {
	_, base := setup(t)
	resp, b := post(t, base+"/v1/CreateFeed", writeKey, `{"feed":{"query":"speech recognition","minRelevance":0.5}}`)
	var created recommenderv1.CreateFeedResponse
	if resp.StatusCode != http.StatusOK || protojson.Unmarshal(b, &created) != nil {
		t.Fatalf("CreateFeed: %d %s", resp.StatusCode, b)
	}
	events := base + "/v1/feeds/" + created.GetFeed().GetFeedId() + "/events"
	resp, r, stop := openEvents(t, events, "")
	defer stop()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if ev := readEvent(t, r); ev.event != "heartbeat" || ev.id == "" {
		t.Fatalf("first event %+v, want a heartbeat with the cursor", ev)
	}
	resp, b = post(t, base+"/v1/UpsertPapers", writeKey, `{"papers":[{"id":"sse-1","title":"Streaming speech recognition on phones","abstract":"Speech recognition models that stream."}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("UpsertPapers: %d %s", resp.StatusCode, b)
	}
	ev := readEvent(t, r)
	var got recommenderv1.StreamFeedResponse
	if ev.event != "paper" || protojson.Unmarshal([]byte(ev.data), &got) != nil || got.GetPaper().GetId() != "sse-1" || got.GetCursor() != ev.id {
		t.Fatalf("event %+v, want the new paper with its cursor as id", ev)
	}
	stop()
	// Reconnecting as EventSource does, with the last id: nothing is sent again.
	_, r, stop2 := openEvents(t, events, ev.id)
	defer stop2()
	if again := readEvent(t, r); again.event != "heartbeat" || again.id != ev.id {
		t.Fatalf("after reconnecting: %+v, want a heartbeat at %s", again, ev.id)
	}
	stop2()
	resp, _, stop3 := openEvents(t, base+"/v1/feeds/no-such-feed/events", "")
	defer stop3()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown feed: HTTP %d", resp.StatusCode)
	}
}
