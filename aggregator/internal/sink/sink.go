// Package sink moves documents from the JetStream buffer into OpenSearch.
//
// Every aggregator replica runs workers on one shared durable pull consumer,
// so each message goes to one replica. A worker fetches a batch, writes it
// with one _bulk request of "create" operations under the document's own id,
// and decides per document from the item's result:
//   - created, or 409 (a document with that id exists: a resent line) → ack;
//   - 429, 5xx → nak with a growing delay: JetStream redelivers it later;
//   - any other rejection (a mapping conflict, a parse error) → the document
//     goes to the dead-letter index with the reason, then ack: one bad
//     document never blocks the others;
//   - 429 or 5xx on the MaxDeliveries-th delivery or later → dead-letter index
//     too (reason "delivered N times", with the last error): a document is
//     never retried forever, and never dropped silently.
//
// The consumer itself has no MaxDeliver: JetStream would stop delivering a
// message past it and keep it out of reach (only an advisory tells), so the
// sink counts deliveries (the message's NumDelivered) and dead-letters the
// document itself. Deliveries that end in a whole-request failure (OpenSearch
// down) count too, but only an item-level failure dead-letters: an outage of
// any length leaves the dead-letter index empty.
//
// A request that fails as a whole (connection refused, timeout, 5xx) acks
// nothing: the worker backs off and the messages are redelivered. Messages
// are acked only after OpenSearch answered, so a replica killed mid-bulk
// loses nothing; ack_wait must exceed the slowest bulk request.
package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes the writer.
type Config struct {
	Index         string
	Keys          KeyMapping // how the template maps label and annotation keys
	DeadLetter    string     // index for documents OpenSearch rejects for good
	Workers       int
	BulkDocs      int           // documents fetched per bulk request
	BulkBytes     int           // split a bulk request past this body size
	FlushInterval time.Duration // longest wait to fill a batch
	BackoffMin    time.Duration
	BackoffMax    time.Duration
	// MaxDeliveries: a document that OpenSearch still refuses with 429 or
	// 5xx on its MaxDeliveries-th delivery goes to the dead-letter index.
	// 0 retries forever.
	MaxDeliveries int
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
	return &Sink{cfg: cfg, client: client, cons: cons, log: log, metrics: newMetrics(reg)}
}

// Ready reports whether the templates are installed and writing has begun.
func (s *Sink) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Run installs the index templates (retrying until OpenSearch answers), then
// writes until ctx is done. A worker finishes its current bulk request first.
func (s *Sink) Run(ctx context.Context) error {
	if err := s.installTemplates(ctx); err != nil {
		return nil // ctx done
	}
	s.mu.Lock()
	s.ready = true
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < s.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	wg.Wait()
	return nil
}

func (s *Sink) installTemplates(ctx context.Context) error {
	backoff := s.cfg.BackoffMin
	for attempt := 0; ; attempt++ {
		err := PutTemplate(ctx, s.client, templateName(s.cfg.Index), IndexTemplateFor(s.cfg.Index, s.cfg.Keys))
		if err == nil {
			err = PutTemplate(ctx, s.client, templateName(s.cfg.DeadLetter), DeadLetterTemplate(s.cfg.DeadLetter))
		}
		if err == nil {
			s.log.Info("index templates installed", "index", s.cfg.Index, "dead_letter_index", s.cfg.DeadLetter)
			return nil
		}
		var se *StatusError
		if errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden) {
			s.log.Error("OpenSearch refused the credentials; check --opensearch-user and the password", "err", err)
		} else if attempt%10 == 0 {
			s.log.Warn("OpenSearch is not reachable yet; documents wait in the buffer", "err", err, "retry_in", backoff)
		}
		if !sleep(ctx, jitter(backoff)) {
			return ctx.Err()
		}
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

func (s *Sink) work(ctx context.Context) {
	backoff := s.cfg.BackoffMin
	var body bytes.Buffer
	var msgs []jetstream.Msg
	for ctx.Err() == nil {
		batch, err := s.cons.Fetch(s.cfg.BulkDocs, jetstream.FetchMaxWait(s.cfg.FlushInterval))
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("fetch from JetStream failed; retrying", "err", err)
				sleep(ctx, jitter(backoff))
				backoff = min(2*backoff, s.cfg.BackoffMax)
			}
			continue
		}
		msgs = msgs[:0]
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
			s.log.Debug("fetch ended early", "err", err)
		}
		if len(msgs) == 0 {
			continue
		}
		// Split by bytes; a request failing as a whole stops the rest of the batch.
		ok := true
		for start := 0; start < len(msgs) && ok; {
			end := s.fill(&body, msgs, start)
			ok = s.write(ctx, body.Bytes(), msgs[start:end])
			if !ok {
				s.nakAll(msgs[start:], backoff)
			}
			start = end
		}
		if ok {
			backoff = s.cfg.BackoffMin
			continue
		}
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

// fill writes bulk lines for msgs[start:] into body up to the byte limit
// (at least one document) and returns the end of what it took.
func (s *Sink) fill(body *bytes.Buffer, msgs []jetstream.Msg, start int) int {
	body.Reset()
	i := start
	for ; i < len(msgs); i++ {
		m := msgs[i]
		if i > start && body.Len()+len(m.Data())+128 > s.cfg.BulkBytes {
			break
		}
		body.WriteString(`{"create":{"_index":`)
		writeJSONString(body, s.cfg.Index)
		body.WriteString(`,"_id":`)
		writeJSONString(body, m.Headers().Get(jetstream.MsgIDHeader))
		body.WriteString("}}\n")
		body.Write(m.Data())
		body.WriteByte('\n')
	}
	return i
}

type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []struct {
		Create bulkItem `json:"create"`
	} `json:"items"`
}

type bulkItem struct {
	Status int `json:"status"`
	Error  *struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// write sends one bulk request and settles each message by its item's
// result. It returns false if the request failed as a whole.
func (s *Sink) write(ctx context.Context, body []byte, msgs []jetstream.Msg) bool {
	start := time.Now()
	out, err := do(ctx, s.client, http.MethodPost, "/_bulk", body)
	s.metrics.bulkSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.bulkRequests.WithLabelValues("failed").Inc()
		if ctx.Err() == nil {
			s.log.Warn("bulk request failed; documents stay in the buffer and are retried", "docs", len(msgs), "err", err)
		}
		return false
	}
	var resp bulkResponse
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.Items) != len(msgs) {
		s.metrics.bulkRequests.WithLabelValues("failed").Inc()
		s.log.Error("bulk response does not match the request; retrying", "err", err, "items", len(resp.Items), "docs", len(msgs))
		return false
	}
	s.metrics.bulkRequests.WithLabelValues("ok").Inc()
	var rejected []rejection
	for i, it := range resp.Items {
		m := msgs[i]
		switch st := it.Create.Status; {
		case st == http.StatusOK || st == http.StatusCreated:
			s.metrics.docs.WithLabelValues("created").Inc()
			s.metrics.namespace(m.Subject(), "created")
			s.ack(m)
		case st == http.StatusConflict:
			s.metrics.docs.WithLabelValues("duplicate").Inc()
			s.metrics.namespace(m.Subject(), "duplicate")
			s.ack(m)
		case st == http.StatusTooManyRequests || st >= 500:
			s.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
			if n := deliveries(m); s.cfg.MaxDeliveries > 0 && n >= uint64(s.cfg.MaxDeliveries) {
				rejected = append(rejected, rejection{msg: m, item: it.Create,
					reason: fmt.Sprintf("delivered %d times (--max-deliveries); last error: %s", n, reasonOf(it.Create))})
				continue
			}
			s.metrics.docs.WithLabelValues("retried").Inc()
			s.nak(m)
		default:
			s.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
			rejected = append(rejected, rejection{msg: m, item: it.Create, reason: reasonOf(it.Create)})
		}
	}
	if len(rejected) > 0 {
		s.deadLetter(ctx, rejected)
	}
	return true
}

// rejection is a document bound for the dead-letter index.
type rejection struct {
	msg    jetstream.Msg
	item   bulkItem
	reason string
}

func reasonOf(it bulkItem) string {
	if it.Error != nil {
		return it.Error.Reason
	}
	return ""
}

func deliveries(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	return md.NumDelivered
}

// deadLetter stores rejected documents in the dead-letter index with the
// reason, then acks them. If that write fails they are nak'ed and tried again.
func (s *Sink) deadLetter(ctx context.Context, rejected []rejection) {
	var body bytes.Buffer
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, r := range rejected {
		id := r.msg.Headers().Get(jetstream.MsgIDHeader)
		doc, _ := json.Marshal(map[string]any{
			"@timestamp": now, "index": s.cfg.Index, "error_type": errType(r.item), "reason": r.reason,
			"status": r.item.Status, "document": string(r.msg.Data()), "document_id": id,
			"deliveries": deliveries(r.msg), "subject": r.msg.Subject(),
		})
		body.WriteString(`{"index":{"_index":`)
		writeJSONString(&body, s.cfg.DeadLetter)
		body.WriteString(`,"_id":`)
		writeJSONString(&body, id)
		body.WriteString("}}\n")
		body.Write(doc)
		body.WriteByte('\n')
		s.log.Warn("OpenSearch rejected a document; it goes to the dead-letter index",
			"dead_letter_index", s.cfg.DeadLetter, "id", id, "error_type", errType(r.item), "reason", r.reason)
	}
	out, err := do(ctx, s.client, http.MethodPost, "/_bulk", body.Bytes())
	var resp2 bulkResponse
	if err == nil {
		err = json.Unmarshal(out, &resp2)
	}
	if err == nil && resp2.Errors {
		err = errors.New("the dead-letter index refused some documents")
	}
	for _, r := range rejected {
		if err != nil {
			s.nak(r.msg)
			continue
		}
		s.metrics.docs.WithLabelValues("dead_lettered").Inc()
		s.metrics.namespace(r.msg.Subject(), "dead_lettered")
		s.ack(r.msg)
	}
	if err != nil {
		s.log.Error("writing to the dead-letter index failed; the documents are retried", "err", err)
	}
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

func (s *Sink) nakAll(msgs []jetstream.Msg, delay time.Duration) {
	for _, m := range msgs {
		if err := m.NakWithDelay(jitter(delay)); err != nil {
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

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s)
	b.Write(q)
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

type metrics struct {
	bulkRequests, docs, errors *prometheus.CounterVec
	bulkSeconds                prometheus.Histogram
	nsDocs                     *prometheus.CounterVec

	nsMu   sync.Mutex // guards nsSeen
	nsSeen map[string]bool
}

// maxNamespaces bounds the namespace label of
// podlogs_aggregator_namespace_documents_total; later namespaces are counted
// under "_other". Namespaces are few and long-lived in a cluster; pods are
// many and short-lived, so they are never a label.
const maxNamespaces = 500

// namespace counts one document of the namespace its subject names
// (<prefix>.<namespace>: a namespace name has no dots).
func (m *metrics) namespace(subject, outcome string) {
	ns := subject[strings.LastIndexByte(subject, '.')+1:]
	m.nsMu.Lock()
	if !m.nsSeen[ns] {
		if len(m.nsSeen) >= maxNamespaces {
			ns = "_other"
		} else {
			m.nsSeen[ns] = true
		}
	}
	m.nsMu.Unlock()
	m.nsDocs.WithLabelValues(ns, outcome).Inc()
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		bulkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_bulk_requests_total", Help: "Bulk requests to OpenSearch by result (ok, failed).",
		}, []string{"result"}),
		docs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_documents_total", Help: "Documents written to OpenSearch by outcome (created, duplicate, retried, dead_lettered).",
		}, []string{"outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_aggregator_opensearch_errors_total", Help: "Per-document errors OpenSearch returned, by its error type.",
		}, []string{"type"}),
		bulkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "podlogs_aggregator_bulk_seconds", Help: "Duration of bulk requests to OpenSearch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}),
	}
	m.nsDocs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlogs_aggregator_namespace_documents_total",
		Help: "Documents written by this replica per namespace and outcome (created, duplicate, dead_lettered); at most 500 namespaces, then _other.",
	}, []string{"namespace", "outcome"})
	m.nsSeen = map[string]bool{}
	for _, o := range []string{"created", "duplicate", "retried", "dead_lettered"} {
		m.docs.WithLabelValues(o)
	}
	reg.MustRegister(m.bulkRequests, m.docs, m.errors, m.bulkSeconds, m.nsDocs)
	return m
}
