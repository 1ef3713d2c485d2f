// Package sink moves documents from the JetStream buffer into OpenSearch.
//
// Every aggregator replica pulls from one shared durable pull consumer, so
// each message goes to one replica. A message holds documents (package
// docmsg: a batch's documents of one namespace). In a replica, one
// goroutine pulls continuously (prefetching at most PullBytes) and cuts
// batches of messages by document count, bytes or flush interval (pull.go);
// each worker takes a batch, writes it with _bulk requests of "create"
// operations under each document's own id (to the index, the daily index
// its @timestamp names, or the data stream), and decides per document from
// the item's result (bulk.go):
//   - created, or 409 (a document with that id exists: a resent line) → ack;
//   - 429, 5xx → nak with a growing delay: JetStream redelivers it later;
//   - 401, 403 (the role lacks a permission) → nak and an error log, never
//     the dead-letter index, however often: it is the operator's to fix;
//   - any other rejection (a mapping conflict, a parse error) → the document
//     goes to the dead-letter index with the reason, then ack: one bad
//     document never blocks the others;
//   - 429 or 5xx on the MaxDeliveries-th delivery or later → dead-letter index
//     too (reason "delivered N times", with the last error): a document is
//     never retried forever, and never dropped silently.
//
// A request refused as a whole for what it holds (413: larger than
// OpenSearch or a proxy takes; 400) would be refused again: its messages are
// written one by one, and a message refused alone, document by document; a
// document refused alone goes to the dead-letter index. A message that
// cannot be read, or that ingest sent as a dead letter (the buffer refused
// its documents), goes there too (deadletter.go). A dead letter keeps the
// document, cut to MaxDocumentBytes, and why; one the dead-letter index
// refuses for good is dropped, counted and logged: nothing is retried
// forever.
//
// A message is acked once each of its documents is settled (created,
// duplicate or dead-lettered) and nak'ed if any is to be retried: it comes
// back whole, and its documents already written are answered 409.
//
// The consumer itself has no MaxDeliver: JetStream would stop delivering a
// message past it and keep it out of reach (only an advisory tells), so the
// sink counts deliveries (the message's NumDelivered) and dead-letters the
// document itself. Deliveries that end in a whole-request failure (OpenSearch
// down) count too, but only an item-level failure dead-letters: an outage of
// any length leaves the dead-letter index empty.
//
// A request that fails as a whole for a passing reason (connection refused,
// timeout, 429, 5xx) acks nothing: the worker backs off and the messages are
// redelivered. Messages are acked only after OpenSearch answered, so a
// replica killed mid-bulk loses nothing; ack_wait must exceed the slowest
// bulk request. A replica stopped (its context done) finishes its bulk
// requests in flight and naks what it pulled but did not write, for another
// replica to take at once. What a replica holds is bounded: (workers + 1)
// batches of at most BulkDocs documents, PullBytes prefetched, and
// max_ack_pending messages across replicas.
package sink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
)

// Config tunes the writer.
type Config struct {
	// Index names the index; with %Y %m %d %H (see ValidateIndex) it is a
	// pattern, and each document goes to the index its own @timestamp names.
	Index      string
	Mode       IndexMode  // a plain index (or date pattern), or a data stream
	ISM        ISMPolicy  // lifecycle policy installed with the template, if any
	Keys       KeyMapping // how the template maps label and annotation keys
	DeadLetter string     // index for documents OpenSearch rejects for good
	Workers    int
	BulkDocs   int // documents fetched per bulk request
	BulkBytes  int // split a bulk request past this body size
	// MaxDocumentBytes is the most of a document a dead letter keeps; 0
	// keeps 1 MiB.
	MaxDocumentBytes int
	// PullBytes bounds what the continuous pull holds ahead of the
	// workers; it must be at least the largest message (the NATS server's
	// max_payload), or the pull stalls. 0: max(BulkBytes, 2 MiB).
	PullBytes     int
	FlushInterval time.Duration // longest wait to fill a batch
	// BackoffMin and BackoffMax bound the waits after failed requests and
	// the delays of redeliveries (defaults 250 ms and 30 s).
	BackoffMin time.Duration
	BackoffMax time.Duration
	// MaxDeliveries: a document that OpenSearch still refuses with 429 or
	// 5xx on its MaxDeliveries-th delivery goes to the dead-letter index.
	// 0 retries forever.
	MaxDeliveries int
	// StopTimeout bounds how long the bulk requests in flight may take to
	// finish once Run's context is done (default 15s).
	StopTimeout time.Duration
	// Accounting counts each pod's documents indexed, duplicate and
	// dead-lettered; nil counts nothing.
	Accounting *accounting.Ledger
}

// ConsumerConfig returns the durable consumer the sink needs. maxAckPending
// bounds the messages fetched but not yet acked across all replicas.
func ConsumerConfig(durable, subjectFilter string, maxAckPending int, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "podlogs bulk writers (shared by every aggregator replica)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: maxAckPending,
		MaxDeliver:    -1,
		FilterSubject: subjectFilter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Sink owns the workers.
type Sink struct {
	cfg     Config
	client  *opensearch.Client
	cons    jetstream.Consumer
	log     *slog.Logger
	metrics *metrics

	mu    sync.Mutex // guards ready
	ready bool
}

// New returns a sink writing what cons delivers to OpenSearch through client.
func New(cfg Config, client *opensearch.Client, cons jetstream.Consumer, reg prometheus.Registerer, log *slog.Logger) *Sink {
	cfg.BackoffMin = cmp.Or(cfg.BackoffMin, 250*time.Millisecond)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, 30*time.Second)
	return &Sink{cfg: cfg, client: client, cons: cons, log: log, metrics: newMetrics(reg)}
}

// Ready reports whether the templates are installed and writing has begun.
func (s *Sink) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Run installs the index templates (retrying until OpenSearch answers), then
// writes until ctx is done. It returns an error if the consumer is gone
// (deleted by an operator): writing cannot go on, and a restart creates it
// again.
//
// One goroutine pulls from the consumer continuously, so that the next
// batch is in the iterator's buffer when a worker is ready: the pull round
// trip overlaps the bulk requests in flight instead of adding to them. It
// cuts a batch when a worker asks, so that the batch takes what arrived
// meanwhile and is full when the traffic allows. When ctx is done, the bulk requests in
// flight finish (for at most StopTimeout) and their documents are settled;
// what was pulled but not written is nak'ed, for this or another replica.
func (s *Sink) Run(ctx context.Context) error {
	if err := s.installTemplates(ctx); err != nil {
		return nil // ctx done
	}
	s.mu.Lock()
	s.ready = true
	s.mu.Unlock()
	// Bulk requests outlive ctx, so that a stop never wastes one OpenSearch
	// has already done; the grace goroutine bounds them.
	writeCtx, cancelWrite := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrite()
	// A pull that cannot go on ends the workers as a stop does.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	want := make(chan struct{})   // a worker is ready for a batch
	batches := make(chan []*held) // the batch cut for it
	var wg sync.WaitGroup
	var pullErr error
	wg.Go(func() {
		defer close(batches)
		if pullErr = s.pull(ctx, want, batches); pullErr != nil {
			stop()
		}
	})
	for range s.cfg.Workers {
		wg.Go(func() { s.work(ctx, writeCtx, want, batches) })
	}
	done := make(chan struct{})
	var grace sync.WaitGroup
	grace.Go(func() {
		select {
		case <-done:
		case <-ctx.Done():
			t := time.NewTimer(cmp.Or(s.cfg.StopTimeout, 15*time.Second))
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				s.log.Warn("bulk requests in flight did not finish in time; their documents are redelivered", "stop_timeout", s.cfg.StopTimeout)
				cancelWrite()
			}
		}
	})
	wg.Wait()
	close(done)
	grace.Wait()
	return pullErr
}

func (s *Sink) installTemplates(ctx context.Context) error {
	backoff := s.cfg.BackoffMin
	for attempt := 0; ; attempt++ {
		err := s.install(ctx)
		if err == nil {
			s.log.Info("index templates installed", "index", s.cfg.Index, "pattern", TemplatePattern(s.cfg.Index),
				"mode", s.cfg.Mode.String(), "ism_policy", s.cfg.ISM.Enabled(), "dead_letter_index", s.cfg.DeadLetter)
			return nil
		}
		var se *osrequest.StatusError
		if errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden) {
			s.log.Error("OpenSearch refused the credentials; check --opensearch-user and the password", "err", err)
		} else if errors.Is(err, ErrNoISM) {
			s.log.Error("an ISM policy is asked for but OpenSearch has no ISM plugin; install it or drop the --ism-* flags; documents wait in the buffer", "err", err)
		} else if attempt%10 == 0 {
			s.log.Warn("OpenSearch is not reachable yet; documents wait in the buffer", "err", err, "retry_in", backoff)
		}
		if !sleep(ctx, jitter(backoff)) {
			return ctx.Err()
		}
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

// install puts the dead-letter template first: its priority is above the
// main template's, whose pattern (a date pattern's "<name>-*") may match
// the dead-letter index too.
func (s *Sink) install(ctx context.Context) error {
	if err := PutTemplate(ctx, s.client, templateName(s.cfg.DeadLetter), DeadLetterTemplate(s.cfg.DeadLetter)); err != nil {
		return err
	}
	tmpl := IndexTemplateFor(s.cfg.Index, s.cfg.Keys)
	if s.cfg.Mode == DataStream {
		tmpl["data_stream"] = map[string]any{}
	}
	if err := PutTemplate(ctx, s.client, templateName(s.cfg.Index), tmpl); err != nil {
		return err
	}
	if s.cfg.ISM.Enabled() {
		return PutISMPolicy(ctx, s.client, templateName(s.cfg.Index), ISMPolicyBody(s.cfg.ISM, TemplatePattern(s.cfg.Index)))
	}
	return nil
}

func (s *Sink) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		// The message comes back after ack_wait and is answered 409: no loss, no double.
		s.log.Debug("ack failed", "err", err)
	}
}

// nak asks JetStream to redeliver later, the delay growing with the number
// of deliveries so a struggling cluster is not hammered.
func (s *Sink) nak(m jetstream.Msg) {
	delay := s.cfg.BackoffMin
	if md, err := m.Metadata(); err == nil {
		for n := uint64(1); n < md.NumDelivered && delay < s.cfg.BackoffMax; n++ {
			delay *= 2
		}
	}
	if err := m.NakWithDelay(jitter(min(delay, s.cfg.BackoffMax))); err != nil {
		s.log.Debug("nak failed", "err", err)
	}
}

func (s *Sink) nakAll(msgs []*held, delay time.Duration) {
	for _, h := range msgs {
		if err := h.msg.NakWithDelay(jitter(delay)); err != nil {
			s.log.Debug("nak failed", "err", err)
		}
	}
}

func errType(it bulkItem) string {
	if it.Error == nil || it.Error.Type == "" {
		return "status_" + strconv.Itoa(it.Status)
	}
	return it.Error.Type
}

// writeJSONString writes s quoted. Ids and index names need no escaping:
// they are written as they are, without the allocation of json.Marshal.
func writeJSONString[S string | []byte](b *bytes.Buffer, s S) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			b.Write(q)
			return
		}
	}
	b.WriteByte('"')
	b.Write([]byte(s))
	b.WriteByte('"')
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
