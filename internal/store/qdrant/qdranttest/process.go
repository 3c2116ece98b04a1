package qdranttest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
)

// Process is a real Qdrant server run from its binary (QDRANT_BIN in the tests that use it),
// with its storage in a folder of its own, so a test can SIGKILL it and start it again on the
// same data and ports.
type Process struct {
	bin, dir           string
	grpcPort, httpPort int
	log                *os.File

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartProcess starts Qdrant from bin with its storage and log in dir, on free loopback ports,
// and waits until it answers.
func StartProcess(bin, dir string) (*Process, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "qdrant.log"))
	if err != nil {
		return nil, err
	}
	p := &Process{bin: bin, dir: dir, grpcPort: ports[0], httpPort: ports[1], log: log}
	if err := p.Restart(); err != nil {
		_ = log.Close()
		return nil, err
	}
	return p, nil
}

// URL is Qdrant's gRPC endpoint in the form the adapter takes.
func (p *Process) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.grpcPort) }

// Restart starts Qdrant again (after Kill) and waits until it answers.
func (p *Process) Restart() error {
	cmd := exec.Command(p.bin)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(),
		"QDRANT__STORAGE__STORAGE_PATH="+filepath.Join(p.dir, "storage"),
		"QDRANT__STORAGE__SNAPSHOTS_PATH="+filepath.Join(p.dir, "snapshots"),
		"QDRANT__SERVICE__HOST=127.0.0.1",
		"QDRANT__SERVICE__GRPC_PORT="+strconv.Itoa(p.grpcPort),
		"QDRANT__SERVICE__HTTP_PORT="+strconv.Itoa(p.httpPort),
		"QDRANT__TELEMETRY_DISABLED=true")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qdrant: %w", err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	return p.waitReady()
}

// waitReady blocks until Qdrant answers a health check, for at most a minute.
func (p *Process) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := qc.NewClient(&qc.Config{Host: "127.0.0.1", Port: p.grpcPort, SkipCompatibilityCheck: true})
	if err != nil {
		return err
	}
	defer client.Close()
	if _, err := client.GetQdrantClient().HealthCheck(ctx, &qc.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		return fmt.Errorf("qdrant did not answer within a minute (log: %s): %w", p.log.Name(), err)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to end: nothing is flushed or shut down cleanly.
func (p *Process) Kill() error {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil {
		return err
	}
	_ = cmd.Wait() // "signal: killed"
	return nil
}

// Close kills Qdrant and closes its log; the folder is the caller's.
func (p *Process) Close() error {
	err := p.Kill()
	_ = p.log.Close()
	return err
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
