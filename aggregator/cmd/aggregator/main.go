// Command aggregator takes record streams from forwarders, turns records into
// documents, buffers them in NATS JetStream and bulk-writes them to OpenSearch.
// `aggregator report` sums the replicas' per-pod counts (/debug/accounting)
// and sets them beside what OpenSearch holds (report.go).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/aggregator/internal/ingest"
	"github.com/podlogs/podlogs/aggregator/internal/sink"
	"github.com/podlogs/podlogs/internal/adminhttp"
	"github.com/podlogs/podlogs/internal/logging"
	"github.com/podlogs/podlogs/internal/rungroup"
	"github.com/podlogs/podlogs/internal/tlsfiles"
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
	// Signals are caught from here on; the run group ends on the first.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	buf, err := buffer.Open(ctx, cfg.bufferConfig(), log)
	if err != nil {
		return cfg.explainBuffer(err)
	}
	defer buf.Close() // last: the writers' acks and ingest's publishes go out first
	osClient, err := sink.NewClient(ctx, cfg.openSearchClient())
	if err != nil {
		return err
	}
	if err := sink.Preflight(ctx, osClient, cfg.ismPolicy(), cfg.BulkBytes, log.With("url", cfg.OpenSearchURL)); err != nil {
		return cfg.explainOpenSearch(err)
	}
	ledger := accounting.New(cfg.accountingConfig(), reg)
	snk := sink.New(cfg.sinkConfig(ledger, buf.Conn.MaxPayload()), osClient, buf.Consumer, reg, log)
	monitor := buffer.NewMonitor(buf.JS, cfg.StreamName, cfg.ConsumerName, cfg.NATSPollInterval, reg, log)
	metaCache, err := newMetaCache(cfg, reg, log)
	if err != nil {
		return err
	}
	var enricher ingest.Enricher
	if metaCache != nil {
		enricher = metaCache
	}
	srv := ingest.New(cfg.ingestConfig(ledger), buffer.NewPublisher(buf.JS, reg, log), enricher, reg, log)
	endpoint, err := srv.Listen(cfg.ListenAddr, cfg.TLS, cfg.ShutdownGrace, reg)
	if err != nil {
		return err
	}
	admin, err := adminhttp.New(cfg.AdminAddr, reg, buf.Healthy, log)
	if err != nil {
		return err
	}
	if cfg.Pprof {
		admin.HandlePprof()
	}
	admin.Handle("GET "+accounting.HandlerPath, ledger.Handler())
	log.Info("aggregator starting", "version", version, "id", cfg.ID, "listen", endpoint.Addr().String(), "tls", tlsMode(cfg.TLS), "admin", admin.Addr(),
		"opensearch", cfg.OpenSearchURL, "index", cfg.Index, "nats", natsURLOrEmbedded(cfg.NATSURL))

	// Stopped in this order when one returns: inputs before outputs.
	var g rungroup.Group
	g.Until(ctx)
	g.AddStop(func() error {
		if metaCache != nil {
			metaCache.AwaitSync(ctx, cfg.CacheSyncTimeout)
		}
		return endpoint.Serve()
	}, endpoint.Stop)
	if metaCache != nil {
		g.Add(metaCache.Run)
	}
	if cfg.BulkWorkers > 0 {
		g.Add(snk.Run)
	} else {
		log.Info("ingest-only replica: no bulk writer (--bulk-workers=0)")
	}
	g.Add(monitor.Run)
	g.Add(admin.Run)
	err = g.Run()
	log.Info("aggregator stopped")
	return err
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
