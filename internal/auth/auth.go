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
	"math"
	"strconv"
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
	// Rate is the key's own rate limit; nil: the server's.
	Rate *Rate
}

// Rate is a token bucket's size: PerSecond requests a second on average (0: unlimited), bursts
// of Burst.
type Rate struct {
	PerSecond float64
	Burst     int
}

type key struct {
	digest [sha256.Size]byte
	p      Principal
}

// Keys is a set of API keys.
type Keys struct{ keys []key }

// MaxRate bounds rates and bursts: a larger number is a typo, not a limit.
const MaxRate = 1e6

// ParseKeys reads keys, one per line as "<scope> <key> [rate=<per second>] [burst=<n>]" (scope
// read or write; rate 0 is unlimited); blank lines and lines starting with # are skipped. Keys
// must be at least 16 characters: shorter ones are guessable. A key listed twice is refused,
// since which line should win is the operator's call, not ours.
func ParseKeys(r io.Reader) (*Keys, error) {
	k := &Keys{}
	lineOf := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("API keys line %d: want \"<read|write> <key> [rate=<per second>] [burst=<n>]\"", n)
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
		p := Principal{ID: "key-" + hex.EncodeToString(digest[:4]), Scope: scope}
		if first, dup := lineOf[digest]; dup {
			return nil, fmt.Errorf("API keys line %d: key %s is already on line %d; list each key once, with one scope", n, p.ID, first)
		}
		lineOf[digest] = n
		rate, err := parseRate(fields[2:])
		if err != nil {
			return nil, fmt.Errorf("API keys line %d (%s): %w", n, p.ID, err)
		}
		p.Rate = rate
		k.keys = append(k.keys, key{digest: digest, p: p})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(k.keys) == 0 {
		return nil, errors.New("no API keys found")
	}
	return k, nil
}

// parseRate reads a key line's options, rate=<per second> and burst=<n>; nil when neither is
// given. A burst alone keeps the server's rate.
func parseRate(opts []string) (*Rate, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	r := &Rate{PerSecond: -1, Burst: -1}
	for _, o := range opts {
		name, val, _ := strings.Cut(o, "=")
		switch name {
		case "rate":
			v, err := strconv.ParseFloat(val, 64)
			if err != nil || math.IsNaN(v) || v < 0 || v > MaxRate {
				return nil, fmt.Errorf("rate must be a number of requests per second from 0 (unlimited) to %g, got %q", float64(MaxRate), val)
			}
			r.PerSecond = v
		case "burst":
			v, err := strconv.Atoi(val)
			if err != nil || v < 1 || v > MaxRate {
				return nil, fmt.Errorf("burst must be a whole number from 1 to %g, got %q", float64(MaxRate), val)
			}
			r.Burst = v
		default:
			return nil, fmt.Errorf("unknown option %q: want rate=<per second> or burst=<n>", o)
		}
	}
	return r, nil
}

// HasRates says whether some key has a rate of its own, so a server without a default limit
// still needs a limiter.
func (k *Keys) HasRates() bool {
	for _, c := range k.keys {
		if c.p.Rate != nil {
			return true
		}
	}
	return false
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
	def Rate

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewLimiter allows each caller perSecond requests a second on average (0: unlimited), bursts
// of burst, unless its key has a rate of its own.
func NewLimiter(perSecond float64, burst int) *Limiter {
	return &Limiter{def: Rate{PerSecond: perSecond, Burst: max(burst, 1)}, buckets: map[string]*rate.Limiter{}}
}

// maxBuckets bounds the memory of anonymous callers' buckets (one per peer address).
const maxBuckets = 100_000

// Allow takes a token from caller's bucket, or says how long until one is free. own is the
// caller's key's rate (nil: the default); what it leaves unset (negative) is the default's.
func (l *Limiter) Allow(caller string, own *Rate) (ok bool, retryAfter time.Duration) {
	r := l.def
	if own != nil {
		if own.PerSecond >= 0 {
			r.PerSecond = own.PerSecond
		}
		if own.Burst > 0 {
			r.Burst = own.Burst
		}
	}
	if r.PerSecond == 0 {
		return true, 0
	}
	l.mu.Lock()
	b := l.buckets[caller]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			clear(l.buckets) // all buckets start full again: a brief over-allowance, never a leak
		}
		b = rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst)
		l.buckets[caller] = b
	}
	l.mu.Unlock()
	res := b.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
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
