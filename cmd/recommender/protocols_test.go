package main

import (
	"bytes"
	"context"
	bin "encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	recommenderv1 "github.com/paperrec/recommender/gen/recommender/v1"
)

// TestHTTPPortProtocols calls the HTTP port in each protocol it serves besides POST /v1/: the
// Connect protocol (JSON, and with buf curl), gRPC-Web and gRPC over h2c, with API keys, so
// the calls pass through the same key checks as the gRPC port.
func TestHTTPPortProtocols(t *testing.T) {
	t.Parallel()
	p := startServeEnv(t, []string{keysEnv}, t.TempDir(), "--demo")
	base := "http://" + p.httpAddr + "/recommender.v1.RecommenderService/"
	connectAs := func(version, method, key, body string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, base+method, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if version != "" {
			req.Header.Set("Connect-Protocol-Version", version)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	connect := func(method, key, body string) (int, []byte) { return connectAs("1", method, key, body) }
	t.Run("connect", func(t *testing.T) {
		code, b := connect("GetIndexInfo", readKey, `{}`)
		var info struct{ PaperCount string }
		if err := json.Unmarshal(b, &info); code != http.StatusOK || err != nil || info.PaperCount != "48" {
			t.Fatalf("GetIndexInfo: %d %s", code, b)
		}
		code, b = connect("GetIndexInfo", "", `{}`)
		var e struct{ Code, Message string }
		if err := json.Unmarshal(b, &e); code != http.StatusUnauthorized || err != nil || e.Code != "unauthenticated" {
			t.Fatalf("without a key: %d %s", code, b)
		}
		if code, b := connect("UpsertPapers", readKey, `{"papers":[{"id":"x-1","title":"T"}]}`); code != http.StatusForbidden {
			t.Fatalf("write with a read key: %d %s", code, b)
		}
		// As plain curl calls it: the protocol version header is optional.
		code, b = connectAs("", "GetPaper", readKey, `{"paperId":"demo-0001"}`)
		if code != http.StatusOK || !strings.Contains(string(b), "Message Passing on Heterogeneous Citation Graphs") {
			t.Fatalf("Connect call without Connect-Protocol-Version: %d %s", code, b)
		}
	})
	t.Run("buf curl", func(t *testing.T) {
		if testing.Short() {
			t.Skip("compiles buf, minutes from a cold build cache; runs without -short")
		}
		root, _ := filepath.Abs("../..")
		cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "buf", "curl", "--schema", ".", "--protocol", "connect",
			"-H", "Authorization: Bearer "+readKey, "-d", `{"paper_id":"demo-0001"}`, base+"GetPaper")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"title": "Message Passing on Heterogeneous Citation Graphs"`) {
			t.Fatalf("buf curl: %v\n%s", err, out)
		}
	})
	t.Run("grpc-web", func(t *testing.T) {
		msg, _ := proto.Marshal(&recommenderv1.GetPaperRequest{PaperId: "demo-0001"})
		frame := append([]byte{0, 0, 0, 0, 0}, msg...)
		bin.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
		req, _ := http.NewRequest(http.MethodPost, base+"GetPaper", bytes.NewReader(frame))
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		req.Header.Set("Authorization", "Bearer "+readKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || len(b) < 5 || b[0] != 0 {
			t.Fatalf("gRPC-Web: %d %q", resp.StatusCode, b)
		}
		var got recommenderv1.GetPaperResponse
		n := bin.BigEndian.Uint32(b[1:5])
		if err := proto.Unmarshal(b[5:5+n], &got); err != nil || got.GetPaper().GetId() != "demo-0001" {
			t.Fatalf("gRPC-Web message: %v %v", &got, err)
		}
		if trailer := strings.ToLower(string(b[5+n:])); !strings.Contains(trailer, "grpc-status: 0") {
			t.Fatalf("gRPC-Web trailer %q", trailer)
		}
	})
	t.Run("grpc over h2c", func(t *testing.T) {
		conn, err := grpc.NewClient(p.httpAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := recommenderv1.NewRecommenderServiceClient(conn)
		_, err = client.GetIndexInfo(context.Background(), &recommenderv1.GetIndexInfoRequest{})
		wantStatus(t, err, codes.Unauthenticated, "gRPC on the HTTP port without a key")
		keyed, _ := clientWithKey(t, p.httpAddr, readKey)
		resp, err := keyed.Recommend(context.Background(), &recommenderv1.RecommendRequest{PositivePaperIds: []string{"demo-0001"}, PageSize: 3})
		if err != nil || len(resp.GetResults()) != 3 {
			t.Fatalf("Recommend over gRPC on the HTTP port: %v, %v", resp, err)
		}
	})
}
