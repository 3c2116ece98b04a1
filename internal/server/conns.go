package server

import (
	"net"
	"sync"
)

// LimitPerAddress returns a listener that holds at most max connections from any one remote
// address at once: past that, a new connection from it is closed as soon as it is accepted.
// Idle connections cost a descriptor each; without a bound, one client opening thousands
// exhausts the process's and no other client connects. max 0 leaves lis as it is.
func LimitPerAddress(lis net.Listener, max int) net.Listener {
	if max <= 0 {
		return lis
	}
	return &perAddress{Listener: lis, max: max, open: map[string]int{}}
}

type perAddress struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[string]int
}

func (l *perAddress) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, err := net.SplitHostPort(c.RemoteAddr().String())
		if err != nil {
			host = c.RemoteAddr().String()
		}
		l.mu.Lock()
		full := l.open[host] >= l.max
		if !full {
			l.open[host]++
		}
		l.mu.Unlock()
		if full {
			_ = c.Close()
			continue
		}
		return &countedConn{Conn: c, release: sync.OnceFunc(func() {
			l.mu.Lock()
			if l.open[host]--; l.open[host] == 0 {
				delete(l.open, host)
			}
			l.mu.Unlock()
		})}, nil
	}
}

type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
