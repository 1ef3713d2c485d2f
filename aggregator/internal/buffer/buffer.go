// Package buffer is the aggregator's side of NATS JetStream, the durable
// buffer between ingest and OpenSearch: it starts an embedded server when no
// external one is given, creates or updates the stream, and publishes
// documents so that a call returns only when JetStream stored every one.
//
// The messages are in package docmsg's format: the documents of one
// forwarder batch and namespace in one message whose Nats-Msg-Id is a hash
// of their ids, so a publish retried after a lost ack is dropped by
// JetStream's duplicate window, and any other resent line by OpenSearch's
// create-if-absent.
//
// One message per batch and namespace, not per document, chosen by
// measurement: BenchmarkPublish (1000 documents of 700 bytes, embedded
// server, file storage) stores several times more documents a second per
// batch than per record, and in the aggregator benchmark (bench/RESULTS.md)
// JetStream's per-message work was most of the aggregator's CPU. What it
// costs: a document that OpenSearch asks to retry brings its message back,
// and the message's other documents are answered 409 (counted duplicate);
// the consumer's pending and redelivered counts are messages.
package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/internal/docmsg"
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
//
// Retention is "interest": a document leaves the stream once the writers'
// durable consumer acked it (it is in OpenSearch or in the dead-letter
// index), so MaxBytes bounds what waits for OpenSearch, not what passed
// through. With "limits" retention a stream that once reached MaxBytes would
// refuse publishes until MaxAge expired old documents, long after OpenSearch
// came back. Create the consumer before publishing: a message published
// while no consumer exists is not kept.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Name,
		Description: "podlogs documents on their way to OpenSearch",
		Subjects:    cfg.Subjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.InterestPolicy,
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

// StartEmbedded starts an in-process JetStream server storing under dir,
// taking messages of up to maxPayload bytes. listen is "" to accept
// in-process connections only, or host:port.
func StartEmbedded(dir, listen string, maxPayload int32, log *slog.Logger) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "podlogs-embedded",
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		DontListen: listen == "",
		MaxPayload: maxPayload,
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
	log.Info("embedded JetStream server started", "store_dir", dir, "listen", listen, "max_payload", maxPayload)
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

	mu      sync.Mutex // guards lastLog
	lastLog map[string]time.Time
}

// NewPublisher wraps js; create js with jetstream.WithPublishAsyncMaxPending
// to bound memory and WithPublishAsyncTimeout so lost acks surface as errors.
func NewPublisher(js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) *Publisher {
	return &Publisher{js: js, log: log, metrics: newMetrics(reg), lastLog: map[string]time.Time{}}
}

// Reasons a publish is retried, the values of the reason label of
// podlogs_aggregator_publish_failures_total.
const (
	ReasonStreamFull   = "stream_full"   // the stream reached its byte (or message) limit: OpenSearch is behind
	ReasonTimeout      = "timeout"       // no ack in time: NATS slow, restarting or unreachable
	ReasonNoResponders = "no_responders" // no JetStream server answered (restart, lost quorum)
	ReasonStalled      = "stalled"       // too many publishes awaiting an ack in this replica
	ReasonDisconnected = "disconnected"  // the connection to NATS is down
	ReasonOther        = "other"
	// Refusals for good: the same message would be refused again.
	ReasonTooLarge = "payload_too_large" // over the server's max_payload or the stream's max_msg_size
)

// FailureReason classifies a publish error. JetStream refuses a message for
// a full stream with a 503 and error code 10077 ("maximum bytes exceeded",
// "maximum messages exceeded"); that refusal is the backpressure signal.
func FailureReason(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload),
		errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeMessageTooLarge || apiErr.ErrorCode == errCodeHeaderTooLarge):
		return ReasonTooLarge
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamStoreFailed &&
		(strings.Contains(apiErr.Description, "maximum bytes") || strings.Contains(apiErr.Description, "maximum messages")):
		return ReasonStreamFull
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return ReasonTimeout
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return ReasonNoResponders
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return ReasonStalled
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting):
		return ReasonDisconnected
	}
	return ReasonOther
}

// JetStream's error codes (nats-server's server/errors.json) that
// FailureReason tells apart: JSStreamStoreFailedF, a message the stream could
// not store (a full stream among others); JSStreamMessageExceedsMaximumErr
// and JSStreamHeaderExceedsMaximumErr, a message over the stream's limits.
const (
	errCodeStreamStoreFailed jetstream.ErrorCode = 10077
	errCodeMessageTooLarge   jetstream.ErrorCode = 10054
	errCodeHeaderTooLarge    jetstream.ErrorCode = 10097
)

// permanent tells whether a publish that failed for reason would fail again.
func permanent(reason string) bool { return reason == ReasonTooLarge }

// RefusedError lists the messages JetStream refused for good; Publish
// stored every other one.
type RefusedError struct {
	Msgs   []*nats.Msg
	Reason string // a permanent FailureReason
	Err    error  // the last refusal
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("JetStream refused %d messages for good (%s): %v", len(e.Msgs), e.Reason, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Publish returns nil once every message is stored in the stream (or was a
// duplicate of a stored one). Messages that fail are published again with
// backoff until they succeed or ctx is done; refusals of a full stream land
// here, and the wait is the backpressure the forwarders feel. A resent
// message carries the same Nats-Msg-Id, so a publish whose ack was lost
// (stored, then NATS restarted) is not stored twice. A message refused for
// good (too large) is not retried: once the others are stored, Publish
// returns a *RefusedError naming it.
func (p *Publisher) Publish(ctx context.Context, msgs []*nats.Msg) error {
	start := time.Now()
	defer func() { p.metrics.latency.Observe(time.Since(start).Seconds()) }()
	todo := msgs
	backoff := 50 * time.Millisecond
	var refused *RefusedError
	for {
		failed, lastErr := p.publishOnce(ctx, todo)
		failed = p.setAside(failed, &refused)
		if len(failed) == 0 {
			if refused != nil {
				return refused
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("publish %d of %d messages: %w", len(failed), len(msgs), ctx.Err())
		}
		reason := FailureReason(lastErr)
		p.logRetry(reason, len(failed), len(todo), lastErr)
		todo = todo[:0:0]
		for _, f := range failed {
			todo = append(todo, f.msg)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("publish %d of %d messages: %w", len(failed), len(msgs), ctx.Err())
		}
		// A full stream frees space only as fast as OpenSearch takes
		// documents: poll it at most every 2 s.
		backoff = min(2*backoff, 2*time.Second)
	}
}

// logRetry logs a retried publish at most every 10 s per reason: every
// stream and batch retries at once when NATS restarts or the stream fills.
func (p *Publisher) logRetry(reason string, failed, of int, err error) {
	p.mu.Lock()
	last := p.lastLog[reason]
	now := time.Now()
	if now.Sub(last) < 10*time.Second {
		p.mu.Unlock()
		return
	}
	p.lastLog[reason] = now
	p.mu.Unlock()
	switch reason {
	case ReasonStreamFull:
		p.log.Warn("JetStream stream is full; publishes are refused and retried, forwarders are slowed until the writers catch up "+
			"(OpenSearch down or slow; see podlogs_aggregator_consumer_pending; raise --nats-stream-max-bytes for a longer outage)",
			"failed", failed, "of", of, "err", err)
	default:
		p.log.Warn("JetStream did not store every message; retrying (forwarders are acknowledged only for what it stored)",
			"reason", reason, "failed", failed, "of", of, "err", err)
	}
}

// failure is a message that was not stored, and why.
type failure struct {
	msg *nats.Msg
	err error
}

// setAside moves the messages refused for good into *refused, counted and
// logged, and returns the others.
func (p *Publisher) setAside(failed []failure, refused **RefusedError) []failure {
	keep := failed[:0]
	for _, f := range failed {
		reason := FailureReason(f.err)
		if !permanent(reason) {
			keep = append(keep, f)
			continue
		}
		if *refused == nil {
			*refused = &RefusedError{Reason: reason}
		}
		(*refused).Msgs, (*refused).Err = append((*refused).Msgs, f.msg), f.err
		p.metrics.refused.WithLabelValues(reason).Add(float64(docmsg.Count(f.msg.Header)))
		p.log.Error("JetStream refused a message for good; its documents go to the dead-letter index",
			"reason", reason, "bytes", len(f.msg.Data), "docs", docmsg.Count(f.msg.Header), "err", f.err,
			"fix", "keep --max-document-bytes and --nats-message-bytes below the server's max_payload and the stream's max_msg_size")
	}
	return keep
}

func (p *Publisher) publishOnce(ctx context.Context, msgs []*nats.Msg) (failed []failure, lastErr error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			p.metrics.failures.WithLabelValues(FailureReason(err)).Inc()
			failed, lastErr = append(failed, failure{m, err}), err
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
			if docs := float64(docmsg.Count(msgs[i].Header)); ack.Duplicate {
				p.metrics.duplicates.Add(docs)
			} else {
				p.metrics.published.Add(docs)
			}
		case err := <-f.Err():
			p.metrics.failures.WithLabelValues(FailureReason(err)).Inc()
			failed, lastErr = append(failed, failure{msgs[i], err}), err
		case <-ctx.Done():
			for _, m := range msgs[i:] {
				failed = append(failed, failure{m, ctx.Err()})
			}
			return failed, ctx.Err()
		}
	}
	return failed, lastErr
}

type metrics struct {
	published, duplicates prometheus.Counter
	failures, refused     *prometheus.CounterVec
	latency               prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podlogs_aggregator_published_total", Help: "Documents stored in the JetStream stream.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podlogs_aggregator_publish_duplicates_total", Help: "Documents JetStream already held (resent records in a message it had stored).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_publish_failures_total",
			Help: "Publish attempts JetStream refused or did not answer, by reason (stream_full, timeout, no_responders, stalled, disconnected, other: retried; payload_too_large: not retried).",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_publish_refused_total",
			Help: "Documents in messages JetStream refused for good, by reason (payload_too_large); they are sent to the dead-letter index instead.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podlogs_aggregator_publish_batch_seconds",
			Help:    "Time to have every document of a batch stored, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	for _, r := range []string{ReasonStreamFull, ReasonTimeout, ReasonNoResponders, ReasonStalled, ReasonDisconnected, ReasonOther, ReasonTooLarge} {
		m.failures.WithLabelValues(r)
	}
	m.refused.WithLabelValues(ReasonTooLarge)
	reg.MustRegister(m.published, m.duplicates, m.failures, m.refused, m.latency)
	return m
}
