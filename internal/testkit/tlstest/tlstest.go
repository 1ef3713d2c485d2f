// Package tlstest makes certificate authorities and certificates for tests,
// and writes them the way the kubelet writes a Secret volume: files behind a
// ..data symlink that is swapped atomically on update.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority.
type CA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
}

// Pair is a certificate and its key, in PEM.
type Pair struct {
	Cert         *x509.Certificate
	CertPEM, Key []byte
	Serial       *big.Int
	CA           *CA
}

var serial atomic.Int64

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewCA returns a self-signed CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Server issues a server certificate for 127.0.0.1, localhost and names.
func (ca *CA) Server(t testing.TB, names ...string) *Pair {
	t.Helper()
	return ca.issue(t, "aggregator", x509.ExtKeyUsageServerAuth, append([]string{"localhost"}, names...), time.Now().Add(24*time.Hour))
}

// Client issues a client certificate named cn.
func (ca *CA) Client(t testing.TB, cn string) *Pair {
	t.Helper()
	return ca.issue(t, cn, x509.ExtKeyUsageClientAuth, nil, time.Now().Add(24*time.Hour))
}

// ExpiredClient issues a client certificate that expired an hour ago.
func (ca *CA) ExpiredClient(t testing.TB, cn string) *Pair {
	t.Helper()
	return ca.issue(t, cn, x509.ExtKeyUsageClientAuth, nil, time.Now().Add(-time.Minute))
}

func (ca *CA) issue(t testing.TB, cn string, usage x509.ExtKeyUsage, dns []string, notAfter time.Time) *Pair {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: dns,
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &Pair{
		Cert: cert, Serial: tmpl.SerialNumber, CA: ca,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}

// Secret is a directory laid out like a mounted kubernetes.io/tls Secret:
// tls.crt, tls.key and ca.crt are symlinks into ..data, itself a symlink to
// a timestamped directory; Write swaps ..data as the kubelet's atomic writer.
type Secret struct {
	Dir string
	n   int
}

// Files in a Secret directory.
func (s *Secret) Cert() string { return filepath.Join(s.Dir, "tls.crt") }
func (s *Secret) Key() string  { return filepath.Join(s.Dir, "tls.key") }
func (s *Secret) CA() string   { return filepath.Join(s.Dir, "ca.crt") }

// NewSecret writes p (may be nil: ca.crt only) and the CA bundle caPEM into dir.
func NewSecret(t testing.TB, dir string, p *Pair, caPEM ...[]byte) *Secret {
	t.Helper()
	s := &Secret{Dir: dir}
	s.Write(t, p, caPEM...)
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Write replaces the Secret's content atomically.
func (s *Secret) Write(t testing.TB, p *Pair, caPEM ...[]byte) {
	t.Helper()
	s.n++
	ts := fmt.Sprintf("..%s_%d", time.Now().UTC().Format("2006_01_02_15_04_05"), s.n)
	if err := os.MkdirAll(filepath.Join(s.Dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	var ca []byte
	for _, b := range caPEM {
		ca = append(ca, b...)
	}
	files := map[string][]byte{"ca.crt": ca}
	if p != nil {
		files["tls.crt"], files["tls.key"] = p.CertPEM, p.Key
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, ts, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.Dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, "..data")); err != nil {
		t.Fatal(err)
	}
}
