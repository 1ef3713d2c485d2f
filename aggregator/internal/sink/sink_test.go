package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/internal/docmsg"
	"github.com/podlogs/podlogs/internal/testkit/natstest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

func TestMain(m *testing.M) { ostest.Main(m) }

type rig struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	sink   *Sink
	index  string
	osURL  string
	cancel context.CancelFunc
	done   chan struct{}

	// perMessage documents go in one message, as ingest batches them.
	perMessage int
	pending    []docmsg.Doc
	sentMsgs   uint64
	sentDocs   int
}

// formats are two ways ingest cuts messages: several documents of a batch
// and namespace, or a document alone (one larger than --nats-message-bytes).
var formats = []struct {
	name       string
	perMessage int
}{{"eight documents a message", 8}, {"one document a message", 1}}

// start runs a sink from a fresh stream into a fresh index, through osURL
// (the real node, or a proxy in front of it).
func start(t *testing.T, osURL string, dupWindow time.Duration, opts ...func(*Config)) *rig {
	t.Helper()
	index := ostest.Index(t)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	ctx := context.Background()
	st, err := buffer.EnsureStream(ctx, js, buffer.StreamConfig{
		Name: "T", SubjectPrefix: "t.docs", MaxBytes: 64 << 20, MaxAge: time.Hour, Duplicates: dupWindow, Replicas: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", ConsumerConfig("writer", "t.docs.>", 1000, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	client, err := opensearch.NewClient(opensearch.Config{Addresses: []string{osURL}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Index: index, DeadLetter: index + "-dlq", Workers: 2, BulkDocs: 50, BulkBytes: 1 << 20,
		FlushInterval: 50 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := New(cfg, client, cons, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	runCtx, cancel := context.WithCancel(ctx)
	r := &rig{js: js, stream: st, sink: s, index: index, osURL: osURL, cancel: cancel, done: make(chan struct{}), perMessage: 8}
	go func() { defer close(r.done); s.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// publish adds a document to the next message, and sends the message once
// it holds perMessage documents.
func (r *rig) publish(t *testing.T, id string, doc string) {
	t.Helper()
	r.sentDocs++
	r.pending = append(r.pending, docmsg.Doc{ID: []byte(id), Data: []byte(doc)})
	if len(r.pending) == r.perMessage {
		r.flush(t)
	}
}

// message is ingest's message of docs for namespace ui.
func message(docs []docmsg.Doc) *nats.Msg {
	var w docmsg.Writer
	w.Reset(nil)
	for _, d := range docs {
		w.End(append(w.Begin(d.ID), d.Data...))
	}
	return w.Msg("t.docs.ui")
}

// flush sends the documents published since the last message.
func (r *rig) flush(t *testing.T) {
	t.Helper()
	if len(r.pending) == 0 {
		return
	}
	m := message(r.pending)
	r.pending = r.pending[:0]
	r.send(t, m)
}

func (r *rig) send(t *testing.T, m *nats.Msg) {
	t.Helper()
	ack, err := r.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate {
		r.sentMsgs++
	}
}

func doc(i int, offset any) string {
	b, _ := json.Marshal(map[string]any{
		"@timestamp": "2026-11-25T08:00:00.000Z", "time": "2026-11-25T08:00:00.000000001Z", "stream": "stdout",
		"log":        fmt.Sprintf("line %d", i),
		"kubernetes": map[string]any{"pod_name": "ui-1", "namespace_name": "ui"},
		"podlogs":    map[string]any{"offset": offset},
	})
	return string(b)
}

func count(t *testing.T, osURL, index string) int {
	t.Helper()
	http.Post(osURL+"/"+index+"/_refresh", "application/json", nil)
	resp, err := http.Get(osURL + "/" + index + "/_count")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Count int }
	json.NewDecoder(resp.Body).Decode(&r)
	return r.Count
}

// deadLetter is a document of the dead-letter index, as the sink writes it.
type deadLetter struct {
	ErrorType  string `json:"error_type"`
	Reason     string `json:"reason"`
	Status     int    `json:"status"`
	Deliveries int    `json:"deliveries"`
	Document   string `json:"document"`

	DocumentBytes     int  `json:"document_bytes"`
	DocumentTruncated bool `json:"document_truncated"`
}

// getDeadLetter reads the dead letter of document id from index's dead-letter index.
func getDeadLetter(t *testing.T, osURL, index, id string) deadLetter {
	t.Helper()
	resp, err := http.Get(osURL + "/" + index + "-dlq/_doc/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Source deadLetter `json:"_source"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("dead letter %s: %v", id, err)
	}
	return got.Source
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settled sends what is pending and waits until the consumer has every
// message acked; docs is the number of documents published so far.
func (r *rig) settled(t *testing.T, docs int) {
	t.Helper()
	if r.sentDocs != docs {
		t.Fatalf("BUG: %d documents published, the test counts %d", r.sentDocs, docs)
	}
	r.flush(t)
	n := r.sentMsgs
	waitFor(t, fmt.Sprintf("%d messages acked", n), func() bool {
		info, err := r.js.Consumer(context.Background(), "T", "writer")
		if err != nil {
			return false
		}
		ci, err := info.Info(context.Background())
		return err == nil && ci.AckFloor.Stream == n && ci.NumAckPending == 0 && ci.NumPending == 0
	})
}

func TestWritesEachDocumentOnceAndAcksDuplicates(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			osURL := ostest.URL(t)
			ledger := accounting.New(accounting.Config{}, prometheus.NewRegistry())
			r := start(t, osURL, 100*time.Millisecond, func(c *Config) { c.Accounting = ledger })
			r.perMessage = f.perMessage
			for i := range 120 {
				r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
			}
			r.settled(t, 120)
			time.Sleep(200 * time.Millisecond) // past the duplicate window: JetStream stores them again
			for i := range 30 {
				r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
			}
			r.settled(t, 150)
			if n := count(t, osURL, r.index); n != 120 {
				t.Fatalf("index holds %d documents, want 120", n)
			}
			if c := testutil.ToFloat64(r.sink.metrics.docs.WithLabelValues("created")); c != 120 {
				t.Fatalf("created = %v", c)
			}
			if d := testutil.ToFloat64(r.sink.metrics.docs.WithLabelValues("duplicate")); d != 30 {
				t.Fatalf("duplicate = %v", d)
			}
			// These documents are not in the layout ingest writes: their pod is unknown.
			if rows := ledger.Snapshot("ui").Rows; len(rows) != 1 || rows[0].Pod != accounting.UnknownPod ||
				rows[0].Indexed != 120 || rows[0].Duplicate != 30 {
				t.Fatalf("accounting of namespace ui: %+v", rows)
			}
		})
	}
}

func TestMappingConflictGoesToDeadLetterIndex(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			osURL := ostest.URL(t)
			r := start(t, osURL, time.Minute)
			r.perMessage = f.perMessage
			for i := range 20 {
				if i == 7 {
					r.publish(t, "bad", doc(i, map[string]any{"an": "object where a number belongs"}))
					continue
				}
				r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
			}
			r.settled(t, 20)
			if n := count(t, osURL, r.index); n != 19 {
				t.Fatalf("index holds %d documents, want the 19 good ones", n)
			}
			if n := count(t, osURL, r.index+"-dlq"); n != 1 {
				t.Fatalf("dead-letter index holds %d documents, want 1", n)
			}
			got := getDeadLetter(t, osURL, r.index, "bad")
			if got.ErrorType != "mapper_parsing_exception" || got.Status != 400 ||
				!strings.Contains(got.Reason, "podlogs.offset") || !strings.Contains(got.Document, "line 7") {
				t.Fatalf("dead letter %+v", got)
			}
		})
	}
}

// A proxy in front of the real node that can answer 503 for everything, as
// a cluster in trouble does.
func TestOutageAcksNothingThenDeliversEverything(t *testing.T) {
	osURL := ostest.URL(t)
	target, _ := url.Parse(osURL)
	var down atomic.Bool
	var refused atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if down.Load() {
			refused.Add(1)
			io.Copy(io.Discard, req.Body)
			http.Error(w, `{"error":"cluster unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	defer srv.Close()

	r := start(t, srv.URL, time.Minute)
	waitFor(t, "templates installed", r.sink.Ready)
	down.Store(true)
	for i := range 100 {
		r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
	}
	waitFor(t, "bulk requests refused", func() bool { return refused.Load() >= 5 })
	cons, _ := r.js.Consumer(context.Background(), "T", "writer")
	ci, _ := cons.Info(context.Background())
	if ci.AckFloor.Stream != 0 {
		t.Fatalf("messages acked during the outage: ack floor %d", ci.AckFloor.Stream)
	}
	down.Store(false)
	r.settled(t, 100)
	if n := count(t, osURL, r.index); n != 100 {
		t.Fatalf("index holds %d documents after the outage, want 100", n)
	}
}

// poisonProxy forwards to the real node, except that in bulk requests the
// create of id "poison" is answered 429 every time, as a shard that keeps
// rejecting one document would.
func poisonProxy(t *testing.T, osURL string) (string, *atomic.Int64) {
	return refusingProxy(t, osURL, `{"create":{"_id":"poison","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}}`, -1)
}

// refusingProxy answers the document with id "poison" with item, the first
// times times (-1: always), and passes everything else to the node.
func refusingProxy(t *testing.T, osURL, item string, times int64) (string, *atomic.Int64) {
	t.Helper()
	target, _ := url.Parse(osURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refusals atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/_bulk" {
			proxy.ServeHTTP(w, req)
			return
		}
		body, _ := io.ReadAll(req.Body)
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		var keep []string
		poisonAt := -1
		for i := 0; i+1 < len(lines); i += 2 {
			if strings.Contains(lines[i], `"create"`) && strings.Contains(lines[i], `"_id":"poison"`) {
				poisonAt = i / 2
				continue
			}
			keep = append(keep, lines[i], lines[i+1])
		}
		if poisonAt < 0 || (times >= 0 && refusals.Load() >= times) {
			req.Body = io.NopCloser(strings.NewReader(string(body)))
			req.ContentLength = int64(len(body))
			proxy.ServeHTTP(w, req)
			return
		}
		refusals.Add(1)
		var items []json.RawMessage
		if len(keep) > 0 {
			resp, err := http.Post(osURL+"/_bulk", "application/json", strings.NewReader(strings.Join(keep, "\n")+"\n"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			var r struct {
				Items []json.RawMessage `json:"items"`
			}
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			items = r.Items
		}
		rejected := json.RawMessage(item)
		items = append(items[:poisonAt], append([]json.RawMessage{rejected}, items[poisonAt:]...)...)
		json.NewEncoder(w).Encode(map[string]any{"errors": true, "items": items})
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &refusals
}

// A document refused with 429 on every delivery goes to the dead-letter
// index on its MaxDeliveries-th delivery, with the reason; the others of its
// bulk requests are indexed, and nothing is left unacked.
func TestTooManyDeliveriesGoToDeadLetterIndex(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			osURL := ostest.URL(t)
			proxyURL, refusals := poisonProxy(t, osURL)
			r := start(t, proxyURL, time.Minute, func(c *Config) { c.MaxDeliveries = 4 })
			r.perMessage = f.perMessage
			for i := range 30 {
				if i == 11 {
					r.publish(t, "poison", doc(i, i))
					continue
				}
				r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
			}
			r.settled(t, 30)
			if n := refusals.Load(); n != 4 {
				t.Fatalf("the poison document was refused %d times, want 4 (MaxDeliveries)", n)
			}
			if n := count(t, osURL, r.index); n != 29 {
				t.Fatalf("index holds %d documents, want the 29 others", n)
			}
			if n := count(t, osURL, r.index+"-dlq"); n != 1 {
				t.Fatalf("dead-letter index holds %d documents, want 1", n)
			}
			got := getDeadLetter(t, osURL, r.index, "poison")
			if got.Status != 429 || got.Deliveries != 4 || !strings.Contains(got.Reason, "delivered 4 times") ||
				!strings.Contains(got.Reason, "rejected execution") || !strings.Contains(got.Document, "line 11") {
				t.Fatalf("dead letter %+v", got)
			}
			if d := testutil.ToFloat64(r.sink.metrics.docs.WithLabelValues("dead_lettered")); d != 1 {
				t.Fatalf("dead_lettered = %v", d)
			}
		})
	}
}

// A 403 on an item is the operator's to fix (the role lacks a permission):
// the document is retried, never dead-lettered, however often it comes back
// — the dead-letter index would refuse it too — and indexed once the
// permission is there.
func TestPermissionDeniedIsRetriedNotDeadLettered(t *testing.T) {
	osURL := ostest.URL(t)
	const denied = `{"create":{"_id":"poison","status":403,"error":{"type":"security_exception","reason":"no permissions for [indices:data/write/bulk[s]] and User [name=podlogs]"}}}`
	proxyURL, refusals := refusingProxy(t, osURL, denied, 6)
	r := start(t, proxyURL, time.Minute, func(c *Config) { c.MaxDeliveries = 3 })
	for i := range 10 {
		id := fmt.Sprintf("id-%03d", i)
		if i == 4 {
			id = "poison"
		}
		r.publish(t, id, doc(i, i))
	}
	r.settled(t, 10)
	if n := refusals.Load(); n != 6 {
		t.Fatalf("the document was refused %d times, want 6 (past MaxDeliveries, then let through)", n)
	}
	if n := count(t, osURL, r.index); n != 10 {
		t.Fatalf("index holds %d documents, want all 10", n)
	}
	if d := testutil.ToFloat64(r.sink.metrics.docs.WithLabelValues("dead_lettered")); d != 0 {
		t.Fatalf("dead_lettered = %v, want 0", d)
	}
}

// A message that cannot be read (its documents do not add up to its
// header) goes to the dead-letter index whole, with the reason, and is
// acked; the messages around it are written.
func TestUnreadableMessageGoesToDeadLetterIndex(t *testing.T) {
	osURL := ostest.URL(t)
	r := start(t, osURL, time.Minute)
	for i := range 16 {
		r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
	}
	r.send(t, &nats.Msg{Subject: "t.docs.ui", Header: nats.Header{"Nats-Msg-Id": []string{"broken"}, docmsg.HeaderDocs: []string{"3"}},
		Data: []byte("\x00\x00\x00\x02id{\"log\":\"cut short")})
	for i := 16; i < 24; i++ {
		r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
	}
	r.sentDocs++ // the broken message, settled as one
	r.settled(t, 25)
	if n := count(t, osURL, r.index); n != 24 {
		t.Fatalf("index holds %d documents, want 24", n)
	}
	got := getDeadLetter(t, osURL, r.index, "broken")
	if got.ErrorType != "unreadable_message" || !strings.Contains(got.Reason, "malformed document message") ||
		!strings.Contains(got.Document, "cut short") {
		t.Fatalf("dead letter %+v", got)
	}
}
