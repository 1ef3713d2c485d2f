// Package sink moves documents from the JetStream buffer into OpenSearch.
//
// Every aggregator replica pulls from one shared durable pull consumer, so
// each message goes to one replica. In a replica, one goroutine pulls
// continuously (prefetching at most one batch) and cuts batches by count,
// bytes or flush interval; each worker takes a batch, writes it with one
// _bulk request of "create" operations under the document's own id (to the
// index, the daily index its @timestamp names, or the data stream), and
// decides per document from the item's result:
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
// loses nothing; ack_wait must exceed the slowest bulk request. A replica
// stopped (its context done) finishes its bulk requests in flight and naks
// what it pulled but did not write, for another replica to take at once.
// Messages held are bounded: (workers + 1) × BulkDocs per replica, and
// max_ack_pending across replicas.
package sink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	Index         string
	Mode          IndexMode  // a plain index (or date pattern), or a data stream
	ISM           ISMPolicy  // lifecycle policy installed with the template, if any
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

	// Benchmark hooks, when set: started once the templates are installed,
	// settled after each bulk request whose documents were all answered.
	started func()
	settled func(docs int)
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
// writes until ctx is done.
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
	if s.started != nil {
		s.started()
	}
	// Bulk requests outlive ctx, so that a stop never wastes one OpenSearch
	// has already done; the grace goroutine bounds them.
	writeCtx, cancelWrite := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrite()
	want := make(chan struct{})           // a worker is ready for a batch
	batches := make(chan []jetstream.Msg) // the batch cut for it
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(batches)
		s.pull(ctx, want, batches)
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
	return nil
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

// pull cuts batches from one continuous pull on the consumer and hands
// them to the workers that ask (want) until ctx is done. A batch closes at
// BulkDocs documents, at about BulkBytes of bulk body, or FlushInterval
// after its first document. The iterator prefetches in the background, at
// most BulkDocs messages: a replica holds at most (workers + 1) × BulkDocs.
func (s *Sink) pull(ctx context.Context, want <-chan struct{}, batches chan<- []jetstream.Msg) {
	backoff := s.cfg.BackoffMin
	for ctx.Err() == nil {
		it, err := s.cons.Messages(jetstream.PullMaxMessages(s.cfg.BulkDocs))
		if err == nil {
			err = s.cut(ctx, it, want, batches)
			if ctx.Err() != nil {
				s.release(it)
				return
			}
			it.Stop()
		}
		s.log.Warn("pull from JetStream failed; retrying", "err", err, "retry_in", backoff)
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

// cut reads it into batches, one for each want, until ctx is done or it
// fails.
func (s *Sink) cut(ctx context.Context, it jetstream.MessagesContext, want <-chan struct{}, batches chan<- []jetstream.Msg) error {
	var next jetstream.Msg // read, but past the byte limit of the batch before
	for {
		select {
		case <-want:
		case <-ctx.Done():
			if next != nil {
				s.nakAll([]jetstream.Msg{next}, s.cfg.BackoffMin)
			}
			return ctx.Err()
		}
		if next == nil {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				return fmt.Errorf("next message: %w", err)
			}
			next = m
		}
		batch := make([]jetstream.Msg, 1, s.cfg.BulkDocs)
		batch[0], next = next, nil
		size := bulkLineSize(batch[0])
		flushCtx, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval)
		for len(batch) < s.cfg.BulkDocs {
			m, err := it.Next(jetstream.NextContext(flushCtx))
			if err != nil {
				if ctx.Err() == nil && flushCtx.Err() != nil {
					break // flush interval over
				}
				cancel()
				s.nakAll(batch, s.cfg.BackoffMin)
				return fmt.Errorf("next message: %w", err)
			}
			if n := bulkLineSize(m); size+n <= s.cfg.BulkBytes {
				batch, size = append(batch, m), size+n
				continue
			}
			next = m
			break
		}
		cancel()
		select {
		case batches <- batch:
		case <-ctx.Done():
			s.nakAll(batch, s.cfg.BackoffMin)
			if next != nil {
				s.nakAll([]jetstream.Msg{next}, s.cfg.BackoffMin)
			}
			return ctx.Err()
		}
	}
}

// bulkLineSize is about what m adds to a bulk body.
func bulkLineSize(m jetstream.Msg) int { return len(m.Data()) + 128 }

// release gives back what the iterator has prefetched: nak'ed, it goes to
// whichever writer pulls next instead of waiting out ack_wait.
func (s *Sink) release(it jetstream.MessagesContext) {
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		s.nakAll([]jetstream.Msg{m}, s.cfg.BackoffMin)
	}
}

// install puts the dead-letter template first: its priority is above the
// main template's, whose pattern (a date pattern's "<name>-*") may match
// the dead-letter index too, and OpenSearch refuses overlapping templates
// of equal priority (as the dead-letter template of an older version has).
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

// work writes the batches pull cuts; a worker has one bulk request in
// flight at a time. Bulk requests use writeCtx, so that the one in flight
// when ctx is done finishes; batches received after that are nak'ed.
func (s *Sink) work(ctx, writeCtx context.Context, want chan<- struct{}, batches <-chan []jetstream.Msg) {
	backoff := s.cfg.BackoffMin
	var body bytes.Buffer
	idx := newIndexNamer(s.cfg.Index)
	for {
		select {
		case want <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msgs, open := <-batches
		if !open {
			return
		}
		if ctx.Err() != nil {
			s.nakAll(msgs, s.cfg.BackoffMin)
			continue
		}
		// Split by bytes; a request failing as a whole stops the rest of the batch.
		ok := true
		for start := 0; start < len(msgs) && ok; {
			end := s.fill(&body, idx, msgs, start)
			ok = s.write(writeCtx, body.Bytes(), msgs[start:end])
			if !ok {
				s.nakAll(msgs[start:], backoff)
			} else if s.settled != nil {
				s.settled(end - start)
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
// Each document goes to the index idx names for it.
func (s *Sink) fill(body *bytes.Buffer, idx *indexNamer, msgs []jetstream.Msg, start int) int {
	body.Reset()
	i := start
	for ; i < len(msgs); i++ {
		m := msgs[i]
		data := m.Data()
		if i > start && body.Len()+len(data)+128 > s.cfg.BulkBytes {
			break
		}
		body.WriteString(`{"create":{"_index":`)
		body.Write(idx.quoted(data))
		body.WriteString(`,"_id":`)
		writeJSONString(body, m.Headers().Get(jetstream.MsgIDHeader))
		body.WriteString("}}\n")
		body.Write(data)
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

// bulkPath asks OpenSearch to answer only what write reads: an item is then
// about 25 bytes instead of 200, less to encode and to decode.
const bulkPath = "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"

// write sends one bulk request and settles each message by its item's
// result. It returns false if the request failed as a whole.
func (s *Sink) write(ctx context.Context, body []byte, msgs []jetstream.Msg) bool {
	start := time.Now()
	out, err := osrequest.Do(ctx, s.client, http.MethodPost, bulkPath, body)
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
	var denied int
	var deniedReason string
	for i, it := range resp.Items {
		m := msgs[i]
		switch st := it.Create.Status; {
		case st == http.StatusOK || st == http.StatusCreated:
			s.metrics.docs.WithLabelValues("created").Inc()
			s.cfg.Accounting.AddDocument(m.Subject(), m.Data(), accounting.Indexed)
			s.ack(m)
		case st == http.StatusConflict:
			s.metrics.docs.WithLabelValues("duplicate").Inc()
			s.cfg.Accounting.AddDocument(m.Subject(), m.Data(), accounting.Duplicate)
			s.ack(m)
		case st == http.StatusUnauthorized || st == http.StatusForbidden:
			// The role lacks a permission: the operator's to fix, and the
			// dead-letter index would refuse the document too. Retry it,
			// whatever MaxDeliveries says; it is indexed once the role allows.
			s.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
			s.metrics.docs.WithLabelValues("retried").Inc()
			denied, deniedReason = denied+1, reasonOf(it.Create)
			s.nak(m)
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
	if denied > 0 {
		s.log.Error("OpenSearch denied the writer permission; the documents stay in the buffer and are retried: "+
			"grant the user's role create_index and write on the index pattern", "docs", denied, "reason", deniedReason)
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
	idx := newIndexNamer(s.cfg.Index)
	for _, r := range rejected {
		id := r.msg.Headers().Get(jetstream.MsgIDHeader)
		doc, _ := json.Marshal(map[string]any{
			"@timestamp": now, "index": idx.name(r.msg.Data()), "error_type": errType(r.item), "reason": r.reason,
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
	out, err := osrequest.Do(ctx, s.client, http.MethodPost, "/_bulk", body.Bytes())
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
		s.cfg.Accounting.AddDocument(r.msg.Subject(), r.msg.Data(), accounting.DeadLettered)
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

// writeJSONString writes s quoted. Ids and index names need no escaping:
// they are written as they are, without the allocation of json.Marshal.
func writeJSONString(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			b.Write(q)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
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

type metrics struct {
	bulkRequests, docs, errors *prometheus.CounterVec
	bulkSeconds                prometheus.Histogram
	// Per namespace (and per pod): Config.Accounting.
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
	for _, o := range []string{"created", "duplicate", "retried", "dead_lettered"} {
		m.docs.WithLabelValues(o)
	}
	reg.MustRegister(m.bulkRequests, m.docs, m.errors, m.bulkSeconds)
	return m
}
