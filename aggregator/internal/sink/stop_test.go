package sink

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

// Stopping the sink while a bulk request is in flight: that request
// finishes and its documents are acked; what was pulled but not written
// stays unacked and a new sink on the same consumer writes it.
func TestStopFinishesTheBulkInFlight(t *testing.T) {
	osURL := ostest.URL(t)
	target, _ := url.Parse(osURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	inFlight := make(chan struct{}, 100)
	var bulks atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, "/_bulk") {
			bulks.Add(1)
			inFlight <- struct{}{}
			time.Sleep(500 * time.Millisecond) // the sink is stopped meanwhile
		}
		proxy.ServeHTTP(w, req)
	}))
	defer srv.Close()

	r := start(t, srv.URL, time.Minute, func(c *Config) { c.Workers, c.BulkDocs = 1, 40 })
	for i := range 200 {
		r.publish(t, fmt.Sprintf("id-%03d", i), doc(i, i))
	}
	<-inFlight
	r.cancel()
	<-r.done
	if n := bulks.Load(); n != 1 {
		t.Fatalf("%d bulk requests were sent, want the one in flight only", n)
	}
	if n := count(t, osURL, r.index); n != 40 {
		t.Fatalf("index holds %d documents after the stop, want the 40 of the bulk request in flight", n)
	}
	cons, err := r.js.Consumer(context.Background(), "T", "writer")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(40 / r.perMessage); ci.AckFloor.Stream != want {
		t.Fatalf("ack floor %d after the stop, want %d (the messages of the 40 documents written)", ci.AckFloor.Stream, want)
	}

	// A new sink (another replica, or this one restarted) writes the rest.
	client, err := opensearch.NewClient(opensearch.Config{Addresses: []string{osURL}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.sink.cfg
	s := New(cfg, client, cons, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	r.settled(t, 200)
	if n := count(t, osURL, r.index); n != 200 {
		t.Fatalf("index holds %d documents, want 200", n)
	}
}
