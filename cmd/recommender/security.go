package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/paperrec/recommender/gen/client"
	"github.com/paperrec/recommender/internal/auth"
	"github.com/paperrec/recommender/internal/cli"
	"github.com/paperrec/recommender/internal/server"
)

// serverSecurity are serve's authentication, TLS and rate-limit flags.
type serverSecurity struct {
	keysFile             string
	allowUnauthenticated bool
	rateLimit            float64
	rateBurst            int
	maxCalls             int
	maxConns             int
	tlsCert, tlsKey      string
	tlsClientCA          string
}

func (f *serverSecurity) register(fs *flag.FlagSet) {
	fs.StringVar(&f.keysFile, "api-keys-file", "",
		"file of API keys, one per line as \"read <key>\" or \"write <key>\", optionally followed by the key's own "+
			"\"rate=<per second> burst=<n>\" (env RECOMMENDER_API_KEYS_FILE); "+
			"or RECOMMENDER_API_KEYS=\"write:<key>,read:<key>\"")
	fs.BoolVar(&f.allowUnauthenticated, "allow-unauthenticated", false,
		"serve without API keys on a non-loopback address (env RECOMMENDER_ALLOW_UNAUTHENTICATED)")
	fs.Float64Var(&f.rateLimit, "rate-limit", 0,
		"requests per second allowed to each API key (or address, without keys); 0: unlimited (env RECOMMENDER_RATE_LIMIT)")
	fs.IntVar(&f.rateBurst, "rate-burst", 20, "requests a caller may send at once above its rate")
	fs.IntVar(&f.maxConns, "max-connections-per-address", server.DefaultConfig().MaxConnsPerAddress,
		"connections one client address may hold open at once, on each port; 0: unbounded (env RECOMMENDER_MAX_CONNECTIONS_PER_ADDRESS)")
	fs.IntVar(&f.maxCalls, "max-calls-per-caller", server.DefaultConfig().MaxCallsPerCaller,
		"unary calls each API key (or address, without keys) may have in flight at once; 0: unbounded (env RECOMMENDER_MAX_CALLS_PER_CALLER)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve TLS with this PEM certificate (env RECOMMENDER_TLS_CERT)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert (env RECOMMENDER_TLS_KEY)")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "",
		"require client certificates signed by this PEM CA: mutual TLS (env RECOMMENDER_TLS_CLIENT_CA)")
}

// keys loads the API keys, or returns nil when none are configured.
func (f *serverSecurity) keys() (*auth.Keys, error) {
	switch {
	case f.keysFile != "":
		file, err := os.Open(f.keysFile)
		if err != nil {
			return nil, fmt.Errorf("API keys: %w", err)
		}
		defer file.Close()
		return auth.ParseKeys(file)
	case os.Getenv("RECOMMENDER_API_KEYS") != "":
		var lines []string
		for _, entry := range strings.Split(os.Getenv("RECOMMENDER_API_KEYS"), ",") {
			scope, key, ok := strings.Cut(strings.TrimSpace(entry), ":")
			if !ok {
				return nil, cli.UsageError{Msg: "RECOMMENDER_API_KEYS entries look like write:<key> or read:<key>"}
			}
			lines = append(lines, scope+" "+key)
		}
		return auth.ParseKeys(strings.NewReader(strings.Join(lines, "\n")))
	}
	return nil, nil
}

// tlsConfig builds the listener's TLS configuration, or nil for plaintext.
func (f *serverSecurity) tlsConfig() (*tls.Config, error) {
	if f.tlsCert == "" && f.tlsKey == "" {
		if f.tlsClientCA != "" {
			return nil, cli.UsageError{Msg: "--tls-client-ca needs --tls-cert and --tls-key"}
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.tlsClientCA != "" {
		pool, err := loadPool(f.tlsClientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA certificates: no PEM certificate in %s", path)
	}
	return pool, nil
}

// clientSecurity are the client commands' TLS and API key flags.
type clientSecurity struct {
	useTLS               bool
	ca, cert, key, sname string
	keyFile              string
}

func (c *clientSecurity) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.useTLS, "tls", false, "connect with TLS (implied by the other --tls flags)")
	fs.StringVar(&c.ca, "tls-ca", "", "verify the server with this PEM CA instead of the system roots")
	fs.StringVar(&c.cert, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&c.key, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&c.sname, "tls-server-name", "", "expected server name, when it differs from the address")
	fs.StringVar(&c.keyFile, "api-key-file", "",
		"file holding the API key to send (env RECOMMENDER_API_KEY_FILE); or set RECOMMENDER_API_KEY")
}

// options are the client package's options for the flags: TLS and the API key.
func (c *clientSecurity) options() (client.Options, error) {
	var o client.Options
	if c.useTLS || c.ca != "" || c.cert != "" || c.sname != "" {
		o.TLS = &tls.Config{ServerName: c.sname, MinVersion: tls.VersionTLS12}
		if c.ca != "" {
			pool, err := loadPool(c.ca)
			if err != nil {
				return o, err
			}
			o.TLS.RootCAs = pool
		}
		if c.cert != "" || c.key != "" {
			cert, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				return o, fmt.Errorf("client certificate: %w", err)
			}
			o.TLS.Certificates = []tls.Certificate{cert}
		}
	}
	var err error
	o.APIKey, err = cli.Secret("RECOMMENDER_API_KEY", c.keyFile, "API key")
	return o, err
}

var errNoServer = errors.New("--server is empty")
