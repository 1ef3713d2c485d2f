package sink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

// pki is a CA and certificates it signed, written as PEM files.
type pki struct {
	dir     string
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	caPool  *x509.CertPool
	serial  int64
	caFile  string
	tlsCert tls.Certificate // the server's
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), serial: 1}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podlogs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", der)
	certFile, keyFile := p.issue(t, "server", x509.ExtKeyUsageServerAuth)
	p.tlsCert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns the cert and key files of a new certificate for 127.0.0.1.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	p.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return p.write(t, name+".crt", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", kder)
}

// securedNode puts TLS (server certificate from p, client certificate
// required when mTLS) and basic auth (user admin, password "s3cret") in
// front of the real node, as its security plugin would.
func securedNode(t *testing.T, p *pki, osURL string, mTLS bool) string {
	t.Helper()
	target, _ := url.Parse(osURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, pw, ok := r.BasicAuth(); !ok || u != "admin" || pw != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="OpenSearch Security"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		r.Header.Del("Authorization")
		proxy.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.tlsCert}, MinVersion: tls.VersionTLS12}
	if mTLS {
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, p.caPool
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes refused on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestClientTLSAndBasicAuth(t *testing.T) {
	osURL := ostest.URL(t)
	p := newPKI(t)
	clientCert, clientKey := p.issue(t, "podlogs-aggregator", x509.ExtKeyUsageClientAuth)
	secured := securedNode(t, p, osURL, true)
	ctx := context.Background()
	f := func(name string, cfg ClientConfig, wantErr error, wantMsg string) {
		t.Helper()
		cfg.URL = secured
		client, err := NewClient(ctx, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		version, err := Probe(ctx, client)
		switch {
		case wantErr == nil && err != nil:
			t.Fatalf("%s: probe: %v", name, err)
		case wantErr == nil && !strings.Contains(version, "2."):
			t.Fatalf("%s: version %q", name, version)
		case wantErr != nil && !errors.Is(err, wantErr):
			t.Fatalf("%s: probe error %v, want %v", name, err, wantErr)
		case wantErr != nil && !strings.Contains(err.Error(), wantMsg):
			t.Fatalf("%s: error %q does not say %q", name, err, wantMsg)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") || err != nil && strings.Contains(err.Error(), "wrong") {
			t.Fatalf("%s: the error shows the password: %v", name, err)
		}
	}
	good := ClientConfig{User: "admin", Password: "s3cret", CAFile: p.caFile, CertFile: clientCert, KeyFile: clientKey}
	f("all right", good, nil, "")
	bad := good
	bad.Password = "wrong"
	f("wrong password", bad, ErrAccessDenied, "check the user and password")
	noCA := good
	noCA.CAFile = ""
	f("unknown CA", noCA, ErrTLS, "--opensearch-ca")
	insecure := noCA
	insecure.Insecure = true
	f("insecure by choice", insecure, nil, "")
	noCert := good
	noCert.CertFile, noCert.KeyFile = "", ""
	client, _ := NewClient(ctx, ClientConfig{URL: secured, User: "admin", Password: "s3cret", CAFile: p.caFile})
	if _, err := Probe(ctx, client); err == nil {
		t.Fatal("no client certificate, and the probe passed")
	}

	// The writer works through it: templates, then a document.
	client, _ = NewClient(ctx, ClientConfig{URL: secured, User: "admin", Password: "s3cret", CAFile: p.caFile, CertFile: clientCert, KeyFile: clientKey})
	index := ostest.Index(t)
	if err := PutTemplate(ctx, client, templateName(index), IndexTemplate(index)); err != nil {
		t.Fatal(err)
	}
	if _, err := osrequest.Do(ctx, client, http.MethodPost, "/_bulk?refresh=true", []byte(`{"create":{"_index":"`+index+`","_id":"a"}}`+"\n"+doc(1, 1)+"\n")); err != nil {
		t.Fatal(err)
	}
	if n := count(t, osURL, index); n != 1 {
		t.Fatalf("index holds %d documents, want 1", n)
	}
}

// The probe of a server without TLS at an https URL says so.
func TestProbePlainHTTPAtHTTPSURL(t *testing.T) {
	osURL := ostest.URL(t)
	client, _ := NewClient(context.Background(), ClientConfig{URL: strings.Replace(osURL, "http://", "https://", 1)})
	_, err := Probe(context.Background(), client)
	if !errors.Is(err, ErrTLS) {
		t.Fatalf("probe error %v, want ErrTLS", err)
	}
}

var authHeader = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDPODLOGSTEST/(\d{8})/eu-west-3/es/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$`)

// SigV4: a local server checks each request's Authorization header and
// recomputes the signature from the headers it names; nothing leaves the
// machine. Credentials come from the environment, the first link of the
// default AWS chain.
func TestClientSigV4(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDPODLOGSTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "podlogs-test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	var checked atomic.Int64
	var failure atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(msg string) {
			failure.Store(msg)
			http.Error(w, msg, http.StatusForbidden)
		}
		body, _ := io.ReadAll(r.Body)
		m := authHeader.FindStringSubmatch(r.Header.Get("Authorization"))
		if m == nil {
			fail("bad Authorization header: " + r.Header.Get("Authorization"))
			return
		}
		sum := sha256.Sum256(body)
		if got := r.Header.Get("X-Amz-Content-Sha256"); got != hex.EncodeToString(sum[:]) {
			fail("X-Amz-Content-Sha256 " + got + " is not the body's hash")
			return
		}
		when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
		if err != nil || when.Format("20060102") != m[1] || time.Since(when).Abs() > 5*time.Minute {
			fail("bad X-Amz-Date " + r.Header.Get("X-Amz-Date"))
			return
		}
		// Sign again what the client says it signed, and compare.
		again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
		for _, h := range strings.Split(m[2], ";") {
			switch h {
			case "host":
			case "content-length":
				again.ContentLength = r.ContentLength
			default:
				again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
			}
		}
		creds := aws.Credentials{AccessKeyID: "AKIDPODLOGSTEST", SecretAccessKey: "podlogs-test-secret"}
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), "es", "eu-west-3", when); err != nil {
			fail(err.Error())
			return
		}
		if want := authHeader.FindStringSubmatch(again.Header.Get("Authorization")); want == nil || want[3] != m[3] {
			fail("signature does not verify: " + r.Header.Get("Authorization") + " want " + again.Header.Get("Authorization"))
			return
		}
		checked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"version":{"distribution":"opensearch","number":"2.19.0"}}`)
	}))
	defer srv.Close()
	ctx := context.Background()
	client, err := NewClient(ctx, ClientConfig{URL: srv.URL, AWSRegion: "eu-west-3"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Probe(ctx, client); err != nil {
		t.Fatalf("probe: %v (%v)", err, failure.Load())
	}
	if err := PutTemplate(ctx, client, "podlogs-x", IndexTemplate("x")); err != nil {
		t.Fatalf("PUT with a body: %v (%v)", err, failure.Load())
	}
	if checked.Load() != 2 {
		t.Fatalf("%d signed requests verified, want 2", checked.Load())
	}
}
