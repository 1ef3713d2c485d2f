package tlsfiles_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/podlogs/podlogs/internal/testkit/tlstest"
	"github.com/podlogs/podlogs/internal/tlsfiles"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestValidate(t *testing.T) {
	f := func(c tlsfiles.Config, server bool, want string) {
		t.Helper()
		err := c.Validate(server)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%+v server=%v: got %v, want %q", c, server, err, want)
		}
	}
	f(tlsfiles.Config{}, true, "")
	f(tlsfiles.Config{CertFile: "c", KeyFile: "k"}, true, "")
	f(tlsfiles.Config{CertFile: "c", KeyFile: "k", CAFile: "ca"}, true, "")
	f(tlsfiles.Config{CAFile: "ca"}, false, "") // server-only TLS from the client's side
	f(tlsfiles.Config{CertFile: "c"}, false, "go together")
	f(tlsfiles.Config{KeyFile: "k"}, true, "go together")
	f(tlsfiles.Config{CAFile: "ca"}, true, "needs the server's own")
	f(tlsfiles.Config{CertFile: "c", KeyFile: "k", ServerName: "x"}, true, "clients only")
	f(tlsfiles.Config{CAFile: "ca", ReloadInterval: -time.Second}, false, "negative")
}

func TestLoadErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	pair := ca.Client(t, "fwd")
	other := ca.Client(t, "other")
	good := tlstest.NewSecret(t, t.TempDir(), pair, ca.CertPEM)
	mismatched := tlstest.NewSecret(t, t.TempDir(), &tlstest.Pair{CertPEM: pair.CertPEM, Key: other.Key}, ca.CertPEM)
	noCA := tlstest.NewSecret(t, t.TempDir(), pair)
	f := func(c tlsfiles.Config, want string) {
		t.Helper()
		_, err := tlsfiles.Load(c, discard)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%+v: got %v, want %q", c, err, want)
		}
	}
	f(tlsfiles.Config{CertFile: good.Cert(), KeyFile: good.Key(), CAFile: good.CA()}, "")
	f(tlsfiles.Config{CertFile: good.Cert() + ".missing", KeyFile: good.Key()}, "no such file")
	f(tlsfiles.Config{CertFile: mismatched.Cert(), KeyFile: mismatched.Key()}, "private key does not match")
	f(tlsfiles.Config{CAFile: noCA.CA()}, "no PEM certificate")
	f(tlsfiles.Config{CAFile: good.Key()}, "no PEM certificate")
}

// server is a gRPC server with health service over TCP on 127.0.0.1 whose
// refused handshakes are collected.
type server struct {
	addr string
	mu   sync.Mutex
	errs []error
}

func (s *server) lastErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return nil
	}
	return s.errs[len(s.errs)-1]
}

func startServer(t *testing.T, files *tlsfiles.Files) *server {
	t.Helper()
	s := &server{}
	g := grpc.NewServer(grpc.Creds(tlsfiles.ServerCredentials(files, func(peer net.Addr, err error) {
		if !strings.HasPrefix(peer.String(), "127.0.0.1:") {
			t.Errorf("refused peer %s, want 127.0.0.1", peer)
		}
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
	})))
	healthpb.RegisterHealthServer(g, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(ln) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return s
}

// call makes one RPC with the given client TLS settings (nil: plaintext).
func call(t *testing.T, addr string, c *tlsfiles.Config) error {
	t.Helper()
	opt := grpc.WithTransportCredentials(insecure.NewCredentials())
	if c != nil {
		files, err := tlsfiles.Load(*c, discard)
		if err != nil {
			t.Fatal(err)
		}
		opt = grpc.WithTransportCredentials(tlsfiles.ClientCredentials(files))
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestMutualTLS(t *testing.T) {
	ca, otherCA := tlstest.NewCA(t, "podlogs-ca"), tlstest.NewCA(t, "other-ca")
	srvSecret := tlstest.NewSecret(t, t.TempDir(), ca.Server(t), ca.CertPEM)
	files, err := tlsfiles.Load(tlsfiles.Config{CertFile: srvSecret.Cert(), KeyFile: srvSecret.Key(), CAFile: srvSecret.CA()}, discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, files)

	client := func(p *tlstest.Pair, caPEM []byte, serverName string) *tlsfiles.Config {
		s := tlstest.NewSecret(t, t.TempDir(), p, caPEM)
		c := &tlsfiles.Config{CAFile: s.CA(), ServerName: serverName}
		if p != nil {
			c.CertFile, c.KeyFile = s.Cert(), s.Key()
		}
		return c
	}
	for _, tc := range []struct {
		name       string
		client     *tlsfiles.Config
		serverHint string // in ServerHint of the server's error; "" = no refusal seen by the server
		clientHint string // in ClientHint of the client's error; "" = the call succeeds
	}{
		{"valid", client(ca.Client(t, "node-1"), ca.CertPEM, ""), "", ""},
		{"valid by name", client(ca.Client(t, "node-1"), ca.CertPEM, "localhost"), "", ""},
		{"no certificate", client(nil, ca.CertPEM, ""), "sent no client certificate", "requires a client certificate"},
		{"other CA", client(otherCA.Client(t, "node-1"), ca.CertPEM, ""), "not signed by this aggregator's --tls-ca", "client certificate"},
		{"expired", client(ca.ExpiredClient(t, "node-1"), ca.CertPEM, ""), "expired", "client certificate"},
		{"server certificate usage", client(ca.Server(t), ca.CertPEM, ""), "not for client authentication", "client certificate"},
		{"untrusted server", client(ca.Client(t, "node-1"), otherCA.CertPEM, ""), "rejected this aggregator's certificate", "not signed by --tls-ca"},
		{"wrong server name", client(ca.Client(t, "node-1"), ca.CertPEM, "aggregator.example"), "rejected this aggregator's certificate", "--tls-server-name"},
		{"plaintext client", nil, "does not speak TLS", "set --tls-ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clientCfg tlsfiles.Config
			if tc.client != nil {
				clientCfg = *tc.client
			}
			before := srv.lastErr()
			err := call(t, srv.addr, tc.client)
			if tc.clientHint == "" {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("call succeeded, want a refusal")
			}
			if h := tlsfiles.ClientHint(err, clientCfg); !strings.Contains(h, tc.clientHint) {
				t.Errorf("client error %v: hint %q, want %q", err, h, tc.clientHint)
			}
			// The server's callback runs in its own goroutine; give it a moment.
			deadline := time.Now().Add(5 * time.Second)
			for srv.lastErr() == before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			serr := srv.lastErr()
			if serr == before {
				t.Fatal("server did not report the refused handshake")
			}
			if h := tlsfiles.ServerHint(serr); !strings.Contains(h, tc.serverHint) {
				t.Errorf("server error %v: hint %q, want %q", serr, h, tc.serverHint)
			}
		})
	}
}

// TestRotation swaps Secret directories the way the kubelet does and checks
// that both sides use the new files without being rebuilt.
func TestRotation(t *testing.T) {
	ca, newCA := tlstest.NewCA(t, "podlogs-ca"), tlstest.NewCA(t, "podlogs-ca-2")
	first := ca.Server(t)
	srvSecret := tlstest.NewSecret(t, t.TempDir(), first, ca.CertPEM)
	const interval = 50 * time.Millisecond
	files, err := tlsfiles.Load(tlsfiles.Config{CertFile: srvSecret.Cert(), KeyFile: srvSecret.Key(), CAFile: srvSecret.CA(), ReloadInterval: interval}, discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, files)
	cliSecret := tlstest.NewSecret(t, t.TempDir(), newCA.Client(t, "node-1"), ca.CertPEM)
	cliFiles, err := tlsfiles.Load(tlsfiles.Config{CertFile: cliSecret.Cert(), KeyFile: cliSecret.Key(), CAFile: cliSecret.CA(), ReloadInterval: interval}, discard)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+srv.addr, grpc.WithTransportCredentials(tlsfiles.ClientCredentials(cliFiles)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(interval)
		}
	}
	servedSerial := func() string {
		c, err := tls.Dial("tcp", srv.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }})
		if err != nil {
			return ""
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}

	// The client's certificate comes from a CA the server does not trust yet.
	if err := check(); err == nil {
		t.Fatal("client of an untrusted CA was accepted")
	}
	// The server's CA bundle is rotated to trust both CAs: the same client,
	// same ClientConn, gets in on a later attempt.
	srvSecret.Write(t, first, ca.CertPEM, newCA.CertPEM)
	eventually("server trusts the added CA", func() bool { return check() == nil })

	// The server's own certificate is renewed.
	if got := servedSerial(); got != first.Serial.String() {
		t.Fatalf("served serial %s, want %s", got, first.Serial)
	}
	second := ca.Server(t)
	srvSecret.Write(t, second, ca.CertPEM, newCA.CertPEM)
	eventually("server serves the renewed certificate", func() bool { return servedSerial() == second.Serial.String() })

	// A half-written Secret (key of another certificate) keeps the previous
	// set in use instead of breaking every handshake.
	srvSecret.Write(t, &tlstest.Pair{CertPEM: ca.Server(t).CertPEM, Key: second.Key}, ca.CertPEM)
	time.Sleep(3 * interval)
	if got := servedSerial(); got != second.Serial.String() {
		t.Fatalf("after a bad rotation served serial %s, want the previous %s", got, second.Serial)
	}

	// The client's certificate is rotated: the server drops the second CA,
	// and the client moves to a certificate of the first.
	srvSecret.Write(t, second, ca.CertPEM)
	cliSecret.Write(t, ca.Client(t, "node-1"), ca.CertPEM)
	conn.Connect()
	eventually("client presents its rotated certificate", func() bool {
		// Force a new handshake: existing connections keep their session.
		c2, err := grpc.NewClient("passthrough:///"+srv.addr, grpc.WithTransportCredentials(tlsfiles.ClientCredentials(cliFiles)))
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(c2).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil
	})
	if h := tlsfiles.ClientHint(errors.New("rpc error: code = Unavailable desc = connection error"), tlsfiles.Config{CAFile: "ca.crt"}); h != "" {
		t.Errorf("non-TLS error got hint %q", h)
	}
}
