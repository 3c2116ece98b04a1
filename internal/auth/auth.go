package auth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Scope is what a key may do.
type Scope int

// Scopes, each including the one before.
const (
	Read  Scope = iota + 1 // Recommend, GetPaper, GetIndexInfo
	Write                  // also UpsertPapers, DeletePapers, IngestPapers
)

func (s Scope) String() string {
	if s == Write {
		return "write"
	}
	return "read"
}

// Principal is an authenticated caller. ID names the key without revealing it (a prefix of its
// SHA-256), for logs, metrics and rate limiting.
type Principal struct {
	ID    string
	Scope Scope
}

type key struct {
	digest [sha256.Size]byte
	p      Principal
}

// Keys is a set of API keys.
type Keys struct{ keys []key }

// ParseKeys reads keys, one per line as "<scope> <key>" (scope read or write); blank lines and
// lines starting with # are skipped. Keys must be at least 16 characters: shorter ones are
// guessable.
func ParseKeys(r io.Reader) (*Keys, error) {
	k := &Keys{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("API keys line %d: want \"<read|write> <key>\"", n)
		}
		var scope Scope
		switch fields[0] {
		case "read":
			scope = Read
		case "write":
			scope = Write
		default:
			return nil, fmt.Errorf("API keys line %d: scope %q is not read or write", n, fields[0])
		}
		if len(fields[1]) < 16 {
			return nil, fmt.Errorf("API keys line %d: key shorter than 16 characters", n)
		}
		digest := sha256.Sum256([]byte(fields[1]))
		k.keys = append(k.keys, key{digest: digest, p: Principal{ID: "key-" + hex.EncodeToString(digest[:4]), Scope: scope}})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(k.keys) == 0 {
		return nil, errors.New("no API keys found")
	}
	return k, nil
}

// Len is the number of keys.
func (k *Keys) Len() int { return len(k.keys) }

// Errors of Authenticate.
var (
	ErrNoKey      = errors.New("missing API key: send \"authorization: Bearer <key>\"")
	ErrUnknownKey = errors.New("unknown API key")
)

// Authenticate finds the key of the request's "authorization: Bearer <key>" metadata. Digests
// are compared in constant time against every key, so timing reveals neither whether nor which
// key matched.
func (k *Keys) Authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return Principal{}, ErrNoKey
	}
	token, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || token == "" {
		return Principal{}, ErrNoKey
	}
	digest := sha256.Sum256([]byte(token))
	var found Principal
	for _, c := range k.keys {
		if subtle.ConstantTimeCompare(digest[:], c.digest[:]) == 1 {
			found = c.p
		}
	}
	if found.ID == "" {
		return Principal{}, ErrUnknownKey
	}
	return found, nil
}

// Limiter is a token bucket per caller.
type Limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewLimiter allows each caller perSecond requests a second on average, bursts of burst.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return &Limiter{rate: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*rate.Limiter{}}
}

// maxBuckets bounds the memory of anonymous callers' buckets (one per peer address).
const maxBuckets = 100_000

// Allow takes a token from caller's bucket, or says how long until one is free.
func (l *Limiter) Allow(caller string) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	b := l.buckets[caller]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			clear(l.buckets) // all buckets start full again: a brief over-allowance, never a leak
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[caller] = b
	}
	l.mu.Unlock()
	r := b.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// Caller names the caller for rate limiting: its key, or without one its peer's address.
func Caller(ctx context.Context, p Principal) string {
	if p.ID != "" {
		return p.ID
	}
	if pr, ok := peer.FromContext(ctx); ok {
		addr := pr.Addr.String()
		if i := strings.LastIndexByte(addr, ':'); i > 0 {
			addr = addr[:i]
		}
		return "peer-" + addr
	}
	return "anonymous"
}
