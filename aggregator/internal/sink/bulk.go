package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
	"github.com/podlogs/podlogs/internal/docmsg"
)

// work writes the batches pull cuts; a worker has one bulk request in
// flight at a time. Bulk requests use writeCtx, so that the one in flight
// when ctx is done finishes; batches received after that are nak'ed.
func (s *Sink) work(ctx, writeCtx context.Context, want chan<- struct{}, batches <-chan []*held) {
	backoff := s.cfg.BackoffMin
	w := &writer{Sink: s, idx: newIndexNamer(s.cfg.Index)}
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
		if w.writeBatch(writeCtx, msgs, backoff) {
			backoff = s.cfg.BackoffMin
			continue
		}
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

// writer is one worker's state: its request body and index names, reused
// from request to request.
type writer struct {
	*Sink
	body bytes.Buffer
	idx  *indexNamer
}

// writeBatch writes msgs in bulk requests of at most BulkBytes and settles
// each message. It returns false if a request failed as a whole for a
// passing reason: the messages not yet settled are nak'ed with delay.
func (w *writer) writeBatch(ctx context.Context, msgs []*held, delay time.Duration) bool {
	for start := 0; start < len(msgs); {
		end := w.fill(msgs, start)
		rejected, err := w.send(ctx, msgs[start:end])
		switch {
		case err == nil:
			w.settle(ctx, msgs[start:end], rejected)
		case refusedForGood(err) != "":
			w.writeApart(ctx, msgs[start:end], err)
		default:
			w.nakAll(msgs[start:], delay)
			return false
		}
		start = end
	}
	return true
}

// writeApart writes msgs, which OpenSearch refused as one request for what
// it holds (err), one message at a time, and a message refused alone one
// document at a time: only a document refused alone is dead-lettered.
func (w *writer) writeApart(ctx context.Context, msgs []*held, err error) {
	w.metrics.split.Inc()
	w.log.Warn("OpenSearch refused a bulk request for what it holds; writing its documents apart to find the ones at fault",
		"messages", len(msgs), "err", err, "fix", "keep --bulk-bytes below OpenSearch's http.max_content_length and any proxy's request limit")
	for _, h := range msgs {
		if !h.indexed() {
			w.settle(ctx, []*held{h}, nil)
			continue
		}
		if len(msgs) > 1 {
			w.fillDocs(h.docs)
			rejected, err := w.send(ctx, []*held{h})
			if err == nil {
				w.settle(ctx, []*held{h}, rejected)
				continue
			}
			if refusedForGood(err) == "" {
				h.retry = true
				w.settle(ctx, []*held{h}, nil)
				continue
			}
		}
		var rejected []rejection
		for j := range h.docs {
			one := &held{msg: h.msg, docs: h.docs[j : j+1]}
			w.fillDocs(one.docs)
			rej, err := w.send(ctx, []*held{one})
			for _, r := range rej {
				r.held = h
				rejected = append(rejected, r)
			}
			if kind := refusedForGood(err); kind != "" {
				var se *osrequest.StatusError
				errors.As(err, &se)
				rejected = append(rejected, rejection{held: h, doc: h.docs[j], kind: kind, reason: err.Error(),
					item: bulkItem{Status: se.Status, Error: &bulkError{Type: kind}}})
			} else if err != nil {
				h.retry = true // a passing failure: the message comes back whole
				break
			} else if one.retry {
				h.retry = true
			}
		}
		w.settle(ctx, []*held{h}, rejected)
	}
}

// refusedForGood returns the dead-letter reason for a request OpenSearch
// refused as a whole for what it holds, or "" for any other outcome.
func refusedForGood(err error) string {
	var se *osrequest.StatusError
	if !errors.As(err, &se) {
		return ""
	}
	switch se.Status {
	case http.StatusRequestEntityTooLarge:
		return reasonRequestTooLarge
	case http.StatusBadRequest:
		return reasonRequestRefused
	}
	return ""
}

// fill writes bulk lines for the documents of msgs[start:] into the body up
// to the byte limit (at least one message; a message is never split) and
// returns the end of what it took. Each document goes to the index idx
// names for it; messages bound for the dead-letter index add nothing.
func (w *writer) fill(msgs []*held, start int) int {
	w.body.Reset()
	i := start
	for ; i < len(msgs); i++ {
		h := msgs[i]
		if i > start && w.body.Len()+h.bulkSize() > w.cfg.BulkBytes {
			break
		}
		if h.indexed() {
			w.appendDocs(h.docs)
		}
	}
	return i
}

// fillDocs makes the body the bulk lines of docs alone.
func (w *writer) fillDocs(docs []docmsg.Doc) {
	w.body.Reset()
	w.appendDocs(docs)
}

func (w *writer) appendDocs(docs []docmsg.Doc) {
	for _, d := range docs {
		w.body.WriteString(`{"create":{"_index":`)
		w.body.Write(w.idx.quoted(d.Data))
		w.body.WriteString(`,"_id":`)
		writeJSONString(&w.body, d.ID)
		w.body.WriteString("}}\n")
		w.body.Write(d.Data)
		w.body.WriteByte('\n')
	}
}

type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []struct {
		Create bulkItem `json:"create"`
		Index  bulkItem `json:"index"`
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

// bulkPath asks OpenSearch to answer only what send reads: an item is then
// about 25 bytes instead of 200, less to encode and to decode.
const bulkPath = "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason"

// send sends the body (the bulk lines of msgs' indexed documents) and sorts
// the items: documents to retry mark their message, documents refused for
// good are returned. An error means the request failed as a whole.
func (w *writer) send(ctx context.Context, msgs []*held) ([]rejection, error) {
	docs := 0
	for _, h := range msgs {
		if h.indexed() {
			docs += len(h.docs)
		}
	}
	if docs == 0 {
		return nil, nil
	}
	start := time.Now()
	out, err := osrequest.Do(ctx, w.client, http.MethodPost, bulkPath, w.body.Bytes())
	w.metrics.bulkSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		w.metrics.bulkRequests.WithLabelValues("failed").Inc()
		if ctx.Err() == nil && refusedForGood(err) == "" {
			w.log.Warn("bulk request failed; documents stay in the buffer and are retried", "docs", docs, "err", err)
		}
		return nil, err
	}
	var resp bulkResponse
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.Items) != docs {
		w.metrics.bulkRequests.WithLabelValues("failed").Inc()
		w.log.Error("bulk response does not match the request; retrying", "err", err, "items", len(resp.Items), "docs", docs)
		return nil, fmt.Errorf("bulk response of %d items for %d documents: %v", len(resp.Items), docs, err)
	}
	w.metrics.bulkRequests.WithLabelValues("ok").Inc()
	var rejected []rejection
	var denied int
	var deniedReason string
	items := resp.Items
	for _, h := range msgs {
		if !h.indexed() {
			continue
		}
		subject := h.msg.Subject()
		for j, it := range items[:len(h.docs)] {
			d := h.docs[j]
			switch st := it.Create.Status; {
			case st == http.StatusOK || st == http.StatusCreated:
				w.metrics.created.Inc()
				w.cfg.Accounting.AddDocument(subject, d.Data, accounting.Indexed)
			case st == http.StatusConflict:
				w.metrics.duplicate.Inc()
				w.cfg.Accounting.AddDocument(subject, d.Data, accounting.Duplicate)
			case st == http.StatusUnauthorized || st == http.StatusForbidden:
				// The role lacks a permission: the operator's to fix, and the
				// dead-letter index would refuse the document too. Retry it,
				// whatever MaxDeliveries says; it is indexed once the role allows.
				w.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
				w.metrics.retried.Inc()
				denied, deniedReason = denied+1, reasonOf(it.Create)
				h.retry = true
			case st == http.StatusTooManyRequests || st >= 500:
				w.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
				if n := deliveries(h.msg); w.cfg.MaxDeliveries > 0 && n >= uint64(w.cfg.MaxDeliveries) {
					rejected = append(rejected, rejection{held: h, doc: d, item: it.Create, kind: reasonTooManyDeliveries,
						reason: fmt.Sprintf("delivered %d times (--max-deliveries); last error: %s", n, reasonOf(it.Create))})
					continue
				}
				w.metrics.retried.Inc()
				h.retry = true
			default:
				w.metrics.errors.WithLabelValues(errType(it.Create)).Inc()
				rejected = append(rejected, rejection{held: h, doc: d, item: it.Create, kind: reasonRejected, reason: reasonOf(it.Create)})
			}
		}
		items = items[len(h.docs):]
	}
	if denied > 0 {
		w.log.Error("OpenSearch denied the writer permission; the documents stay in the buffer and are retried: "+
			"grant the user's role create_index and write on the index pattern", "docs", denied, "reason", deniedReason)
	}
	return rejected, nil
}

// settle dead-letters what msgs hold for the dead-letter index (rejected
// documents, unreadable messages, ingest's dead letters), then acks each
// message, or naks it if a document is to be written again.
func (w *writer) settle(ctx context.Context, msgs []*held, rejected []rejection) {
	for _, h := range msgs {
		switch {
		case h.bad != nil:
			rejected = append(rejected, rejection{held: h, kind: reasonUnreadable, reason: h.bad.Error(),
				doc:  docmsg.Doc{ID: []byte(h.msg.Headers().Get(docmsg.HeaderMsgID)), Data: h.msg.Data()},
				item: bulkItem{Error: &bulkError{Type: reasonUnreadable}}})
		case h.letter != "":
			for _, d := range h.docs {
				rejected = append(rejected, rejection{held: h, doc: d, kind: reasonUnpublishable, reason: h.letter,
					item: bulkItem{Error: &bulkError{Type: reasonUnpublishable}}})
			}
		}
	}
	if len(rejected) > 0 {
		w.deadLetter(ctx, rejected)
	}
	for _, h := range msgs {
		if h.retry {
			w.nak(h.msg)
		} else {
			w.ack(h.msg)
		}
	}
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
