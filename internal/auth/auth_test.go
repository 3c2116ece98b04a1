package auth_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/paperrec/recommender/internal/auth"
)

const (
	keyA = "aaaaaaaaaaaaaaaaaaaa"
	keyB = "bbbbbbbbbbbbbbbbbbbb"
)

func TestParseKeysRefusesBadLines(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"read " + keyA + "\nwrite " + keyA, "line 2: key key-"},
		{"read " + keyA + "\n\n# a comment\nread " + keyA, "is already on line 1"},
		{"read short", "shorter than 16"},
		{"admin " + keyA, `scope "admin"`},
		{"read " + keyA + " rate=-1", "rate must be"},
		{"read " + keyA + " rate=NaN", "rate must be"},
		{"read " + keyA + " rate=1e9", "rate must be"},
		{"read " + keyA + " burst=0", "burst must be"},
		{"read " + keyA + " speed=3", `unknown option "speed=3"`},
		{"# nothing\n", "no API keys"},
	} {
		_, err := auth.ParseKeys(strings.NewReader(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %q", tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), keyA) {
			t.Errorf("%q: the error reveals the key: %v", tc.file, err)
		}
	}
}

func authenticate(t *testing.T, k *auth.Keys, key string) auth.Principal {
	t.Helper()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key))
	p, err := k.Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A key's own rate replaces the server's for that key only; rate=0 is unlimited.
func TestPerKeyRates(t *testing.T) {
	const keyC = "cccccccccccccccccccc"
	k, err := auth.ParseKeys(strings.NewReader("read " + keyA + " rate=0.001 burst=2\nwrite " + keyB + "\nread " + keyC + " rate=0"))
	if err != nil {
		t.Fatal(err)
	}
	if !k.HasRates() {
		t.Fatal("HasRates is false with two keys that have rates")
	}
	a, b, c := authenticate(t, k, keyA), authenticate(t, k, keyB), authenticate(t, k, keyC)
	l := auth.NewLimiter(0.001, 5) // the server's: bursts of 5, then one call per 1,000 s
	allowed := func(p auth.Principal, n int) int {
		got := 0
		for range n {
			if ok, retry := l.Allow(p.ID, p.Rate); ok {
				got++
			} else if retry <= 0 {
				t.Fatalf("%s refused without a retry delay", p.ID)
			}
		}
		return got
	}
	if got := allowed(a, 10); got != 2 {
		t.Errorf("key with burst=2: %d of 10 calls allowed, want 2", got)
	}
	if got := allowed(b, 10); got != 5 {
		t.Errorf("key without a rate: %d of 10 calls allowed, want the server's burst of 5", got)
	}
	if got := allowed(c, 100); got != 100 {
		t.Errorf("key with rate=0: %d of 100 calls allowed, want all", got)
	}
	if k2, _ := auth.ParseKeys(strings.NewReader("read " + keyA)); k2.HasRates() {
		t.Error("HasRates is true with no rate given")
	}
}
