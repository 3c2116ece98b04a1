package qdrant_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paperrec/recommender/internal/lexical"
	"github.com/paperrec/recommender/internal/store"
	"github.com/paperrec/recommender/internal/store/qdrant"
	"github.com/paperrec/recommender/internal/store/storetest"
)

// TestClusterSurvivesANodeKilled runs three Qdrant nodes on loopback as one cluster (peer to
// peer, the first bootstrapping the others), the papers in 3 shards of 2 replicas, and SIGKILLs
// the third node under a load of writes and reads: no acknowledged write is lost, reads and
// writes go on (the adapter's settings: writes wait for the write to be applied, Qdrant's
// default write consistency factor 1, reads from any live replica), and the node rejoins with
// every replica active again. The store's client talks to the first node, as replicas of the
// service talk to a Service in front of the nodes. It needs a Qdrant binary:
//
//	QDRANT_BIN=/path/to/qdrant go test ./internal/store/qdrant -run Cluster -v
func TestClusterSurvivesANodeKilled(t *testing.T) {
	bin := os.Getenv("QDRANT_BIN")
	if bin == "" {
		t.Skip("set QDRANT_BIN to a Qdrant binary to run a three-node cluster")
	}
	c := startCluster(t, bin, 3)
	o := qdrant.Defaults()
	o.URL, o.Collection, o.Shards, o.Replicas, o.WriteSettle = c.nodes[0].grpcURL(), "fault", 3, 2, 0
	s, err := qdrant.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.BindEmbedding(ctx, store.EmbeddingSpec{Model: "cluster", Dimensions: 4}); err != nil {
		t.Fatal(err)
	}
	c.waitReplicas(t, o.Collection, 6)

	var (
		mu                    sync.Mutex
		acked                 []string
		writes, writeFailures atomic.Int64
		reads, readFailures   atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // writer: batches of 10, each acknowledged batch recorded
		defer wg.Done()
		for b := 0; ; b++ {
			select {
			case <-stop:
				return
			default:
			}
			var batch []store.Paper
			for i := range 10 {
				p := storetest.Paper(fmt.Sprintf("p%05d", 10*b+i), fmt.Sprintf("Cluster paper %d", 10*b+i), "Replicated shards survive a node.")
				p.Dense = []float32{1, float32(i), float32(b % 7), 1}
				batch = append(batch, p)
			}
			if _, err := s.Upsert(ctx, batch); err != nil {
				writeFailures.Add(1)
				continue
			}
			writes.Add(1)
			mu.Lock()
			for _, p := range batch {
				acked = append(acked, p.ID)
			}
			mu.Unlock()
		}
	}()
	go func() { // reader: a search and a read of what it found
		defer wg.Done()
		q := store.Query{Lexical: lexical.Query("replicated shards"), Dense: []float32{1, 2, 3, 1}, Limit: 20}
		for {
			select {
			case <-stop:
				return
			default:
			}
			lists, err := s.Search(ctx, q)
			if err == nil {
				var ids []string
				for _, h := range lists.Lexical {
					ids = append(ids, h.ID)
				}
				_, err = s.Read(ctx, ids, store.Metadata, "")
			}
			if err != nil {
				readFailures.Add(1)
				continue
			}
			reads.Add(1)
		}
	}()
	// checkAcked reads back every paper acknowledged so far.
	checkAcked := func(when string) {
		mu.Lock()
		ids := slices.Clone(acked)
		mu.Unlock()
		have := map[string]bool{}
		for chunk := range slices.Chunk(ids, 1000) {
			found, err := s.Lookup(ctx, chunk)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			for _, p := range found {
				have[p.ID] = true
			}
		}
		var lost []string
		for _, id := range ids {
			if !have[id] {
				lost = append(lost, id)
			}
		}
		if len(lost) > 0 {
			t.Fatalf("%s: %d of %d acknowledged papers lost, e.g. %v", when, len(lost), len(ids), lost[:min(5, len(lost))])
		}
		t.Logf("%s: all %d acknowledged papers read back", when, len(ids))
	}
	// Each phase lasts until the load has done n acknowledged write batches and n searches with
	// reads in it (waitFor fails the test if they stop for a minute).
	phase := func(name string, n int64) {
		w0, r0, wf0, rf0, start := writes.Load(), reads.Load(), writeFailures.Load(), readFailures.Load(), time.Now()
		waitFor(t, name+": writes and reads going on", func() bool { return writes.Load()-w0 >= n && reads.Load()-r0 >= n })
		t.Logf("%s: %d write batches acknowledged (%d failed), %d searches with reads (%d failed) in %v", name,
			writes.Load()-w0, writeFailures.Load()-wf0, reads.Load()-r0, readFailures.Load()-rf0, time.Since(start).Round(time.Millisecond))
	}
	phase("three nodes", 50)
	c.nodes[2].kill(t)
	phase("node 3 killed", 300)
	t.Logf("replicas on the other nodes as node 1 sees them: %v", c.nodes[0].remoteStates(t, o.Collection))
	checkAcked("with node 3 down")
	c.nodes[2].start(t)
	c.waitReplicas(t, o.Collection, 6)
	phase("node 3 back", 50)
	close(stop)
	wg.Wait()
	checkAcked("after node 3 rejoined")
}

// cluster is Qdrant nodes on loopback, stopped when the test ends.
type cluster struct{ nodes []*node }

type node struct {
	bin, dir        string
	http, grpc, p2p int
	args            []string
	cmd             *exec.Cmd
	exited          chan struct{}
}

func (n *node) grpcURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.grpc) }

func startCluster(t *testing.T, bin string, size int) *cluster {
	t.Helper()
	c := &cluster{}
	for i := range size {
		ports := freePorts(t, 3)
		n := &node{bin: bin, dir: t.TempDir(), http: ports[0], grpc: ports[1], p2p: ports[2]}
		n.args = []string{"--uri", fmt.Sprintf("http://127.0.0.1:%d", n.p2p)}
		if i > 0 {
			n.args = append(n.args, "--bootstrap", fmt.Sprintf("http://127.0.0.1:%d", c.nodes[0].p2p))
		}
		n.start(t)
		c.nodes = append(c.nodes, n)
		t.Cleanup(func() { n.kill(t) })
		if i == 0 {
			waitFor(t, "the first node to be ready", func() bool { return n.get("/readyz", nil) == nil })
		}
	}
	waitFor(t, "the nodes to form one cluster", func() bool {
		var st struct {
			Result struct {
				Peers map[string]any `json:"peers"`
			} `json:"result"`
		}
		return c.nodes[0].get("/cluster", &st) == nil && len(st.Result.Peers) == size
	})
	return c
}

// waitReplicas waits until the collection's shards have want replicas, every one active.
func (c *cluster) waitReplicas(t *testing.T, collection string, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d active replicas of %s", want, collection), func() bool {
		active := 0
		for _, n := range c.nodes {
			var st struct {
				Result struct {
					Local []struct {
						State string `json:"state"`
					} `json:"local_shards"`
				} `json:"result"`
			}
			if n.get("/collections/"+collection+"/cluster", &st) != nil {
				return false
			}
			for _, sh := range st.Result.Local {
				if sh.State == "Active" {
					active++
				}
			}
		}
		return active == want
	})
}

// remoteStates are the states of the collection's replicas on the other nodes, as n sees them
// (peer id's last digits: state).
func (n *node) remoteStates(t *testing.T, collection string) []string {
	t.Helper()
	var st struct {
		Result struct {
			Remote []struct {
				PeerID uint64 `json:"peer_id"`
				State  string `json:"state"`
			} `json:"remote_shards"`
		} `json:"result"`
	}
	if err := n.get("/collections/"+collection+"/cluster", &st); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range st.Result.Remote {
		out = append(out, fmt.Sprintf("%d:%s", r.PeerID%1000, r.State))
	}
	return out
}

func (n *node) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(n.dir, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	n.cmd = exec.Command(n.bin, n.args...)
	n.cmd.Dir, n.cmd.Stdout, n.cmd.Stderr = n.dir, log, log
	n.cmd.Env = append(os.Environ(), "QDRANT__STORAGE__STORAGE_PATH="+filepath.Join(n.dir, "storage"),
		"QDRANT__SERVICE__HOST=127.0.0.1", fmt.Sprintf("QDRANT__SERVICE__HTTP_PORT=%d", n.http),
		fmt.Sprintf("QDRANT__SERVICE__GRPC_PORT=%d", n.grpc), "QDRANT__CLUSTER__ENABLED=true",
		fmt.Sprintf("QDRANT__CLUSTER__P2P__PORT=%d", n.p2p), "QDRANT__TELEMETRY_DISABLED=true")
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(n.cmd, n.exited)
	waitFor(t, "a node to be ready", func() bool { return n.get("/readyz", nil) == nil })
}

// kill sends SIGKILL (no shutdown of its own) and waits for the process to end.
func (n *node) kill(t *testing.T) {
	t.Helper()
	select {
	case <-n.exited:
		return
	default:
	}
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	<-n.exited
}

// get reads one of the node's HTTP endpoints into out (nil: the status alone).
func (n *node) get(path string, out any) error {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d%s", n.http, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// waitFor polls cond until it holds, for at most a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n ports free on loopback a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return slices.Clip(ports)
}
