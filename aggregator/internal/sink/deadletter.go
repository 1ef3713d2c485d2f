package sink

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
	"github.com/podlogs/podlogs/internal/docmsg"
)

// Why a document goes to the dead-letter index: the values of the reason
// label of podlogs_aggregator_dead_letters_total. Each is a refusal that
// would come again; none is retried.
const (
	reasonRejected          = "rejected"            // OpenSearch refused the document (mapping conflict, parse error)
	reasonTooManyDeliveries = "too_many_deliveries" // 429/5xx on the --max-deliveries-th delivery
	reasonRequestTooLarge   = "request_too_large"   // 413 for a request of this document alone
	reasonRequestRefused    = "request_refused"     // 400 for a request of this document alone
	reasonUnreadable        = "unreadable_message"  // a JetStream message not in docmsg's format
	reasonUnpublishable     = "unpublishable"       // the buffer refused its message (ingest sent it as a dead letter)
)

var deadLetterReasons = []string{reasonRejected, reasonTooManyDeliveries, reasonRequestTooLarge, reasonRequestRefused, reasonUnreadable, reasonUnpublishable}

// Why a dead letter is dropped: the reason label of
// podlogs_aggregator_dead_letters_dropped_total.
const (
	dropRefused = "dead_letter_refused" // the dead-letter index refused it too (4xx)
)

// rejection is a document bound for the dead-letter index.
type rejection struct {
	held   *held
	doc    docmsg.Doc
	item   bulkItem
	kind   string // one of the reasons above
	reason string // what OpenSearch or ingest said
}

// deadLetterEntry is a dead letter as the dead-letter index holds it.
type deadLetterEntry struct {
	Timestamp  string `json:"@timestamp"`
	Index      string `json:"index"`
	ErrorType  string `json:"error_type"`
	Reason     string `json:"reason"`
	Kind       string `json:"dead_letter_reason"`
	Status     int    `json:"status"`
	Document   string `json:"document"`
	DocBytes   int    `json:"document_bytes"`
	DocCut     bool   `json:"document_truncated,omitempty"`
	DocumentID string `json:"document_id"`
	Deliveries uint64 `json:"deliveries"`
	Subject    string `json:"subject"`
}

// deadLetter stores rejected documents in the dead-letter index with the
// reason, in requests of at most BulkBytes; each keeps at most
// MaxDocumentBytes of its document. A request that fails for a passing
// reason marks its documents' messages for a retry; a dead letter refused
// for good is dropped, counted and logged.
func (w *writer) deadLetter(ctx context.Context, rejected []rejection) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	keep := cmp.Or(w.cfg.MaxDocumentBytes, 1<<20)
	var body bytes.Buffer
	for start := 0; start < len(rejected); {
		body.Reset()
		end := start
		for ; end < len(rejected); end++ {
			line := w.deadLetterLine(rejected[end], now, keep)
			if end > start && body.Len()+len(line) > w.cfg.BulkBytes {
				break
			}
			body.Write(line)
		}
		w.sendDeadLetters(ctx, body.Bytes(), rejected[start:end])
		start = end
	}
}

// deadLetterLine is the bulk action and document of one dead letter.
func (w *writer) deadLetterLine(r rejection, now string, keep int) []byte {
	doc := r.doc.Data
	cut := len(doc) > keep
	if cut {
		doc = doc[:keep]
		for len(doc) > 0 && !utf8.Valid(doc[max(0, len(doc)-utf8.UTFMax):]) {
			doc = doc[:len(doc)-1] // not in the middle of a character
		}
	}
	id := string(r.doc.ID)
	entry, _ := json.Marshal(deadLetterEntry{
		Timestamp: now, Index: w.idx.name(r.doc.Data), ErrorType: errType(r.item), Reason: r.reason, Kind: r.kind,
		Status: r.item.Status, Document: string(doc), DocBytes: len(r.doc.Data), DocCut: cut, DocumentID: id,
		Deliveries: deliveries(r.held.msg), Subject: r.held.msg.Subject(),
	})
	var b bytes.Buffer
	b.WriteString(`{"index":{"_index":`)
	writeJSONString(&b, w.cfg.DeadLetter)
	b.WriteString(`,"_id":`)
	writeJSONString(&b, id)
	b.WriteString("}}\n")
	b.Write(entry)
	b.WriteByte('\n')
	w.log.Warn("a document goes to the dead-letter index", "dead_letter_index", w.cfg.DeadLetter, "id", id,
		"reason", r.kind, "error_type", errType(r.item), "detail", r.reason)
	return b.Bytes()
}

// sendDeadLetters writes one request of dead letters and settles them.
func (w *writer) sendDeadLetters(ctx context.Context, body []byte, rejected []rejection) {
	out, err := osrequest.Do(ctx, w.client, http.MethodPost, "/_bulk?filter_path=items.*.status,items.*.error.type,items.*.error.reason", body)
	var resp bulkResponse
	if err == nil {
		if err = json.Unmarshal(out, &resp); err == nil && len(resp.Items) != len(rejected) {
			err = fmt.Errorf("bulk response of %d items for %d dead letters", len(resp.Items), len(rejected))
		}
	}
	if err != nil {
		if kind := refusedForGood(err); kind != "" {
			for _, r := range rejected {
				w.drop(r, err.Error())
			}
			return
		}
		for _, r := range rejected {
			r.held.retry = true
		}
		w.log.Error("writing to the dead-letter index failed; the documents are retried", "err", err)
		return
	}
	for i, r := range rejected {
		it := resp.Items[i].Index
		switch st := it.Status; {
		case st/100 == 2:
			w.metrics.deadLettered.Inc()
			w.metrics.deadLetters.WithLabelValues(r.kind).Inc()
			w.cfg.Accounting.AddDocument(r.held.msg.Subject(), r.doc.Data, accounting.DeadLettered)
		case st == http.StatusTooManyRequests || st >= 500 || st == http.StatusUnauthorized || st == http.StatusForbidden:
			r.held.retry = true
			w.log.Error("writing to the dead-letter index failed; the document is retried", "status", st, "reason", reasonOf(it))
		default:
			w.drop(r, fmt.Sprintf("%d %s: %s", st, errType(it), reasonOf(it)))
		}
	}
}

// drop gives up on a dead letter the dead-letter index refused for good:
// retrying it would hold its message, and the stream, forever.
func (w *writer) drop(r rejection, why string) {
	w.metrics.dropped.WithLabelValues(dropRefused).Inc()
	w.log.Error("the dead-letter index refused a dead letter for good; the document is dropped",
		"dead_letter_index", w.cfg.DeadLetter, "id", string(r.doc.ID), "reason", r.kind, "detail", r.reason, "refusal", why,
		"fix", "check the dead-letter index's mapping and settings (its template is podlogs')")
}
