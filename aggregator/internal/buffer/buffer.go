// Package buffer is the aggregator's side of NATS JetStream, the durable
// buffer between ingest and OpenSearch: it starts an embedded server when no
// external one is given, creates or updates the stream, and publishes
// documents so that a call returns only when JetStream stored every one.
//
// Each document is one message whose Nats-Msg-Id is the document id, so a
// record sent twice (a forwarder resending after a reconnect) is dropped by
// JetStream's duplicate window, and later by OpenSearch's create-if-absent.
package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// StreamConfig describes the stream.
type StreamConfig struct {
	Name          string
	SubjectPrefix string // documents go to <prefix>.<namespace>
	MaxBytes      int64
	MaxAge        time.Duration
	Duplicates    time.Duration
	Replicas      int
}

// Subjects is the stream's subject filter.
func (c StreamConfig) Subjects() []string { return []string{c.SubjectPrefix + ".>"} }

// EnsureStream creates the stream or updates it to cfg. A full stream refuses
// new messages (discard policy "new") instead of dropping old ones: refusal is
// the backpressure signal that slows forwarders down.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "podlogs documents on their way to OpenSearch",
		Subjects:    cfg.Subjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    cfg.MaxBytes,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// StartEmbedded starts an in-process JetStream server storing under dir.
// listen is "" to accept in-process connections only, or host:port.
func StartEmbedded(dir, listen string, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "podlogs-embedded",
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		DontListen: listen == "",
	}
	if listen != "" {
		host, port, err := splitHostPort(listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS server did not start within 30s")
	}
	log.Info("embedded JetStream server started", "store_dir", dir, "listen", listen)
	return srv, nil
}

func splitHostPort(s string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %w", s, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: bad port", s)
	}
	return host, port, nil
}

// Publisher publishes documents and waits for JetStream to store them.
type Publisher struct {
	js      jetstream.JetStream
	log     *slog.Logger
	metrics *metrics
}

// NewPublisher wraps js; create js with jetstream.WithPublishAsyncMaxPending
// to bound memory and WithPublishAsyncTimeout so lost acks surface as errors.
func NewPublisher(js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) *Publisher {
	return &Publisher{js: js, log: log, metrics: newMetrics(reg)}
}

// Publish returns nil once every message is stored in the stream (or was a
// duplicate of a stored one). Messages that fail are published again with
// backoff until they succeed or ctx is done; refusals of a full stream land
// here, and the wait is the backpressure the forwarders feel.
func (p *Publisher) Publish(ctx context.Context, msgs []*nats.Msg) error {
	start := time.Now()
	defer func() { p.metrics.latency.Observe(time.Since(start).Seconds()) }()
	todo := msgs
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		failed, lastErr := p.publishOnce(ctx, todo)
		if len(failed) == 0 {
			return nil
		}
		p.metrics.failures.Add(float64(len(failed)))
		if ctx.Err() != nil {
			return fmt.Errorf("publish %d of %d messages: %w", len(failed), len(msgs), ctx.Err())
		}
		if attempt == 0 || attempt%20 == 0 {
			p.log.Warn("JetStream did not store every message; retrying", "failed", len(failed), "of", len(todo), "err", lastErr)
		}
		todo = failed
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("publish %d of %d messages: %w", len(failed), len(msgs), ctx.Err())
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (p *Publisher) publishOnce(ctx context.Context, msgs []*nats.Msg) (failed []*nats.Msg, lastErr error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			failed, lastErr = append(failed, m), err
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				p.metrics.duplicates.Inc()
			} else {
				p.metrics.published.Inc()
			}
		case err := <-f.Err():
			failed, lastErr = append(failed, msgs[i]), err
		case <-ctx.Done():
			return append(failed, msgs[i:]...), ctx.Err()
		}
	}
	return failed, lastErr
}

type metrics struct {
	published, duplicates, failures prometheus.Counter
	latency                         prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podlogs_aggregator_published_total", Help: "Documents stored in the JetStream stream.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podlogs_aggregator_publish_duplicates_total", Help: "Documents JetStream already held (resent records).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podlogs_aggregator_publish_failures_total", Help: "Publish attempts JetStream refused or did not answer; they are retried.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podlogs_aggregator_publish_batch_seconds",
			Help:    "Time to have every document of a batch stored, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	reg.MustRegister(m.published, m.duplicates, m.failures, m.latency)
	return m
}
