package sink

import (
	"context"
	"errors"
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

	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlogs/podlogs/internal/docmsg"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

// limitProxy forwards to the real node and answers 413 to a request body
// over limit bytes, as the front end of a small Amazon OpenSearch Service
// instance does past 10 MiB.
func limitProxy(t *testing.T, osURL string, limit int) (string, *atomic.Int64) {
	t.Helper()
	target, _ := url.Parse(osURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.ContentLength > int64(limit) {
			refused.Add(1)
			io.Copy(io.Discard, req.Body)
			http.Error(w, `{"Message":"Request size exceeded 10485760 bytes"}`, http.StatusRequestEntityTooLarge)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &refused
}

// A bulk request refused as a whole for its size is written apart: the
// documents that fit are indexed, the one that never fits goes to the
// dead-letter index (its copy cut to MaxDocumentBytes), and nothing is
// retried forever.
func TestRequestTooLargeIsWrittenApart(t *testing.T) {
	osURL := ostest.URL(t)
	proxyURL, refused := limitProxy(t, osURL, 64<<10)
	r := start(t, proxyURL, time.Minute, func(c *Config) { c.MaxDocumentBytes = 16 << 10; c.MaxDeliveries = 3 })
	big := doc(13, 13)
	big = strings.Replace(big, "line 13", "line 13 "+strings.Repeat("é", 50<<10), 1)
	for i := range 40 {
		d := doc(i, i)
		if i == 13 {
			d = big
		}
		r.publish(t, fmt.Sprintf("id-%03d", i), d+strings.Repeat(" ", 2<<10)) // about 2 KiB each: the batch passes the limit
	}
	r.settled(t, 40)
	if n := count(t, osURL, r.index); n != 39 {
		t.Fatalf("index holds %d documents, want the 39 that fit", n)
	}
	got := getDeadLetter(t, osURL, r.index, "id-013")
	if got.ErrorType != reasonRequestTooLarge || got.Status != http.StatusRequestEntityTooLarge || !got.DocumentTruncated ||
		got.DocumentBytes != len(big)+2<<10 || len(got.Document) > 16<<10 || !strings.HasPrefix(got.Document, big[:100]) {
		t.Fatalf("dead letter %+v (document of %d bytes)", got, len(got.Document))
	}
	if n := testutil.ToFloat64(r.sink.metrics.deadLetters.WithLabelValues(reasonRequestTooLarge)); n != 1 {
		t.Fatalf("dead letters for request_too_large = %v", n)
	}
	if testutil.ToFloat64(r.sink.metrics.split) == 0 || refused.Load() == 0 {
		t.Fatal("no request was refused and split: the test does not test")
	}
}

// A dead letter the dead-letter index refuses for good is dropped, counted
// and logged, and its message acked: a stream never waits on it.
func TestDeadLetterRefusedForGoodIsDropped(t *testing.T) {
	osURL := ostest.URL(t)
	proxyURL, _ := limitProxy(t, osURL, 32<<10)
	r := start(t, proxyURL, time.Minute, func(c *Config) { c.MaxDocumentBytes = 1 << 20 })
	r.perMessage = 1
	r.publish(t, "small", doc(1, 1))
	r.publish(t, "huge", strings.Replace(doc(2, 2), "line 2", strings.Repeat("x", 64<<10), 1))
	r.settled(t, 2)
	if n := count(t, osURL, r.index); n != 1 {
		t.Fatalf("index holds %d documents, want 1", n)
	}
	if n := testutil.ToFloat64(r.sink.metrics.dropped.WithLabelValues(dropRefused)); n != 1 {
		t.Fatalf("dropped = %v, want 1", n)
	}
}

// Documents ingest sends as a dead letter (the buffer refused their message
// for good) go to the dead-letter index with ingest's reason, and the
// message is acked; the others are indexed as usual.
func TestIngestDeadLettersGoToDeadLetterIndex(t *testing.T) {
	osURL := ostest.URL(t)
	r := start(t, osURL, time.Minute)
	for i := range 8 {
		r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
	}
	var refused []docmsg.Doc
	for i := 8; i < 11; i++ {
		refused = append(refused, docmsg.Doc{ID: fmt.Appendf(nil, "id-%03d", i), Data: []byte(doc(i, i))})
	}
	letter, err := docmsg.DeadLetter(message(refused), "the buffer refused the message (payload_too_large): nats: maximum payload exceeded", 40)
	if err != nil {
		t.Fatal(err)
	}
	r.send(t, letter)
	r.sentDocs += 3
	r.settled(t, 11)
	if n := count(t, osURL, r.index); n != 8 {
		t.Fatalf("index holds %d documents, want 8", n)
	}
	if n := count(t, osURL, r.index+"-dlq"); n != 3 {
		t.Fatalf("dead-letter index holds %d documents, want 3", n)
	}
	got := getDeadLetter(t, osURL, r.index, "id-009")
	if got.ErrorType != reasonUnpublishable || !strings.Contains(got.Reason, "maximum payload exceeded") || len(got.Document) != 40 {
		t.Fatalf("dead letter %+v", got)
	}
}

// Preflight reads the node's http.max_content_length (100mb by default) and
// refuses bulk requests larger than it.
func TestPreflightRequestLimit(t *testing.T) {
	client, err := opensearch.NewClient(opensearch.Config{Addresses: []string{ostest.URL(t)}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if err := Preflight(context.Background(), client, ISMPolicy{}, 5<<20, log); err != nil {
		t.Fatalf("5 MiB bulk requests: %v", err)
	}
	if err := Preflight(context.Background(), client, ISMPolicy{}, 200<<20, log); !errors.Is(err, ErrRequestLimit) || !strings.Contains(err.Error(), "104857600") {
		t.Fatalf("200 MiB bulk requests: %v, want ErrRequestLimit naming the node's limit", err)
	}
}

func TestParseByteSize(t *testing.T) {
	f := func(s string, want int64) {
		t.Helper()
		got, err := parseByteSize(s)
		if err != nil || got != want {
			t.Fatalf("parseByteSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	f("100mb", 100<<20)
	f("10485760b", 10<<20)
	f("1gb", 1<<30)
	f("1.5kb", 1536)
	f("4096", 4096)
	for _, bad := range []string{"", "mb", "-1b", "ten"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Fatalf("parseByteSize(%q) did not fail", bad)
		}
	}
}
