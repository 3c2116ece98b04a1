package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
func pki(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", "CERTIFICATE", caDER)
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		write(name+".pem", "CERTIFICATE", der)
		write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth)
	leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return dir
}

// TestMutualTLS serves with a certificate and requires client certificates; the CLI connects
// with the CA and a client certificate, to the gRPC port and to gRPC on the HTTP port, and is
// refused without one or without TLS.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	d := pki(t)
	f := func(name string) string { return filepath.Join(d, name) }
	// startServe's client is plaintext, so drive this server with the CLI only.
	cmd := exec.Command(binary, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--demo",
		"--tls-cert", f("server.pem"), "--tls-key", f("server-key.pem"), "--tls-client-ca", f("ca.pem"))
	p := watchServe(t, cmd)
	if !strings.Contains(p.logs(), "tls=true mtls=true") {
		t.Fatalf("start-up does not report mutual TLS:\n%s", p.logs())
	}
	// The HTTP port serves gRPC too, over TLS with ALPN: the CLI reaches both the same way.
	for _, addr := range []string{p.addr, p.httpAddr} {
		ok := []string{"info", "--server", addr, "--tls-ca", f("ca.pem"), "--tls-cert", f("client.pem"), "--tls-key", f("client-key.pem")}
		if out, errOut, code := runCLI(t, ok...); code != 0 || !strings.Contains(out, "papers:     48") {
			t.Fatalf("%s with a client certificate: exit %d\n%s%s", addr, code, out, errOut)
		}
	}
	for name, args := range map[string][]string{
		"no client certificate": {"info", "--server", p.addr, "--tls-ca", f("ca.pem"), "--timeout", "5s"},
		"plaintext":             {"info", "--server", p.addr, "--timeout", "5s"},
	} {
		if _, _, code := runCLI(t, args...); code == 0 {
			t.Errorf("%s: the call succeeded", name)
		}
	}
}
