package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/aggregator/internal/ingest"
	"github.com/podlogs/podlogs/aggregator/internal/sink"
	"github.com/podlogs/podlogs/internal/envflag"
	"github.com/podlogs/podlogs/internal/tlsfiles"
)

type config struct {
	ID                 string
	ListenAddr         string
	AdminAddr          string
	DataDir            string
	MaxMessageBytes    int
	MaxConnectionAge   time.Duration
	TLS                tlsfiles.Config
	ShutdownGrace      time.Duration
	NATSURL            string
	NATSEmbeddedListen string
	StreamName         string
	SubjectPrefix      string
	StreamMaxBytes     int64
	StreamMaxAge       time.Duration
	StreamReplicas     int
	DuplicateWindow    time.Duration
	PublishMaxPending  int
	MessageBytes       int
	MaxDocumentBytes   int
	ConsumerName       string
	MaxAckPending      int
	AckWait            time.Duration
	OpenSearchURL      string
	OpenSearchUser     string
	OpenSearchPassword string
	OpenSearchPassFile string
	OpenSearchCA       string
	OpenSearchCert     string
	OpenSearchKey      string
	OpenSearchInsecure bool
	AWSRegion          string
	AWSAuth            bool
	AWSService         string
	MaxDeliveries      int
	NATSPollInterval   time.Duration
	Index              string
	IndexMode          string
	ISMDeleteAfter     int
	ISMRolloverSize    string
	ISMRolloverAge     string
	DeadLetterIndex    string
	BulkWorkers        int
	BulkDocs           int
	BulkBytes          int
	FlushInterval      time.Duration
	Enrichment         string
	Kubeconfig         string
	EnrichLabels       bool
	EnrichAnnotations  bool
	EnrichNSLabels     bool
	EnrichKeyStyle     string
	EnrichMaxKeys      int
	TombstoneTTL       time.Duration
	MissWait           time.Duration
	GetQPS             float64
	GetBurst           int
	ResyncPeriod       time.Duration
	CacheSyncTimeout   time.Duration
	ParseJSON          bool
	MaxDataFields      int
	AcctRetention      time.Duration
	AcctMaxPods        int
	LogLevel           string
	LogFormat          string
	Pprof              bool
	ShowVersion        bool
}

func parseConfig(args []string) (config, error) {
	var c config
	hostname, _ := os.Hostname()
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	fs.StringVar(&c.ID, "id", hostname, "name of this replica in logs and in the forwarders' logs (the pod name)")
	fs.StringVar(&c.ListenAddr, "listen", ":7370", "gRPC address forwarders stream to")
	fs.StringVar(&c.AdminAddr, "admin-addr", ":9370", "address for /metrics, /healthz and /readyz")
	fs.StringVar(&c.DataDir, "data-dir", "/var/lib/podlogs", "directory for the embedded JetStream store")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", 16<<20, "largest gRPC message accepted from a forwarder")
	fs.DurationVar(&c.MaxConnectionAge, "max-connection-age", 5*time.Minute, "forwarders reconnect after this long, so new replicas get streams")
	fs.StringVar(&c.TLS.CertFile, "tls-cert", "", "server certificate (PEM) for the forwarders' streams; set, the port speaks TLS only; re-read when the file changes")
	fs.StringVar(&c.TLS.KeyFile, "tls-key", "", "key of --tls-cert (PEM)")
	fs.StringVar(&c.TLS.CAFile, "tls-ca", "", "CA certificates (PEM) that sign the forwarders' client certificates; set, every forwarder must present one (mutual TLS)")
	fs.DurationVar(&c.TLS.ReloadInterval, "tls-reload-interval", 5*time.Second, "how often, at most, the TLS files are read again to pick up a rotated Secret")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 20*time.Second, "on SIGTERM, how long in-flight batches may take before streams are cut")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS cluster URL(s); empty starts an embedded JetStream server")
	fs.StringVar(&c.NATSEmbeddedListen, "nats-embedded-listen", "", "host:port the embedded NATS server also listens on (empty: in-process only)")
	fs.StringVar(&c.StreamName, "nats-stream", "PODLOGS", "JetStream stream name")
	fs.StringVar(&c.SubjectPrefix, "nats-subject-prefix", "podlogs.docs", "subjects are <prefix>.<namespace>")
	fs.Int64Var(&c.StreamMaxBytes, "nats-stream-max-bytes", 1<<30, "stream size limit; when full, publishes are refused and forwarders slow down")
	fs.DurationVar(&c.StreamMaxAge, "nats-stream-max-age", 24*time.Hour, "oldest document the stream keeps")
	fs.IntVar(&c.StreamReplicas, "nats-stream-replicas", 1, "stream replicas (3 in a NATS cluster)")
	fs.DurationVar(&c.DuplicateWindow, "nats-duplicate-window", 2*time.Minute, "JetStream drops a resent document within this window")
	fs.IntVar(&c.PublishMaxPending, "nats-publish-max-pending", 4096, "asynchronous publishes awaiting an ack, at most")
	fs.StringVar(&c.ConsumerName, "nats-consumer", "opensearch", "durable consumer shared by the bulk writers of every replica")
	fs.IntVar(&c.MessageBytes, "nats-message-bytes", ingest.DefaultMessageBytes, "largest JetStream message: a forwarder batch's documents of one namespace go in one message, or in several of this size (a larger document goes alone)")
	fs.IntVar(&c.MaxDocumentBytes, "max-document-bytes", ingest.DefaultMaxDocumentBytes, "largest document: a longer one keeps the first bytes of its log (podlogs.truncated, podlogs.original_bytes); the NATS server's max_payload must take it (the embedded server is set to)")
	fs.IntVar(&c.MaxAckPending, "nats-max-ack-pending", 20000, "messages delivered to writers and not yet acked, at most")
	fs.DurationVar(&c.AckWait, "nats-ack-wait", 2*time.Minute, "redeliver a message not acked within this time; must exceed the slowest bulk request")
	c.openSearchFlags(fs)
	fs.IntVar(&c.MaxDeliveries, "max-deliveries", 50, "a document OpenSearch refuses with 429/5xx on its Nth delivery goes to the dead-letter index (0: retry forever)")
	fs.DurationVar(&c.NATSPollInterval, "nats-poll-interval", 5*time.Second, "how often stream size and consumer lag are read for the metrics")
	fs.StringVar(&c.Index, "index", "eks-pod-logs", "index documents are written to; %Y %m %d %H make it a pattern, filled from each document's @timestamp (UTC): eks-pod-logs-%Y.%m.%d")
	fs.StringVar(&c.IndexMode, "index-mode", "index", "index (a plain index, or daily ones with a date pattern) or data-stream (--index names a data stream)")
	fs.IntVar(&c.ISMDeleteAfter, "ism-delete-after", 0, "days after which an index is deleted, by an ISM policy installed with the template (0: never; needs a date pattern or a data stream, and the ISM plugin)")
	fs.StringVar(&c.ISMRolloverSize, "ism-rollover-size", "", "data stream: roll over to a new backing index at this primary shard size (50gb; empty: no size condition)")
	fs.StringVar(&c.ISMRolloverAge, "ism-rollover-age", "", "data stream: roll over to a new backing index at this age (1d; empty: no age condition)")
	fs.StringVar(&c.DeadLetterIndex, "dead-letter-index", "", "index for documents OpenSearch rejects for good (default <index>-dlq)")
	fs.IntVar(&c.BulkWorkers, "bulk-workers", 2, "concurrent bulk requests per replica; 0 makes an ingest-only replica that leaves writing to others")
	fs.IntVar(&c.BulkDocs, "bulk-docs", 2000, "documents per bulk request, at most")
	fs.IntVar(&c.BulkBytes, "bulk-bytes", 5<<20, "bulk request body size, at most: at least --max-document-bytes + 1 KiB, at most OpenSearch's http.max_content_length (checked at start) and any proxy's limit (10 MiB on small Amazon OpenSearch Service instance types)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", 200*time.Millisecond, "longest wait to fill a bulk request, from its first document (part of the written→searchable latency, with the index refresh)")
	fs.StringVar(&c.Enrichment, "enrichment", "auto", "Kubernetes metadata: auto (in-cluster config, or --kubeconfig; without either, from file paths only) or off")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file for the Kubernetes API (empty: in-cluster config when running in a pod)")
	fs.BoolVar(&c.EnrichLabels, "enrich-labels", true, "add the pod's labels (kubernetes.labels)")
	fs.BoolVar(&c.EnrichAnnotations, "enrich-annotations", true, "add the pod's annotations (kubernetes.annotations)")
	fs.BoolVar(&c.EnrichNSLabels, "enrich-namespace-labels", false, "add the namespace's labels (kubernetes.namespace_labels; one more watch, on namespaces)")
	fs.StringVar(&c.EnrichKeyStyle, "enrich-key-style", "flat_object", "label and annotation keys: flat_object (kept as they are, mapped flat_object) or underscore (dots replaced by _)")
	fs.IntVar(&c.EnrichMaxKeys, "enrich-max-keys", 0, "labels, annotations and namespace labels kept per document, each (0: all)")
	fs.DurationVar(&c.TombstoneTTL, "enrich-tombstone-ttl", 10*time.Minute, "how long a deleted pod's metadata is kept for lines read after its deletion")
	fs.DurationVar(&c.MissWait, "enrich-miss-wait", time.Second, "how long a line of a pod the cache has not seen waits for it before one direct GET")
	fs.Float64Var(&c.GetQPS, "enrich-get-qps", 5, "direct pod GETs per second per replica, at most (misses beyond get path metadata only)")
	fs.IntVar(&c.GetBurst, "enrich-get-burst", 10, "burst of direct pod GETs")
	fs.DurationVar(&c.ResyncPeriod, "enrich-resync-period", 0, "informer resync period (0: none; the watch keeps the cache current)")
	fs.DurationVar(&c.CacheSyncTimeout, "enrich-sync-timeout", 2*time.Minute, "at start, how long to wait for the pod list before taking streams anyway")
	fs.BoolVar(&c.ParseJSON, "parse-json", false, "parse log lines that are JSON objects into data (per pod: annotation podlogs.io/parser: json or text)")
	fs.IntVar(&c.MaxDataFields, "max-data-fields", 200, "values kept under data per line, at most; later ones are left out and podlogs.data_truncated is set")
	fs.DurationVar(&c.AcctRetention, "accounting-retention", time.Hour, "a pod's row of /debug/accounting is dropped after this long without a line")
	fs.IntVar(&c.AcctMaxPods, "accounting-max-pods", 100_000, "pod rows of /debug/accounting, at most; later pods are counted per namespace under _overflow")
	fs.StringVar(&c.LogLevel, "log.level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log.format", "json", "text or json")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go's profiles under /debug/pprof/ on --admin-addr (for benchmarks and debugging)")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	envflag.Usage(fs)
	if err := envflag.Parse(fs, args, nil); err != nil {
		return c, err
	}
	if err := c.settleOpenSearch(); err != nil {
		return c, err
	}
	return c, c.validate()
}

// openSearchFlags registers how OpenSearch is reached: the aggregator's
// flags, and `aggregator report`'s by the same names (so that both find
// OpenSearch through the same PODLOGS_* variables).
func (c *config) openSearchFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.OpenSearchURL, "opensearch-url", "http://localhost:9200", "OpenSearch URL")
	fs.StringVar(&c.OpenSearchUser, "opensearch-user", "", "OpenSearch basic auth user")
	fs.StringVar(&c.OpenSearchPassword, "opensearch-password", "", "OpenSearch basic auth password (prefer $PODLOGS_OPENSEARCH_PASSWORD or --opensearch-password-file; never logged)")
	fs.StringVar(&c.OpenSearchPassFile, "opensearch-password-file", "", "file holding the OpenSearch basic auth password (a mounted Secret)")
	fs.StringVar(&c.OpenSearchCA, "opensearch-ca", "", "PEM bundle of the CAs that sign OpenSearch's certificate (default: the system's)")
	fs.StringVar(&c.OpenSearchCert, "opensearch-cert", "", "client certificate (PEM) for OpenSearch, with --opensearch-key")
	fs.StringVar(&c.OpenSearchKey, "opensearch-key", "", "client certificate key (PEM) for OpenSearch")
	fs.BoolVar(&c.OpenSearchInsecure, "opensearch-insecure", false, "do not verify OpenSearch's certificate (tests only: anyone on the path can read and change the logs)")
	fs.StringVar(&c.AWSRegion, "aws-region", "", "AWS region of an Amazon OpenSearch Service domain; set, requests are signed with SigV4 (credentials from the default AWS chain: env, IRSA, instance role)")
	fs.BoolVar(&c.AWSAuth, "opensearch-aws-auth", false, "sign requests with AWS SigV4 (implied by --aws-region; the region then comes from $AWS_REGION)")
	fs.StringVar(&c.AWSService, "opensearch-aws-service", "es", "SigV4 service name: es (OpenSearch Service) or aoss (Serverless)")
}

// settleOpenSearch fills what the OpenSearch flags leave to defaults: the
// dead-letter index, the SigV4 region, the password from its file.
func (c *config) settleOpenSearch() error {
	if c.DeadLetterIndex == "" && c.Index != "" {
		// The fixed part of a date pattern: eks-pod-logs-%Y.%m.%d → eks-pod-logs-dlq.
		c.DeadLetterIndex = strings.TrimRight(strings.Split(c.Index, "%")[0], "-._") + "-dlq"
	}
	if c.AWSRegion != "" {
		c.AWSAuth = true
	}
	if c.AWSAuth && c.AWSRegion == "" {
		c.AWSRegion = os.Getenv("AWS_REGION")
	}
	if c.OpenSearchPassFile != "" && c.OpenSearchPassword == "" {
		b, err := os.ReadFile(c.OpenSearchPassFile)
		if err != nil {
			return fmt.Errorf("--opensearch-password-file: %w", err)
		}
		c.OpenSearchPassword = strings.TrimRight(string(b), "\r\n")
	}
	return nil
}

func (c config) validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("--id is empty and the hostname is unknown"))
	}
	if u, err := url.Parse(c.OpenSearchURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--opensearch-url %q is not an http(s) URL", c.OpenSearchURL))
	}
	if err := sink.ValidateIndex(c.Index); err != nil {
		errs = append(errs, fmt.Errorf("--index %q: %w", c.Index, err))
	}
	if err := sink.ValidateIndex(c.DeadLetterIndex); err != nil || sink.IsDatePattern(c.DeadLetterIndex) {
		errs = append(errs, fmt.Errorf("--dead-letter-index %q: want a plain index name (%v)", c.DeadLetterIndex, err))
	}
	if mode, ok := sink.ParseIndexMode(c.IndexMode); !ok {
		errs = append(errs, fmt.Errorf("--index-mode %q: want index or data-stream", c.IndexMode))
	} else {
		if mode == sink.DataStream && sink.IsDatePattern(c.Index) {
			errs = append(errs, errors.New("--index-mode=data-stream takes a plain name in --index: the data stream starts new backing indices itself (--ism-rollover-*)"))
		}
		if err := c.ismPolicy().Validate(mode, c.Index); err != nil {
			errs = append(errs, fmt.Errorf("--ism-*: %w", err))
		}
	}
	if err := c.TLS.Validate(true); err != nil {
		errs = append(errs, err)
	}
	if c.OpenSearchPassword != "" && c.OpenSearchUser == "" {
		errs = append(errs, errors.New("an OpenSearch password is set but --opensearch-user is empty"))
	}
	if (c.OpenSearchCert == "") != (c.OpenSearchKey == "") {
		errs = append(errs, errors.New("--opensearch-cert and --opensearch-key go together"))
	}
	if c.OpenSearchInsecure && c.OpenSearchCA != "" {
		errs = append(errs, errors.New("--opensearch-insecure and --opensearch-ca contradict each other"))
	}
	if c.AWSAuth && c.AWSRegion == "" {
		errs = append(errs, errors.New("--opensearch-aws-auth needs a region: --aws-region or $AWS_REGION"))
	}
	if c.AWSAuth && c.OpenSearchUser != "" {
		errs = append(errs, errors.New("--aws-region (SigV4) and --opensearch-user (basic auth) exclude each other; Amazon OpenSearch Service with fine-grained access control and an internal user: leave --aws-region empty"))
	}
	if c.AWSService != "es" && c.AWSService != "aoss" {
		errs = append(errs, fmt.Errorf("--opensearch-aws-service %q: want es or aoss", c.AWSService))
	}
	if c.MaxDeliveries < 0 {
		errs = append(errs, fmt.Errorf("--max-deliveries must be 0 or more, got %d", c.MaxDeliveries))
	}
	if c.Index == c.DeadLetterIndex {
		errs = append(errs, errors.New("--dead-letter-index must differ from --index"))
	}
	if c.NATSURL == "" && c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is needed for the embedded NATS server"))
	}
	for _, p := range []struct {
		name string
		v    int64
	}{
		{"max-message-bytes", int64(c.MaxMessageBytes)}, {"nats-stream-max-bytes", c.StreamMaxBytes},
		{"nats-stream-replicas", int64(c.StreamReplicas)}, {"nats-publish-max-pending", int64(c.PublishMaxPending)},
		{"nats-max-ack-pending", int64(c.MaxAckPending)}, {"nats-message-bytes", int64(c.MessageBytes)},
		{"bulk-docs", int64(c.BulkDocs)}, {"bulk-bytes", int64(c.BulkBytes)},
		{"enrich-get-burst", int64(c.GetBurst)}, {"max-data-fields", int64(c.MaxDataFields)},
		{"accounting-max-pods", int64(c.AcctMaxPods)},
	} {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %d", p.name, p.v))
		}
	}
	if c.BulkWorkers < 0 {
		errs = append(errs, fmt.Errorf("--bulk-workers must be 0 or more, got %d", c.BulkWorkers))
	}
	if c.Enrichment != "auto" && c.Enrichment != "off" {
		errs = append(errs, fmt.Errorf("--enrichment %q: want auto or off", c.Enrichment))
	}
	if c.Enrichment == "off" && c.Kubeconfig != "" {
		errs = append(errs, errors.New("--kubeconfig is set but --enrichment is off"))
	}
	if _, ok := enrich.ParseKeyStyle(c.EnrichKeyStyle); !ok {
		errs = append(errs, fmt.Errorf("--enrich-key-style %q: want flat_object or underscore", c.EnrichKeyStyle))
	}
	if c.EnrichMaxKeys < 0 {
		errs = append(errs, fmt.Errorf("--enrich-max-keys must not be negative, got %d", c.EnrichMaxKeys))
	}
	if c.MissWait < 0 || c.ResyncPeriod < 0 {
		errs = append(errs, errors.New("--enrich-miss-wait and --enrich-resync-period must not be negative"))
	}
	if c.GetQPS < 0 {
		errs = append(errs, fmt.Errorf("--enrich-get-qps must not be negative, got %g", c.GetQPS))
	}
	if c.MaxDocumentBytes < document.MinLimit {
		errs = append(errs, fmt.Errorf("--max-document-bytes must be at least %d (a document's metadata), got %d", document.MinLimit, c.MaxDocumentBytes))
	}
	if largest := c.largestMessage(); c.MessageBytes > 0 && (c.StreamMaxBytes < 4*int64(c.MessageBytes) || c.StreamMaxBytes < 2*int64(largest)) {
		// A message larger than the room a full stream frees would never
		// fit; a stream of few messages would stall publishes.
		errs = append(errs, fmt.Errorf("--nats-stream-max-bytes (%d) must hold at least 4 messages of --nats-message-bytes (%d) and 2 of the largest message (%d bytes, from --max-document-bytes)",
			c.StreamMaxBytes, c.MessageBytes, largest))
	}
	if c.BulkBytes < c.MaxDocumentBytes+bulkActionBytes {
		// Every document must fit a bulk request with its action line.
		errs = append(errs, fmt.Errorf("--bulk-bytes (%d) must be at least --max-document-bytes (%d) plus %d for its action line", c.BulkBytes, c.MaxDocumentBytes, bulkActionBytes))
	}
	if c.BulkWorkers*c.BulkDocs > c.MaxAckPending {
		errs = append(errs, fmt.Errorf("--bulk-workers × --bulk-docs (%d) exceeds --nats-max-ack-pending (%d): writers would starve", c.BulkWorkers*c.BulkDocs, c.MaxAckPending))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"max-connection-age", c.MaxConnectionAge}, {"nats-stream-max-age", c.StreamMaxAge},
		{"nats-duplicate-window", c.DuplicateWindow}, {"nats-ack-wait", c.AckWait}, {"flush-interval", c.FlushInterval},
		{"nats-poll-interval", c.NATSPollInterval},
		{"enrich-tombstone-ttl", c.TombstoneTTL}, {"enrich-sync-timeout", c.CacheSyncTimeout},
		{"accounting-retention", c.AcctRetention},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %s", d.name, d.v))
		}
	}
	if c.AckWait > 0 && c.AckWait < 30*time.Second {
		errs = append(errs, fmt.Errorf("--nats-ack-wait %s is shorter than a slow bulk request may take; use 30s or more", c.AckWait))
	}
	return errors.Join(errs...)
}

// bulkActionBytes is room for a document's action line in a bulk request.
const bulkActionBytes = 1 << 10

// largestMessage is the most data a JetStream message carries.
func (c config) largestMessage() int {
	return ingest.LargestMessage(c.MessageBytes, c.MaxDocumentBytes)
}

// enrichOptions are what enrichment renders.
func (c config) enrichOptions() enrich.Options {
	keys, _ := enrich.ParseKeyStyle(c.EnrichKeyStyle)
	return enrich.Options{
		Labels: c.EnrichLabels, Annotations: c.EnrichAnnotations, NamespaceLabels: c.EnrichNSLabels,
		Keys: keys, MaxKeys: c.EnrichMaxKeys, ParseJSON: c.ParseJSON, MaxDataFields: c.MaxDataFields,
	}
}

// dataFields is document.Meta.DataFields for lines without pod metadata.
func (c config) dataFields() int {
	if c.ParseJSON {
		return c.MaxDataFields
	}
	return 0
}

// indexMode is --index-mode, validated.
func (c config) indexMode() sink.IndexMode {
	m, _ := sink.ParseIndexMode(c.IndexMode)
	return m
}

// ismPolicy is the lifecycle policy the --ism-* flags ask for.
func (c config) ismPolicy() sink.ISMPolicy {
	return sink.ISMPolicy{DeleteAfterDays: c.ISMDeleteAfter, RolloverSize: c.ISMRolloverSize, RolloverAge: c.ISMRolloverAge}
}

// openSearchClient is how the sink reaches OpenSearch.
func (c config) openSearchClient() sink.ClientConfig {
	cc := sink.ClientConfig{
		URL: c.OpenSearchURL, User: c.OpenSearchUser, Password: c.OpenSearchPassword,
		CAFile: c.OpenSearchCA, CertFile: c.OpenSearchCert, KeyFile: c.OpenSearchKey, Insecure: c.OpenSearchInsecure,
		AWSService: c.AWSService,
	}
	if c.AWSAuth {
		cc.AWSRegion = c.AWSRegion
	}
	return cc
}

// openSearchAuth names the authentication in use, for the start-up log
// (never the password).
func (c config) openSearchAuth() string {
	switch {
	case c.AWSAuth:
		return "aws-sigv4 (" + c.AWSRegion + ")"
	case c.OpenSearchUser != "":
		return "basic (" + c.OpenSearchUser + ")"
	case c.OpenSearchCert != "":
		return "client certificate"
	}
	return "none"
}

// bufferConfig is how the aggregator reaches JetStream and what it puts there.
func (c config) bufferConfig() buffer.Config {
	return buffer.Config{
		URL: c.NATSURL, StoreDir: filepath.Join(c.DataDir, "jetstream"), EmbeddedListen: c.NATSEmbeddedListen,
		ClientName: "podlogs-aggregator " + c.ID,
		Stream: buffer.StreamConfig{
			Name: c.StreamName, SubjectPrefix: c.SubjectPrefix, MaxBytes: c.StreamMaxBytes,
			MaxAge: c.StreamMaxAge, Duplicates: c.DuplicateWindow, Replicas: c.StreamReplicas,
		},
		Consumer:          sink.ConsumerConfig(c.ConsumerName, c.SubjectPrefix+".>", c.MaxAckPending, c.AckWait),
		PublishMaxPending: c.PublishMaxPending,
		LargestMessage:    c.largestMessage(),
	}
}

// explainBuffer names the flags that fix a NATS server too small for the
// largest message.
func (c config) explainBuffer(err error) error {
	var pe *buffer.PayloadError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: --max-document-bytes %d and --nats-message-bytes %d make messages of up to %d bytes and their headers; "+
			"raise the server's max_payload (nats-server configuration, for example max_payload: %d), or lower --max-document-bytes",
			err, c.MaxDocumentBytes, c.MessageBytes, c.largestMessage(), pe.Need)
	}
	return err
}

// explainOpenSearch says what to change when Preflight finds that waiting
// will not help.
func (c config) explainOpenSearch(err error) error {
	switch {
	case errors.Is(err, sink.ErrAccessDenied), errors.Is(err, sink.ErrTLS):
		return fmt.Errorf("OpenSearch %s: %w", c.OpenSearchURL, err)
	case errors.Is(err, sink.ErrNoISM):
		return fmt.Errorf("--ism-* asks for a lifecycle policy: %w; install the plugin (opensearch-index-management) or drop the flags", err)
	case errors.Is(err, sink.ErrRequestLimit):
		return fmt.Errorf("OpenSearch %s: %w: lower --bulk-bytes (%d; it must stay at least --max-document-bytes %d + 1 KiB, so lower that too if needed), or raise http.max_content_length",
			c.OpenSearchURL, err, c.BulkBytes, c.MaxDocumentBytes)
	}
	return err
}

// accountingConfig: per namespace and pod, what this replica received,
// published and wrote (/debug/accounting, `aggregator report`).
func (c config) accountingConfig() accounting.Config {
	return accounting.Config{Replica: c.ID, Retention: c.AcctRetention, MaxPods: c.AcctMaxPods}
}

// sinkConfig is the bulk writer's; a pull must take the largest message
// the server allows.
func (c config) sinkConfig(ledger *accounting.Ledger, maxPayload int64) sink.Config {
	keys := sink.FlatObject
	if k, _ := enrich.ParseKeyStyle(c.EnrichKeyStyle); k == enrich.KeysUnderscore {
		keys = sink.KeywordFields
	}
	return sink.Config{
		Index: c.Index, Keys: keys, DeadLetter: c.DeadLetterIndex, Workers: c.BulkWorkers, BulkDocs: c.BulkDocs,
		BulkBytes: c.BulkBytes, MaxDocumentBytes: c.MaxDocumentBytes, PullBytes: max(c.BulkBytes, 2*int(maxPayload)),
		FlushInterval: c.FlushInterval,
		MaxDeliveries: c.MaxDeliveries, Accounting: ledger, Mode: c.indexMode(), ISM: c.ismPolicy(),
	}
}

// ingestConfig is the forwarders' server's.
func (c config) ingestConfig(ledger *accounting.Ledger) ingest.Config {
	return ingest.Config{
		AggregatorID: c.ID, MaxMessageBytes: c.MaxMessageBytes, SubjectPrefix: c.SubjectPrefix,
		MessageBytes: c.MessageBytes, MaxDocumentBytes: c.MaxDocumentBytes, DataFields: c.dataFields(),
		MaxStreamAge: c.MaxConnectionAge, Accounting: ledger,
	}
}
