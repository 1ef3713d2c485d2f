// Command aggregator takes record streams from forwarders, turns records into
// documents, buffers them in NATS JetStream and bulk-writes them to OpenSearch.
// `aggregator report` sums the replicas' per-pod counts (/debug/accounting)
// and sets them beside what OpenSearch holds (report.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/aggregator/internal/ingest"
	"github.com/podlogs/podlogs/aggregator/internal/sink"
	"github.com/podlogs/podlogs/internal/adminhttp"
	"github.com/podlogs/podlogs/internal/logging"
	"github.com/podlogs/podlogs/internal/tlsfiles"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "report" {
		return runReport(context.Background(), args[1:], os.Stdout)
	}
	cfg, err := parseConfig(args)
	if err != nil {
		return err
	}
	if cfg.ShowVersion {
		fmt.Println(version)
		return nil
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The buffer: an external NATS cluster, or an embedded server.
	var embedded *natsserver.Server
	natsOpts := []nats.Option{
		nats.Name("podlogs-aggregator " + cfg.ID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from NATS; publishing waits until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	}
	natsURL := cfg.NATSURL
	if natsURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		embedded, err = buffer.StartEmbedded(filepath.Join(cfg.DataDir, "jetstream"), cfg.NATSEmbeddedListen, log)
		if err != nil {
			return err
		}
		defer embedded.Shutdown()
		natsOpts = append(natsOpts, nats.InProcessServer(embedded))
	}
	nc, err := nats.Connect(natsURL, natsOpts...)
	if err != nil {
		return fmt.Errorf("connect to NATS %s: %w", natsURL, err)
	}
	defer nc.Close()
	// The server refuses a message over its max_payload, and a message can
	// pass --nats-message-bytes by its last document (whose size is known
	// only once written): keep a margin of half. A pull must take the largest.
	if maxPayload := nc.MaxPayload(); 2*int64(cfg.MessageBytes) > maxPayload {
		return fmt.Errorf("--nats-message-bytes %d is more than half the NATS server's max_payload %d: lower it, or raise max_payload", cfg.MessageBytes, maxPayload)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.PublishMaxPending),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
	)
	if err != nil {
		return fmt.Errorf("JetStream context: %w", err)
	}
	streamCfg := buffer.StreamConfig{
		Name: cfg.StreamName, SubjectPrefix: cfg.SubjectPrefix, MaxBytes: cfg.StreamMaxBytes,
		MaxAge: cfg.StreamMaxAge, Duplicates: cfg.DuplicateWindow, Replicas: cfg.StreamReplicas,
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	if _, err := buffer.EnsureStream(setupCtx, js, streamCfg); err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(setupCtx, cfg.StreamName,
		sink.ConsumerConfig(cfg.ConsumerName, cfg.SubjectPrefix+".>", cfg.MaxAckPending, cfg.AckWait))
	if err != nil {
		return fmt.Errorf("create or update consumer %s: %w", cfg.ConsumerName, err)
	}
	cancelSetup()

	osClient, err := sink.NewClient(ctx, cfg.openSearchClient())
	if err != nil {
		return err
	}
	// Wrong credentials or an untrusted certificate will not heal: stop now
	// with the reason. An unreachable OpenSearch may come back: documents
	// wait in the buffer.
	probeCtx, cancelProbe := context.WithTimeout(ctx, 15*time.Second)
	osVersion, err := sink.Probe(probeCtx, osClient)
	cancelProbe()
	switch {
	case errors.Is(err, sink.ErrAccessDenied) || errors.Is(err, sink.ErrTLS):
		return fmt.Errorf("OpenSearch %s: %w", cfg.OpenSearchURL, err)
	case err != nil:
		log.Warn("OpenSearch does not answer yet; documents wait in the buffer until it does", "url", cfg.OpenSearchURL, "err", err)
	default:
		log.Info("OpenSearch answered", "url", cfg.OpenSearchURL, "version", osVersion, "auth", cfg.openSearchAuth())
		if cfg.ismPolicy().Enabled() {
			ismCtx, cancelISM := context.WithTimeout(ctx, 15*time.Second)
			err := sink.CheckISM(ismCtx, osClient)
			cancelISM()
			if errors.Is(err, sink.ErrNoISM) {
				return fmt.Errorf("--ism-* asks for a lifecycle policy: %w; install the plugin (opensearch-index-management) or drop the flags", err)
			}
		}
	}
	// Per namespace and pod: what this replica received, published and
	// wrote (/debug/accounting, `aggregator report`).
	ledger := accounting.New(accounting.Config{Replica: cfg.ID, Retention: cfg.AcctRetention, MaxPods: cfg.AcctMaxPods}, reg)
	snk := sink.New(sink.Config{
		Index: cfg.Index, Keys: templateKeys(cfg.EnrichKeyStyle), DeadLetter: cfg.DeadLetterIndex, Workers: cfg.BulkWorkers, BulkDocs: cfg.BulkDocs,
		BulkBytes: cfg.BulkBytes, PullBytes: max(cfg.BulkBytes, 2*int(nc.MaxPayload())), FlushInterval: cfg.FlushInterval, BackoffMin: 250 * time.Millisecond, BackoffMax: 30 * time.Second,
		MaxDeliveries: cfg.MaxDeliveries, Accounting: ledger, Mode: cfg.indexMode(), ISM: cfg.ismPolicy(),
	}, osClient, cons, reg, log)
	monitor := buffer.NewMonitor(js, cfg.StreamName, cfg.ConsumerName, cfg.NATSPollInterval, reg, log)

	// The shared metadata cache: one pod watch per replica, whatever the
	// number of streams.
	metaCache, err := newMetaCache(cfg, reg, log)
	if err != nil {
		return err
	}
	var enricher ingest.Enricher
	cacheCtx, stopCache := context.WithCancel(context.Background())
	defer stopCache()
	var cacheDone sync.WaitGroup
	if metaCache != nil {
		enricher = metaCache
		cacheDone.Go(func() { metaCache.Run(cacheCtx) })
		syncCtx, cancelSync := context.WithTimeout(ctx, cfg.CacheSyncTimeout)
		begin := time.Now()
		if metaCache.WaitForSync(syncCtx) {
			log.Info("pod metadata cache synced", "took", time.Since(begin).Round(time.Millisecond), "cache", metaCache.String())
		} else if ctx.Err() == nil {
			log.Warn("pod metadata cache not synced in time; taking streams anyway (lookups wait and GET until it is)",
				"timeout", cfg.CacheSyncTimeout)
		}
		cancelSync()
	}

	srv := ingest.New(ingest.Config{
		AggregatorID: cfg.ID, MaxMessageBytes: cfg.MaxMessageBytes, ReadAheadBatches: 4, SubjectPrefix: cfg.SubjectPrefix, MessageBytes: cfg.MessageBytes,
		DataFields: cfg.dataFields(), MaxStreamAge: cfg.MaxConnectionAge, Accounting: ledger,
	}, buffer.NewPublisher(js, reg, log), enricher, reg, log)
	tlsOpt, err := serverTLS(cfg.TLS, reg, log)
	if err != nil {
		return err
	}
	grpcServer := grpc.NewServer(append(srv.ServerOptions(), tlsOpt,
		// Streams end at --max-connection-age (ingest.Config.MaxStreamAge),
		// gracefully, and the forwarder's balancer picks a replica for the
		// next one. The connection is aged too: its end makes the client
		// resolve the Service again, which is how it learns of new
		// replicas. Its grace outlasts a stream opened just before the
		// GOAWAY (up to 1.1 × the age), so gRPC never has to cut one.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge: cfg.MaxConnectionAge, MaxConnectionAgeGrace: 2*cfg.MaxConnectionAge + cfg.ShutdownGrace,
			Time: 30 * time.Second, Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	podlogsv1.RegisterIngestServiceServer(grpcServer, srv)
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen for forwarders on %s: %w", cfg.ListenAddr, err)
	}
	admin, err := adminhttp.New(cfg.AdminAddr, reg, func() error {
		if !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		return nil
	}, log)
	if err != nil {
		return err
	}
	if cfg.Pprof {
		admin.HandlePprof()
	}
	admin.Handle("GET "+accounting.HandlerPath, ledger.Handler())
	log.Info("aggregator starting", "version", version, "id", cfg.ID, "listen", ln.Addr().String(), "tls", tlsMode(cfg.TLS), "admin", admin.Addr(),
		"opensearch", cfg.OpenSearchURL, "index", cfg.Index, "nats", natsURLOrEmbedded(natsURL))

	// Stop order: inputs first (gRPC), then the writer, then NATS.
	sinkCtx, stopSink := context.WithCancel(context.Background())
	defer stopSink()
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goRun := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- f() }()
	}
	goRun(func() error { return admin.Run(adminCtx) })
	goRun(func() error { return monitor.Run(adminCtx) })
	if cfg.BulkWorkers > 0 {
		goRun(func() error { return snk.Run(sinkCtx) })
	} else {
		log.Info("ingest-only replica: no bulk writer (--bulk-workers=0)")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- grpcServer.Serve(ln) }()

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("gRPC server: %w", err)
	}
	log.Info("shutting down: draining forwarder streams", "grace", cfg.ShutdownGrace)
	srv.Drain()
	stopped := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.ShutdownGrace):
		log.Warn("streams did not end within the grace period; closing them")
		grpcServer.Stop()
		<-stopped
	}
	srv.Wait()
	stopCache() // no stream reads it any more
	cacheDone.Wait()
	stopSink()
	stopAdmin()
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	if err := nc.Drain(); err != nil {
		log.Warn("NATS drain failed", "err", err)
	}
	for !nc.IsClosed() {
		time.Sleep(10 * time.Millisecond)
	}
	if embedded != nil {
		embedded.Shutdown()
		embedded.WaitForShutdown()
	}
	log.Info("aggregator stopped")
	return runErr
}

// serverTLS returns the transport credentials for the forwarders' port:
// plaintext without --tls-cert, TLS with it, mutual TLS with --tls-ca.
// Refused handshakes are logged with the peer and what to fix, and counted.
func serverTLS(c tlsfiles.Config, reg prometheus.Registerer, log *slog.Logger) (grpc.ServerOption, error) {
	if !c.Enabled() {
		return grpc.Creds(insecure.NewCredentials()), nil
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
	var creds credentials.TransportCredentials = tlsfiles.ServerCredentials(files, func(peer net.Addr, err error) {
		refused.Inc()
		// One line per attempt: a refused forwarder retries with backoff
		// (at most every 10 s), which bounds this.
		log.Warn("refused a connection: TLS handshake failed", "peer", peer.String(), "err", err, "fix", tlsfiles.ServerHint(err))
	})
	return grpc.Creds(creds), nil
}

func tlsMode(c tlsfiles.Config) string {
	switch {
	case c.CAFile != "":
		return "mutual"
	case c.Enabled():
		return "server-only"
	}
	return "off"
}

func natsURLOrEmbedded(u string) string {
	if u == "" {
		return "embedded"
	}
	return u
}

// templateKeys maps label and annotation keys the way enrichment writes
// them: as written (flat_object), or with dots replaced (a keyword field each).
func templateKeys(keyStyle string) sink.KeyMapping {
	if k, _ := enrich.ParseKeyStyle(keyStyle); k == enrich.KeysUnderscore {
		return sink.KeywordFields
	}
	return sink.FlatObject
}
