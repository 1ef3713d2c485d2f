package ingest

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/podlogs/podlogs/internal/tlsfiles"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// Endpoint is the server on its port: the forwarders' side of the
// aggregator.
type Endpoint struct {
	srv   *Server
	gs    *grpc.Server
	ln    net.Listener
	grace time.Duration
	log   *slog.Logger
}

// Listen opens addr for the forwarders' streams, with TLS as tls says
// (plaintext when it is not enabled, mutual TLS with a CA). On Stop,
// streams get grace to finish the batch they publish.
func (s *Server) Listen(addr string, tls tlsfiles.Config, grace time.Duration, reg prometheus.Registerer) (*Endpoint, error) {
	creds, err := serverCredentials(tls, reg, s.log)
	if err != nil {
		return nil, err
	}
	age := s.cfg.MaxStreamAge
	gs := grpc.NewServer(append(s.ServerOptions(),
		grpc.Creds(creds),
		// Streams end at MaxStreamAge, gracefully, and the forwarder's
		// balancer picks a replica for the next one. The connection is aged
		// too: its end makes the client resolve the Service again, which is
		// how it learns of new replicas. Its grace outlasts a stream opened
		// just before the GOAWAY (up to 1.1 × the age), so gRPC never has
		// to cut one.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge: age, MaxConnectionAgeGrace: 2*age + grace,
			Time: 30 * time.Second, Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	podlogsv1.RegisterIngestServiceServer(gs, s)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for forwarders on %s: %w", addr, err)
	}
	return &Endpoint{srv: s, gs: gs, ln: ln, grace: grace, log: s.log}, nil
}

// Addr is the address the endpoint listens on.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Serve takes streams until Stop.
func (e *Endpoint) Serve() error {
	if err := e.gs.Serve(e.ln); err != nil {
		return fmt.Errorf("gRPC server: %w", err)
	}
	return nil
}

// Stop drains the streams: each finishes the batch it publishes, then ends
// so its forwarder resends the rest elsewhere; streams still open after the
// grace are cut. It returns once every stream's goroutines are done.
func (e *Endpoint) Stop() {
	e.log.Info("shutting down: draining forwarder streams", "grace", e.grace)
	e.srv.Drain()
	stopped := make(chan struct{})
	go func() { e.gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(e.grace):
		e.log.Warn("streams did not end within the grace period; closing them")
		e.gs.Stop()
		<-stopped
	}
	e.srv.Wait()
}

// serverCredentials are the transport credentials for the forwarders'
// port: plaintext without a certificate, TLS with one, mutual TLS with a
// CA. Refused handshakes are logged with the peer and what to fix, and
// counted.
func serverCredentials(c tlsfiles.Config, reg prometheus.Registerer, log *slog.Logger) (credentials.TransportCredentials, error) {
	if !c.Enabled() {
		return insecure.NewCredentials(), nil
	}
	files, err := tlsfiles.Load(c, log)
	if err != nil {
		return nil, err
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podlogs_aggregator_tls_handshake_failures_total",
		Help: "Connections refused because their TLS handshake failed (no, expired or foreign client certificate; plaintext client).",
	})
	reg.MustRegister(refused)
	return tlsfiles.ServerCredentials(files, func(peer net.Addr, err error) {
		refused.Inc()
		// One line per attempt: a refused forwarder retries with backoff
		// (at most every 10 s), which bounds this.
		log.Warn("refused a connection: TLS handshake failed", "peer", peer.String(), "err", err, "fix", tlsfiles.ServerHint(err))
	}), nil
}
