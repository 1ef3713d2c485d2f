package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/natsproc"
	"github.com/podlogs/podlogs/internal/testkit/osnode"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// Delivery under failure (issue 5): OpenSearch down for minutes, a full
// stream, NATS killed, a writer replica killed. Each test writes a known
// number of lines and wants exactly that many documents: nothing lost,
// nothing doubled. They run the non-race binaries, as load tests do.

// startFastAggregator starts a non-race aggregator and waits until it is ready.
func startFastAggregator(t *testing.T, bins, name, osURL, index string, extra ...string) *aggregator {
	t.Helper()
	admin, listen := proctest.FreeAddr(t), proctest.FreeAddr(t)
	p := startFrom(t, bins, name, append([]string{
		"--id=" + name, "--listen=" + listen, "--admin-addr=" + admin, "--data-dir=" + proctest.TempDir(t, name),
		"--opensearch-url=" + osURL, "--index=" + index, "--flush-interval=100ms", "--log.format=text",
		"--shutdown-grace=20s", "--nats-poll-interval=1s"}, extra...)...)
	p.WaitReady(t, admin)
	return &aggregator{Proc: p, listen: listen, admin: admin}
}

// startFastForwarder starts a non-race forwarder; it returns its admin address.
func startFastForwarder(t *testing.T, bins, name, root, aggregatorAddr string) (*proctest.Proc, string) {
	t.Helper()
	admin := proctest.FreeAddr(t)
	p := startFrom(t, bins, name,
		"--pods-root="+root, "--data-dir="+proctest.TempDir(t, name), "--aggregator=dns:///"+aggregatorAddr,
		"--node-name=node-e2e", "--admin-addr="+admin, "--scan-interval=200ms", "--poll-interval=50ms",
		"--batch-linger=50ms", "--log.format=text", "--shutdown-grace=20s")
	p.WaitReady(t, admin)
	return p, admin
}

// writePods writes perPod lines to each of pods files under root, at about
// rate lines/s in all (0: as fast as it can), and closes the returned
// channel when every line is written.
func writePods(t *testing.T, root, app string, pods, perPod, rate int) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	const chunk = 100
	var pause time.Duration
	if rate > 0 {
		pause = time.Duration(float64(time.Second) * chunk * float64(pods) / float64(rate))
	}
	for p := range pods {
		path := filepath.Join(root, fmt.Sprintf("delivery_%s-%d-7d9f8b6c5-abcde_5b0e6f0a-1c2d-4e5f-8a9b-%012d/app/0.log", app, p, p))
		format := loggen.FormatCRI
		if p%2 == 1 {
			format = loggen.FormatDocker
		}
		w, err := loggen.OpenFile(path, format, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			next := time.Now()
			for i := range perPod {
				msg := fmt.Sprintf("%s pod %d line %d: GET /catalogue?page=%d 200 3.2ms user=%08x", app, p, i, i%17, i*7919)
				if _, err := w.WriteLine(time.Now(), "stdout", msg); err != nil {
					t.Error(err)
					return
				}
				if pause > 0 && i%chunk == chunk-1 {
					next = next.Add(pause)
					time.Sleep(time.Until(next))
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

func aggMetric(t *testing.T, a *aggregator, name string, match ...string) float64 {
	t.Helper()
	return metric(t, "http://"+a.admin+"/metrics", name, match...)
}

// checkNoForwarderLoss fails if the forwarder counted lost bytes.
func checkNoForwarderLoss(t *testing.T, fwdAdmin string) {
	t.Helper()
	if lost := metric(t, "http://"+fwdAdmin+"/metrics", "podlogs_forwarder_lost_bytes_total"); lost != 0 {
		t.Errorf("forwarder lost %v bytes", lost)
	}
}

// waitExact waits for want documents, then checks the count holds.
func waitExact(t *testing.T, s search, want int, timeout time.Duration) {
	t.Helper()
	s.waitCount(t, want, timeout)
	time.Sleep(3 * time.Second)
	s.waitCount(t, want, time.Second)
}

// Acceptance 1: OpenSearch stopped for 120 s in the middle of a 300,000-line
// run, then restarted: exactly 300,000 documents; the stream grew during the
// outage and drained after; the forwarder lost nothing; the dead-letter
// index is empty.
func TestE2EOpenSearchOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end test")
	}
	const pods, perPod, rate = 10, 30000, 3000
	const outage = 120 * time.Second
	node := ostest.NewNode(t, osnode.Config{})
	osURL, index := node.URL(), "eks-pod-logs-outage"
	bins := fastBinaries(t)
	agg := startFastAggregator(t, bins, "aggregator-0", osURL, index)
	root := proctest.TempDir(t, "pods")
	_, fwdAdmin := startFastForwarder(t, bins, "forwarder-0", root, agg.listen)
	begin := time.Now()
	written := writePods(t, root, "outage", pods, perPod, rate)
	s := search{url: osURL, index: index}

	for s.count(t) < 20000 {
		if time.Since(begin) > 2*time.Minute {
			t.Fatalf("only %d documents after %s", s.count(t), time.Since(begin))
		}
		time.Sleep(500 * time.Millisecond)
	}
	before := s.count(t)
	if err := node.Kill(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	t.Logf("OpenSearch killed after %s with %d documents indexed", down.Sub(begin).Round(time.Second), before)
	// Documents waiting in the stream: stored there, not yet settled by a
	// writer. (The stream's own count is of messages, a batch's documents each.)
	waiting := func() float64 {
		settled := 0.0
		for _, outcome := range []string{"created", "duplicate", "dead_lettered"} {
			settled += aggMetric(t, agg, "podlogs_aggregator_documents_total", `outcome="`+outcome+`"`)
		}
		return aggMetric(t, agg, "podlogs_aggregator_published_total") - settled
	}
	var peak float64
	for time.Since(down) < outage {
		peak = max(peak, waiting())
		time.Sleep(2 * time.Second)
	}
	if err := node.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("OpenSearch back after %s down; the stream peaked at %.0f documents", back.Sub(down).Round(time.Second), peak)
	if peak < 100000 {
		t.Errorf("the stream held at most %.0f documents during the outage; want it to grow past 100,000", peak)
	}
	<-written
	waitExact(t, s, pods*perPod, 5*time.Minute)
	t.Logf("all %d documents indexed %s after OpenSearch came back (%s in all)", pods*perPod,
		time.Since(back).Round(time.Second), time.Since(begin).Round(time.Second))

	deadline := time.Now().Add(30 * time.Second)
	for aggMetric(t, agg, "podlogs_aggregator_stream_messages") != 0 || aggMetric(t, agg, "podlogs_aggregator_consumer_pending") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stream not drained: %v messages, %v pending", aggMetric(t, agg, "podlogs_aggregator_stream_messages"),
				aggMetric(t, agg, "podlogs_aggregator_consumer_pending"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := (search{url: osURL, index: index + "-dlq"}).count(t); n != 0 {
		t.Errorf("dead-letter index holds %d documents, want none", n)
	}
	if dl := aggMetric(t, agg, "podlogs_aggregator_documents_total", `outcome="dead_lettered"`); dl != 0 {
		t.Errorf("%v documents dead-lettered", dl)
	}
	checkNoForwarderLoss(t, fwdAdmin)
}

// Acceptance 5: a small stream fills while OpenSearch is stopped: publishes
// are refused (stream_full), the forwarder is slowed (its acks wait), and
// once OpenSearch is back every line arrives.
func TestE2EStreamFull(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end test")
	}
	const pods, perPod = 4, 5000
	const maxBytes = 2 << 20
	node := ostest.NewNode(t, osnode.Config{})
	osURL, index := node.URL(), "eks-pod-logs-full"
	if err := node.Kill(); err != nil {
		t.Fatal(err)
	}
	bins := fastBinaries(t)
	agg := startFastAggregator(t, bins, "aggregator-0", osURL, index, fmt.Sprintf("--nats-stream-max-bytes=%d", maxBytes))
	root := proctest.TempDir(t, "pods")
	_, fwdAdmin := startFastForwarder(t, bins, "forwarder-0", root, agg.listen)
	written := writePods(t, root, "full", pods, perPod, 0)
	<-written

	deadline := time.Now().Add(time.Minute)
	for aggMetric(t, agg, "podlogs_aggregator_publish_failures_total", `reason="stream_full"`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no publish refused for a full stream within a minute")
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // a stalled pipeline stays stalled
	fwdURL := "http://" + fwdAdmin + "/metrics"
	acked := metric(t, fwdURL, "podlogs_forwarder_records_acked_total")
	stored := aggMetric(t, agg, "podlogs_aggregator_stream_bytes")
	refused := aggMetric(t, agg, "podlogs_aggregator_publish_failures_total", `reason="stream_full"`)
	t.Logf("stream full: %v bytes stored (limit %d), %v publishes refused, forwarder acked %v of %d records, %v bytes in flight",
		stored, maxBytes, refused, acked, pods*perPod, metric(t, fwdURL, "podlogs_forwarder_inflight_bytes"))
	if acked >= pods*perPod {
		t.Fatalf("the forwarder had all %v records acked while the stream was full", acked)
	}
	if stored > maxBytes {
		t.Fatalf("stream holds %v bytes, over its %d limit", stored, maxBytes)
	}
	if metric(t, fwdURL, "podlogs_forwarder_inflight_bytes") == 0 {
		t.Fatal("nothing waits for an ack in the forwarder")
	}

	if err := node.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := search{url: osURL, index: index}
	waitExact(t, s, pods*perPod, 3*time.Minute)
	if n := (search{url: osURL, index: index + "-dlq"}).count(t); n != 0 {
		t.Errorf("dead-letter index holds %d documents, want none", n)
	}
	checkNoForwarderLoss(t, fwdAdmin)
}

// Acceptance 2: a real nats-server process with file storage, SIGKILLed
// twice and restarted while lines are written: exactly the lines written.
func TestE2ENATSServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end test")
	}
	const pods, perPod, rate = 10, 6000, 3000
	nats := natsproc.Start(t)
	osURL, index := ostest.URL(t), ostest.Index(t)
	bins := fastBinaries(t)
	agg := startFastAggregator(t, bins, "aggregator-0", osURL, index, "--nats-url="+nats.URL())
	root := proctest.TempDir(t, "pods")
	_, fwdAdmin := startFastForwarder(t, bins, "forwarder-0", root, agg.listen)
	written := writePods(t, root, "natsrestart", pods, perPod, rate)
	s := search{url: osURL, index: index}
	for range 2 {
		time.Sleep(6 * time.Second)
		t.Logf("killing nats-server (%d documents indexed)", s.count(t))
		nats.Kill()
		time.Sleep(3 * time.Second)
		nats.Restart(t)
	}
	<-written
	waitExact(t, s, pods*perPod, 3*time.Minute)
	t.Logf("publishes retried: %v", aggMetric(t, agg, "podlogs_aggregator_publish_failures_total"))
	checkNoForwarderLoss(t, fwdAdmin)
}

// Acceptance 3: two replicas share an external NATS; the one that only
// writes to OpenSearch is SIGKILLed in the middle of a bulk request: after
// OpenSearch indexed it, before the replica saw the answer and acked. Those
// documents are redelivered (after ack_wait) to the other replica, which
// finds them there (409): exactly the lines written.
func TestE2EAggregatorReplicaSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("long end-to-end test")
	}
	const pods, perPod, rate = 10, 6000, 3000
	nats := natsproc.Start(t)
	osURL, index := ostest.URL(t), ostest.Index(t)
	bins := fastBinaries(t)
	// Replica b reaches OpenSearch through a proxy that holds each bulk
	// answer for a moment, so that there is a "mid-bulk" to kill it in.
	target, _ := url.Parse(osURL)
	var held atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // the killed replica cancels its requests
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path == "/_bulk" {
			held.Add(1)
			time.Sleep(300 * time.Millisecond)
			held.Add(-1)
		}
		return nil
	}
	slow := httptest.NewServer(proxy)
	defer slow.Close()

	common := []string{"--nats-url=" + nats.URL(), "--nats-ack-wait=30s", "--bulk-docs=500"}
	a := startFastAggregator(t, bins, "aggregator-a", osURL, index, common...)
	b := startFastAggregator(t, bins, "aggregator-b", slow.URL, index, append(common, "--bulk-workers=4")...)
	root := proctest.TempDir(t, "pods")
	_, fwdAdmin := startFastForwarder(t, bins, "forwarder-0", root, a.listen)
	written := writePods(t, root, "replicakill", pods, perPod, rate)

	deadline := time.Now().Add(time.Minute)
	for aggMetric(t, b, "podlogs_aggregator_bulk_requests_total", `result="ok"`) < 5 || held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("replica b wrote nothing within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Kill()
	s := search{url: osURL, index: index}
	t.Logf("replica b SIGKILLed with %d bulk answers held; %d documents indexed", held.Load(), s.count(t))
	<-written
	waitExact(t, s, pods*perPod, 3*time.Minute)
	// What b had indexed but not acked comes back after ack_wait (30 s).
	deadline = time.Now().Add(90 * time.Second)
	for aggMetric(t, a, "podlogs_aggregator_documents_total", `outcome="duplicate"`) == 0 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	waitExact(t, s, pods*perPod, time.Second)
	dups := aggMetric(t, a, "podlogs_aggregator_documents_total", `outcome="duplicate"`)
	t.Logf("replica a: %v created, %v duplicates (indexed by b, redelivered after its death)",
		aggMetric(t, a, "podlogs_aggregator_documents_total", `outcome="created"`), dups)
	if dups == 0 {
		t.Error("replica a saw no duplicates: b was not killed between indexing and acking")
	}
	checkNoForwarderLoss(t, fwdAdmin)
}
