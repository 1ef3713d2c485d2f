// Package sink moves documents from the JetStream buffer into OpenSearch.
//
// Every aggregator replica pulls from one shared durable pull consumer, so
// each message goes to one replica. A message holds documents (package
// docmsg: a batch's documents of one namespace, or one document in the
// format before batches). In a replica, one goroutine pulls continuously
// (prefetching at most PullBytes) and cuts batches of messages by document
// count, bytes or flush interval; each worker takes a batch, writes it with
// _bulk requests of "create" operations under each document's own id (to
// the index, the daily index its @timestamp names, or the data stream), and
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
// A message is acked once each of its documents is settled (created,
// duplicate or dead-lettered) and nak'ed if any is to be retried: it comes
// back whole, and its documents already written are answered 409. A message
// that cannot be read goes to the dead-letter index as it is.
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
// What a replica holds is bounded: (workers + 1) batches of at most
// BulkDocs documents, PullBytes prefetched, and max_ack_pending messages
// across replicas.
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
	"github.com/podlogs/podlogs/internal/docmsg"
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
	// PullBytes bounds what the continuous pull holds ahead of the
	// workers; it must be at least the largest message (the NATS server's
	// max_payload), or the pull stalls. 0: max(BulkBytes, 2 MiB).
	PullBytes     int
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
	want := make(chan struct{})   // a worker is ready for a batch
	batches := make(chan []*held) // the batch cut for it
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
// after its first message (a message is never split). The iterator
// prefetches in the background, at most PullBytes.
func (s *Sink) pull(ctx context.Context, want <-chan struct{}, batches chan<- []*held) {
	backoff := s.cfg.BackoffMin
	pullBytes := cmp.Or(s.cfg.PullBytes, max(s.cfg.BulkBytes, 2<<20))
	for ctx.Err() == nil {
		it, err := s.cons.Messages(jetstream.PullMaxBytes(pullBytes))
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
func (s *Sink) cut(ctx context.Context, it jetstream.MessagesContext, want <-chan struct{}, batches chan<- []*held) error {
	var next *held // read, but past the limits of the batch before
	for {
		select {
		case <-want:
		case <-ctx.Done():
			if next != nil {
				s.nakAll([]*held{next}, s.cfg.BackoffMin)
			}
			return ctx.Err()
		}
		if next == nil {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				return fmt.Errorf("next message: %w", err)
			}
			next = hold(m)
		}
		batch := []*held{next}
		docs, size := next.count(), next.bulkSize()
		next = nil
		flushCtx, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval)
		for docs < s.cfg.BulkDocs {
			m, err := it.Next(jetstream.NextContext(flushCtx))
			if err != nil {
				if ctx.Err() == nil && flushCtx.Err() != nil {
					break // flush interval over
				}
				cancel()
				s.nakAll(batch, s.cfg.BackoffMin)
				return fmt.Errorf("next message: %w", err)
			}
			h := hold(m)
			if n, b := h.count(), h.bulkSize(); docs+n <= s.cfg.BulkDocs && size+b <= s.cfg.BulkBytes {
				batch, docs, size = append(batch, h), docs+n, size+b
				continue
			}
			next = h
			break
		}
		cancel()
		select {
		case batches <- batch:
		case <-ctx.Done():
			s.nakAll(batch, s.cfg.BackoffMin)
			if next != nil {
				s.nakAll([]*held{next}, s.cfg.BackoffMin)
			}
			return ctx.Err()
		}
	}
}

// held is a message pulled from the consumer, with its documents.
type held struct {
	msg  jetstream.Msg
	docs []docmsg.Doc
	bad  error // the message could not be read: it goes to the dead-letter index whole
	// retry is set when one of the documents is to be written again: the
	// message is nak'ed, not acked.
	retry bool
}

func hold(m jetstream.Msg) *held {
	h := &held{msg: m}
	// The header's count sizes the slice, within what the data can hold.
	n := min(docmsg.Count(m.Headers()), len(m.Data())/docmsg.EntrySize(0, 0)+1)
	h.docs, h.bad = docmsg.Append(make([]docmsg.Doc, 0, n), m.Headers(), m.Data())
	return h
}

// count is how many documents h adds to a batch (a message that cannot be
// read counts as one).
func (h *held) count() int { return max(len(h.docs), 1) }

// bulkSize is about what h adds to a bulk body.
func (h *held) bulkSize() int { return len(h.msg.Data()) + 128*h.count() }

// release gives back what the iterator has prefetched: nak'ed, it goes to
// whichever writer pulls next instead of waiting out ack_wait.
func (s *Sink) release(it jetstream.MessagesContext) {
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		if err := m.NakWithDelay(jitter(s.cfg.BackoffMin)); err != nil {
			s.log.Debug("nak failed", "err", err)
		}
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
func (s *Sink) work(ctx, writeCtx context.Context, want chan<- struct{}, batches <-chan []*held) {
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
				n := 0
				for _, h := range msgs[start:end] {
					n += len(h.docs)
				}
				s.settled(n)
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

// fill writes bulk lines for the documents of msgs[start:] into body up to
// the byte limit (at least one message; a message is never split) and
// returns the end of what it took. Each document goes to the index idx
// names for it.
func (s *Sink) fill(body *bytes.Buffer, idx *indexNamer, msgs []*held, start int) int {
	body.Reset()
	i := start
	for ; i < len(msgs); i++ {
		h := msgs[i]
		if i > start && body.Len()+h.bulkSize() > s.cfg.BulkBytes {
			break
		}
		for _, d := range h.docs {
			body.WriteString(`{"create":{"_index":`)
			body.Write(idx.quoted(d.Data))
			body.WriteString(`,"_id":`)
			writeJSONString(body, d.ID)
			body.WriteString("}}\n")
			body.Write(d.Data)
			body.WriteByte('\n')
		}
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
	Status int        `json:"status"`
	Error  *bulkError `json:"error"`
}

type bulkError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// bulkPath asks OpenSearch to answer only what write reads: an item is then
// about 25 bytes instead of 200, less to encode and to decode.
const bulkPath = "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"

// write sends one bulk request for the documents of msgs and settles each
// message by its documents' results. It returns false if the request
// failed as a whole.
func (s *Sink) write(ctx context.Context, body []byte, msgs []*held) bool {
	var rejected []rejection
	docs := 0
	for _, h := range msgs {
		docs += len(h.docs)
		if h.bad != nil {
			rejected = append(rejected, rejection{held: h, doc: docmsg.Doc{ID: []byte(h.msg.Headers().Get(docmsg.HeaderMsgID)), Data: h.msg.Data()},
				item: bulkItem{Error: &bulkError{Type: "unreadable_message"}}, reason: h.bad.Error()})
		}
	}
	if docs > 0 {
		var ok bool
		if rejected, ok = s.bulk(ctx, body, msgs, docs, rejected); !ok {
			return false
		}
	}
	if len(rejected) > 0 {
		s.deadLetter(ctx, rejected)
	}
	for _, h := range msgs {
		if h.retry {
			s.nak(h.msg)
		} else {
			s.ack(h.msg)
		}
	}
	return true
}

// bulk sends the request and sorts its items: documents to retry mark
// their message, documents refused for good are added to rejected. It
// returns false if the request failed as a whole.
func (s *Sink) bulk(ctx context.Context, body []byte, msgs []*held, docs int, rejected []rejection) ([]rejection, bool) {
	start := time.Now()
	out, err := osrequest.Do(ctx, s.client, http.MethodPost, bulkPath, body)
	s.metrics.bulkSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.bulkRequests.WithLabelValues("failed").Inc()
		if ctx.Err() == nil {
			s.log.Warn("bulk request failed; documents stay in the buffer and are retried", "docs", docs, "err", err)
		}
		return rejected, false
	}
	var resp bulkResponse
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.Items) != docs {
		s.metrics.bulkRequests.WithLabelValues("failed").Inc()
		s.log.Error("bulk response does not match the request; retrying", "err", err, "items", len(resp.Items), "docs", docs)
		return rejected, false
	}
	s.metrics.bulkRequests.WithLabelValues("ok").Inc()
	var denied int
	var deniedReason string
	items := resp.Items
	for _, h := range msgs {
		subject := h.msg.Subject()
		for j, it := range items[:len(h.docs)] {
			d := h.docs[j]
			switch st := it.Create.Status; {
			case st == http.StatusOK || st == http.StatusCreated:
				s.metrics.created.Inc()
				s.cfg.Accounting.AddDocument(subject, d.Data, accounting.Indexed)
			case st == http.StatusConflict:
				s.metrics.duplicate.Inc()
				s.cfg.Accounting.AddDocument(subject, d.Data, accounting.Duplicate)
			case st == http.StatusUnauthorized || st == http.StatusForbidden:
				// The role lacks a permission: the operator's to fix, and the
				// dead-letter index would refuse the document too. Retry it,
				// whatever MaxDeliveries says; it is indexed once the role allows.
				s.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
				s.metrics.retried.Inc()
				denied, deniedReason = denied+1, reasonOf(it.Create)
				h.retry = true
			case st == http.StatusTooManyRequests || st >= 500:
				s.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
				if n := deliveries(h.msg); s.cfg.MaxDeliveries > 0 && n >= uint64(s.cfg.MaxDeliveries) {
					rejected = append(rejected, rejection{held: h, doc: d, item: it.Create,
						reason: fmt.Sprintf("delivered %d times (--max-deliveries); last error: %s", n, reasonOf(it.Create))})
					continue
				}
				s.metrics.retried.Inc()
				h.retry = true
			default:
				s.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
				rejected = append(rejected, rejection{held: h, doc: d, item: it.Create, reason: reasonOf(it.Create)})
			}
		}
		items = items[len(h.docs):]
	}
	if denied > 0 {
		s.log.Error("OpenSearch denied the writer permission; the documents stay in the buffer and are retried: "+
			"grant the user's role create_index and write on the index pattern", "docs", denied, "reason", deniedReason)
	}
	return rejected, true
}

// rejection is a document bound for the dead-letter index.
type rejection struct {
	held   *held
	doc    docmsg.Doc
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
// reason. If that write fails their messages are marked for a retry.
func (s *Sink) deadLetter(ctx context.Context, rejected []rejection) {
	var body bytes.Buffer
	now := time.Now().UTC().Format(time.RFC3339Nano)
	idx := newIndexNamer(s.cfg.Index)
	for _, r := range rejected {
		id := string(r.doc.ID)
		doc, _ := json.Marshal(map[string]any{
			"@timestamp": now, "index": idx.name(r.doc.Data), "error_type": errType(r.item), "reason": r.reason,
			"status": r.item.Status, "document": string(r.doc.Data), "document_id": id,
			"deliveries": deliveries(r.held.msg), "subject": r.held.msg.Subject(),
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
			r.held.retry = true
			continue
		}
		s.metrics.deadLettered.Inc()
		s.cfg.Accounting.AddDocument(r.held.msg.Subject(), r.doc.Data, accounting.DeadLettered)
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

type metrics struct {
	bulkRequests, docs, errors *prometheus.CounterVec
	bulkSeconds                prometheus.Histogram
	// docs by outcome, looked up once: they count every document.
	created, duplicate, retried, deadLettered prometheus.Counter
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
	m.created, m.duplicate = m.docs.WithLabelValues("created"), m.docs.WithLabelValues("duplicate")
	m.retried, m.deadLettered = m.docs.WithLabelValues("retried"), m.docs.WithLabelValues("dead_lettered")
	reg.MustRegister(m.bulkRequests, m.docs, m.errors, m.bulkSeconds)
	return m
}
