// Command forwarder runs on every node: it tails the pod log files under
// --pods-root and streams their records to the aggregators.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/forwarder/internal/finder"
	"github.com/podlogs/podlogs/forwarder/internal/reader"
	"github.com/podlogs/podlogs/forwarder/internal/sender"
	"github.com/podlogs/podlogs/internal/adminhttp"
	"github.com/podlogs/podlogs/internal/envflag"
	"github.com/podlogs/podlogs/internal/logging"
	"github.com/podlogs/podlogs/internal/rungroup"
	"github.com/podlogs/podlogs/internal/tlsfiles"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
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

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	store, err := checkpoint.Open(filepath.Join(cfg.DataDir, "checkpoints.json"))
	if err != nil {
		return err
	}
	filter, err := finder.NewFilter(cfg.Include, cfg.Exclude)
	if err != nil {
		return err
	}
	conn, err := sender.Dial(cfg.Aggregator, cfg.TLS, cfg.MaxMessageBytes, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	snd := sender.New(cfg.senderConfig(), conn, func(b *podlogsv1.Batch) {
		for _, r := range b.GetRecords() {
			src := b.GetSources()[r.GetSourceIndex()]
			id := src.GetIdentity()
			store.Advance(checkpoint.Key{Device: id.GetDevice(), Inode: id.GetInode(), Fingerprint: id.GetFingerprint()}, src.GetPath(), r.GetNextOffset())
		}
	}, reg, log)
	rd := reader.New(cfg.readerConfig(filter, store.Fresh()), store, snd, reg, log)
	admin, err := adminhttp.New(cfg.AdminAddr, reg, func() error {
		if !snd.Connected() {
			return errors.New("no stream to an aggregator")
		}
		return nil
	}, log)
	if err != nil {
		return err
	}
	if cfg.Pprof {
		admin.HandlePprof()
	}
	log.Info("forwarder starting", "version", version, "node", cfg.NodeName, "pods_root", cfg.PodsRoot,
		"aggregator", cfg.Aggregator, "tls", tlsMode(cfg.TLS), "admin", admin.Addr(), "checkpointed_files", store.Len(), "first_start", store.Fresh())

	// Interrupted in this order when any returns: stop reading, let the
	// batches in flight be acknowledged, close the stream, write the
	// checkpoints one last time.
	var g rungroup.Group
	g.Until(ctx)
	g.Add(rd.Run)
	senderCtx, stopSender := context.WithCancel(context.Background())
	g.AddStop(func() error { return snd.Run(senderCtx) }, func() { snd.Drain(cfg.ShutdownGrace); stopSender() })
	g.Add(func(ctx context.Context) error { return store.Run(ctx, cfg.CheckpointInterval, log) })
	g.Add(admin.Run)
	err = g.Run()
	log.Info("forwarder stopped")
	return err
}

// senderConfig is the stream's: backoff between reconnects, the window.
func (c config) senderConfig() sender.Config {
	return sender.Config{
		NodeName:         c.NodeName,
		Version:          version,
		MaxInflightBytes: c.MaxInflightBytes,
		MaxMessageBytes:  c.MaxMessageBytes,
		ErrorHint:        func(err error) string { return tlsfiles.ClientHint(err, c.TLS) },
	}
}

// readerConfig is the read loop's; firstStart is the node's very first
// (no checkpoint file yet).
func (c config) readerConfig(filter *finder.Filter, firstStart bool) reader.Config {
	return reader.Config{
		PodsRoot:       c.PodsRoot,
		Filter:         filter,
		SkipExisting:   firstStart && c.InitialRead == "end",
		NoWatch:        !c.Watch,
		ScanInterval:   c.ScanInterval,
		PollInterval:   c.PollInterval,
		ResyncInterval: c.ResyncInterval,
		BatchBytes:     c.BatchBytes,
		BatchRecords:   c.BatchRecords,
		BatchLinger:    c.BatchLinger,
		// A runtime writes a line at a time: reading a while after a
		// write event takes the node's lines of that while in one turn and
		// one batch, so the cost follows lines, not writes. The batch
		// linger is how long a line may wait to be batched anyway.
		ReadDelay:      c.BatchLinger,
		MaxRecordBytes: c.MaxRecordBytes,
	}
}

// tlsMode names the transport security in the start-up log.
func tlsMode(c tlsfiles.Config) string {
	switch {
	case c.CertFile != "":
		return "mutual"
	case c.Enabled():
		return "server-only"
	}
	return "off"
}

type config struct {
	TLS                tlsfiles.Config
	PodsRoot           string
	Include, Exclude   []string
	InitialRead        string
	Watch              bool
	DataDir            string
	Aggregator         string
	NodeName           string
	AdminAddr          string
	MaxInflightBytes   int
	MaxRecordBytes     int
	MaxMessageBytes    int
	BatchBytes         int
	BatchRecords       int
	BatchLinger        time.Duration
	ScanInterval       time.Duration
	PollInterval       time.Duration
	ResyncInterval     time.Duration
	CheckpointInterval time.Duration
	ShutdownGrace      time.Duration
	LogLevel           string
	LogFormat          string
	Pprof              bool
	ShowVersion        bool
}

func parseConfig(args []string) (config, error) {
	var c config
	hostname, _ := os.Hostname()
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	fs.StringVar(&c.PodsRoot, "pods-root", "/var/log/pods", "directory kubelet writes pod log files under")
	fs.Func("include", "follow only containers matching namespace[/pod[/container]] globs, comma-separated (repeatable; default: all)", func(v string) error {
		c.Include = append(c.Include, strings.Split(v, ",")...)
		return nil
	})
	fs.Func("exclude", "skip containers matching namespace[/pod[/container]] globs, comma-separated (repeatable), e.g. kube-system,*/*/istio-proxy", func(v string) error {
		c.Exclude = append(c.Exclude, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&c.InitialRead, "initial-read", "start", "on the node's very first start (no checkpoint file), read existing files from the \"start\" or skip to their \"end\"; files that appear later are always read from their start")
	fs.BoolVar(&c.Watch, "watch", true, "use filesystem notifications (inotify); polling remains the safety net")
	fs.StringVar(&c.DataDir, "data-dir", "/var/lib/podlogs", "directory for the checkpoint file (a hostPath that outlives the pod)")
	fs.StringVar(&c.Aggregator, "aggregator", "dns:///podlogs-aggregator:7370", "gRPC target of the aggregators; dns:/// balances over every address of a headless Service")
	fs.StringVar(&c.TLS.CertFile, "tls-cert", "", "client certificate (PEM) presented to the aggregators for mutual TLS; re-read when the file changes")
	fs.StringVar(&c.TLS.KeyFile, "tls-key", "", "key of --tls-cert (PEM)")
	fs.StringVar(&c.TLS.CAFile, "tls-ca", "", "CA certificates (PEM) that sign the aggregators' certificates; any --tls-* flag turns TLS on (empty CA: the system roots)")
	fs.StringVar(&c.TLS.ServerName, "tls-server-name", "", "name to verify the aggregators' certificate for (default: the host of --aggregator)")
	fs.DurationVar(&c.TLS.ReloadInterval, "tls-reload-interval", 5*time.Second, "how often, at most, the TLS files are read again to pick up a rotated Secret")
	fs.StringVar(&c.NodeName, "node-name", hostname, "Kubernetes node name, sent as kubernetes.host (set from spec.nodeName)")
	fs.StringVar(&c.AdminAddr, "admin-addr", ":9371", "address for /metrics, /healthz and /readyz")
	fs.IntVar(&c.MaxInflightBytes, "max-inflight-bytes", 16<<20, "memory held by sent but unacknowledged batches (records and their overhead); reading pauses when full")
	fs.IntVar(&c.MaxRecordBytes, "max-record-bytes", 1<<20, "longest record (after joining partial lines); longer ones are cut and flagged")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", 8<<20, "largest gRPC message sent; must not exceed the aggregator's --max-message-bytes")
	fs.IntVar(&c.BatchBytes, "batch-bytes", 1<<20, "send a batch when it holds this many record bytes")
	fs.IntVar(&c.BatchRecords, "batch-records", 2000, "send a batch when it holds this many records")
	fs.DurationVar(&c.BatchLinger, "batch-linger", 200*time.Millisecond, "send a batch at the latest this long after its first record; with notifications, a written file is read this long after the write, together with the others written meanwhile")
	fs.DurationVar(&c.ScanInterval, "scan-interval", time.Second, "without filesystem notifications: how often to look for new, rotated and deleted log files")
	fs.DurationVar(&c.PollInterval, "poll-interval", time.Second, "without filesystem notifications: how often to read every file")
	fs.DurationVar(&c.ResyncInterval, "resync-interval", 10*time.Second, "with filesystem notifications (which report new files and writes at once): how often to rescan the tree and read every file all the same, in case one was missed")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", time.Second, "how often to write acknowledged offsets to disk")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 20*time.Second, "on SIGTERM, how long to wait for in-flight batches to be acknowledged")
	fs.StringVar(&c.LogLevel, "log.level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log.format", "json", "text or json")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go's profiles under /debug/pprof/ on --admin-addr (for benchmarks and debugging)")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	envflag.Usage(fs)
	if err := envflag.Parse(fs, args, nil); err != nil {
		return c, err
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	if c.PodsRoot == "" {
		errs = append(errs, errors.New("--pods-root is empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is empty"))
	}
	if c.InitialRead != "start" && c.InitialRead != "end" {
		errs = append(errs, fmt.Errorf("--initial-read must be start or end, got %q", c.InitialRead))
	}
	if _, err := finder.NewFilter(c.Include, c.Exclude); err != nil {
		errs = append(errs, err)
	}
	if c.Aggregator == "" {
		errs = append(errs, errors.New("--aggregator is empty"))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("--node-name is empty and the hostname is unknown"))
	}
	if err := c.TLS.Validate(false); err != nil {
		errs = append(errs, err)
	}
	if c.TLS.ServerName != "" && !c.TLS.Enabled() {
		errs = append(errs, errors.New("--tls-server-name needs TLS: set --tls-ca (and --tls-cert, --tls-key for mutual TLS)"))
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"max-inflight-bytes", c.MaxInflightBytes}, {"max-record-bytes", c.MaxRecordBytes}, {"batch-bytes", c.BatchBytes}, {"batch-records", c.BatchRecords}} {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %d", p.name, p.v))
		}
	}
	if c.BatchBytes+c.MaxRecordBytes+64<<10 > c.MaxMessageBytes {
		errs = append(errs, fmt.Errorf("--batch-bytes (%d) plus --max-record-bytes (%d) must stay below --max-message-bytes (%d) with room for headers", c.BatchBytes, c.MaxRecordBytes, c.MaxMessageBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"batch-linger", c.BatchLinger}, {"scan-interval", c.ScanInterval}, {"poll-interval", c.PollInterval}, {"resync-interval", c.ResyncInterval}, {"checkpoint-interval", c.CheckpointInterval}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %s", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}
