package sink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
	"github.com/podlogs/podlogs/internal/docmsg"
	"github.com/podlogs/podlogs/internal/testkit/natstest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

// benchDocs are realistic documents (about 700 bytes, as enrichment makes them).
func benchDocs(n int) [][]byte {
	docs := make([][]byte, n)
	for i := range docs {
		docs[i] = fmt.Appendf(nil, `{"@timestamp":"2026-11-25T08:00:%02d.%03dZ","time":"2026-11-25T08:00:%02d.%03d000001Z","stream":"stdout",`+
			`"log":"2026-11-25T08:00:00.000Z  INFO 1 --- [nio-8080-exec-%d] c.a.s.u.web.HomeController : GET /catalogue?page=%d 200 3.2ms request_id=%08x",`+
			`"kubernetes":{"pod_name":"ui-5dcbd7c4b8-x%04d","namespace_name":"ui","pod_id":"3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10",`+
			`"labels":{"app.kubernetes.io/name":"ui","pod-template-hash":"5dcbd7c4b8"},"annotations":{"prometheus.io/scrape":"true"},`+
			`"host":"ip-10-42-11-23.us-west-2.compute.internal","container_name":"ui","docker_id":"9c1e0a","container_image":"public.ecr.aws/aws-containers/retail-store-sample-ui:0.4.0"},`+
			`"podlogs":{"offset":%d}}`, i/1000%60, i%1000, i/1000%60, i%1000, i%10, i%17, i*7919, i%50, i*180)
	}
	return docs
}

// BenchmarkWriter compares the sink (JetStream pull consumer → _bulk →
// per-item acks) with a minimal direct _bulk loader of the same documents,
// same request size and concurrency, against the same real node. One op
// writes every document into a fresh index; docs/s is the figure to compare.
// Set-up is not timed: the writer is timed from its templates installed to
// the answer of the bulk request that completes the documents (its acks are
// sent by then, and checked, untimed), as the loader from its first request
// to its last answer. On a shared machine prefer BenchmarkLoaderPairs.
//
//	go test -run '^$' -bench Writer -benchtime 3x ./aggregator/internal/sink/
func BenchmarkWriter(b *testing.B) {
	osURL := ostest.URL(b)
	const total, workers = 40000, 2
	docs := benchDocs(total)
	var bytesTotal int
	for _, d := range docs {
		bytesTotal += len(d)
	}
	client, err := opensearch.NewClient(opensearch.Config{Addresses: []string{osURL}, DisableRetry: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, bulk := range []int{500, 2000, 5000} {
		// Both time themselves (set-up excluded) and report the same
		// figures: ns/op, MB/s of documents and docs/s.
		report := func(b *testing.B, elapsed time.Duration) {
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/op")
			b.ReportMetric(float64(bytesTotal*b.N)/1e6/elapsed.Seconds(), "MB/s")
			b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "docs/s")
		}
		b.Run("direct/docs="+strconv.Itoa(bulk), func(b *testing.B) {
			b.StopTimer()
			var elapsed time.Duration
			for range b.N {
				index := ostest.Index(b)
				PutTemplate(context.Background(), client, templateName(index), IndexTemplate(index))
				start := time.Now()
				directLoad(b, client, index, docs, bulk, workers)
				elapsed += time.Since(start)
				dropIndex(b, client, index)
			}
			report(b, elapsed)
		})
		b.Run("writer/docs="+strconv.Itoa(bulk), func(b *testing.B) {
			b.StopTimer()
			var elapsed time.Duration
			for range b.N {
				elapsed += writerLoad(b, client, docs, bulk, workers)
			}
			report(b, elapsed)
		})
	}
}

// BenchmarkLoaderPairs is BenchmarkWriter for a shared, noisy machine: each
// op runs the direct loader and the writer back to back (in alternating
// order), so that both see the same load, and reports the median of the
// ops' writer:direct ratios of docs/s beside each one's docs/s.
//
//	go test -run '^$' -bench LoaderPairs -benchtime 5x ./aggregator/internal/sink/
func BenchmarkLoaderPairs(b *testing.B) {
	osURL := ostest.URL(b)
	const total, workers = 40000, 2
	docs := benchDocs(total)
	client, err := opensearch.NewClient(opensearch.Config{Addresses: []string{osURL}, DisableRetry: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, bulk := range []int{500, 2000, 5000} {
		b.Run("docs="+strconv.Itoa(bulk), func(b *testing.B) {
			b.StopTimer()
			var direct, writer, directCPU, writerCPU time.Duration
			var ratios []float64
			for i := range b.N {
				var d, w time.Duration
				for j := range 2 {
					if (i+j)%2 == 0 {
						index := ostest.Index(b)
						PutTemplate(context.Background(), client, templateName(index), IndexTemplate(index))
						cpu := processCPU()
						start := time.Now()
						directLoad(b, client, index, docs, bulk, workers)
						d = time.Since(start)
						directCPU += processCPU() - cpu
						dropIndex(b, client, index)
					} else {
						var cpu time.Duration
						w, cpu = writerLoadCPU(b, client, docs, bulk, workers)
						writerCPU += cpu
					}
				}
				direct, writer = direct+d, writer+w
				ratios = append(ratios, d.Seconds()/w.Seconds())
			}
			slices.Sort(ratios)
			b.ReportMetric(float64(total*b.N)/direct.Seconds(), "direct-docs/s")
			b.ReportMetric(float64(total*b.N)/writer.Seconds(), "writer-docs/s")
			b.ReportMetric(ratios[len(ratios)/2], "median-ratio")
			// CPU of this process (the loader; for the writer also JetStream,
			// embedded) per 1,000 documents: what it takes from OpenSearch on
			// a small machine.
			b.ReportMetric(directCPU.Seconds()*1e3/float64(total*b.N/1000), "direct-cpu-ms/kdoc")
			b.ReportMetric(writerCPU.Seconds()*1e3/float64(total*b.N/1000), "writer-cpu-ms/kdoc")
			b.ReportMetric(float64((direct+writer).Nanoseconds())/float64(b.N), "ns/op")
		})
	}
}

// directLoad posts the documents in bulk requests of bulk documents from
// workers goroutines, create with the same ids the writer uses.
func directLoad(b *testing.B, client *opensearch.Client, index string, docs [][]byte, bulk, workers int) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var body bytes.Buffer
			for start := range work {
				body.Reset()
				for i := start; i < min(start+bulk, len(docs)); i++ {
					fmt.Fprintf(&body, `{"create":{"_index":%q,"_id":"id-%d"}}`+"\n", index, i)
					body.Write(docs[i])
					body.WriteByte('\n')
				}
				// The writer's request, filter_path included, so that both
				// make OpenSearch do the same work.
				if _, err := osrequest.Do(context.Background(), client, http.MethodPost, bulkPath, body.Bytes()); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for start := 0; start < len(docs); start += bulk {
		work <- start
	}
	close(work)
	wg.Wait()
}

// writerLoad fills a fresh stream with the documents (not timed), then
// times the sink from start until every message is acked.
func writerLoad(b *testing.B, client *opensearch.Client, docs [][]byte, bulk, workers int) time.Duration {
	d, _ := writerLoadCPU(b, client, docs, bulk, workers)
	return d
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writerLoadCPU is writerLoad, also returning the process's CPU time in
// the timed part.
func writerLoadCPU(b *testing.B, client *opensearch.Client, docs [][]byte, bulk, workers int) (time.Duration, time.Duration) {
	index := ostest.Index(b)
	ns := natstest.Start(b)
	_, js := natstest.Connect(b, ns, jetstream.WithPublishAsyncMaxPending(4096))
	ctx := context.Background()
	if _, err := buffer.EnsureStream(ctx, js, buffer.StreamConfig{
		Name: "B", SubjectPrefix: "b.docs", MaxBytes: 1 << 30, MaxAge: time.Hour, Duplicates: time.Minute, Replicas: 1,
	}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "B", ConsumerConfig("writer", "b.docs.>", 20000, time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	pub := buffer.NewPublisher(js, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	// As ingest publishes them: one message per forwarder batch (at most
	// 2000 records, here all of namespace ui) within 256 KiB.
	var msgs []*nats.Msg
	var w docmsg.Writer
	for i, d := range docs {
		if w.Docs() == 0 {
			w.Reset(nil)
		}
		w.End(append(w.Begin([]byte("id-"+strconv.Itoa(i))), d...))
		if w.Len() >= 256<<10-2048 || w.Docs() == 2000 || i == len(docs)-1 {
			msgs = append(msgs, w.Msg("b.docs.ui"))
			w = docmsg.Writer{}
		}
	}
	for len(msgs) > 0 {
		n := min(len(msgs), 64)
		if err := pub.Publish(ctx, msgs[:n]); err != nil {
			b.Fatal(err)
		}
		msgs = msgs[n:]
	}
	stored, err := cons.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	messages := stored.NumPending
	s := New(Config{
		Index: index, DeadLetter: index + "-dlq", Workers: workers, BulkDocs: bulk, BulkBytes: 64 << 20,
		FlushInterval: 100 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
	}, client, cons, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	// Timed: from the templates installed (as directLoad, which installs
	// them untimed) to the answer of the bulk request that completes the
	// documents, as directLoad, seen in the writer's metrics (polled every
	// millisecond).
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(runCtx) }()
	for !s.Ready() {
		time.Sleep(time.Millisecond)
	}
	start, cpuStart := time.Now(), processCPU()
	written := func() int {
		return int(testutil.ToFloat64(s.metrics.created) + testutil.ToFloat64(s.metrics.duplicate))
	}
	for written() < len(docs) {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("the writer wrote %d of %d documents in 5 minutes", written(), len(docs))
		}
		time.Sleep(time.Millisecond)
	}
	end, cpuEnd := time.Now(), processCPU()
	// Not timed: every ack reached JetStream.
	for {
		ci, err := cons.Info(ctx)
		if err == nil && ci.AckFloor.Stream == messages && ci.NumAckPending == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	dropIndex(b, client, index)
	return end.Sub(start), cpuEnd - cpuStart
}

// dropIndex deletes a benchmark's index at once: the small test node's heap
// would otherwise fill with them and refuse bulk requests (429).
func dropIndex(b *testing.B, client *opensearch.Client, index string) {
	if _, err := osrequest.Do(context.Background(), client, http.MethodDelete, "/"+index, nil); err != nil {
		b.Error(err)
	}
}

// fakeMsg is the part of a JetStream message fill reads.
type fakeMsg struct {
	jetstream.Msg
	data []byte
	hdr  nats.Header
}

func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Headers() nats.Header { return m.hdr }

// BenchmarkFill measures building a bulk body, per index naming; the
// per-document path allocates nothing (0 allocs/op once the buffer grew).
//
//	go test -run '^$' -bench Fill -benchmem ./aggregator/internal/sink/
func BenchmarkFill(b *testing.B) {
	docs := benchDocs(2000)
	var w docmsg.Writer
	w.Reset(nil)
	var size int64
	for i, d := range docs {
		w.End(append(w.Begin([]byte("Yp3kZ0cQeXh0aW5nLWlk"+strconv.Itoa(i%100))), d...))
		size += int64(len(d))
	}
	m := w.Msg("b.docs.ui")
	msgs := []*held{hold(&fakeMsg{data: m.Data, hdr: m.Header})}
	for _, index := range []string{"eks-pod-logs", "eks-pod-logs-%Y.%m.%d"} {
		b.Run("index="+index, func(b *testing.B) {
			w := &writer{Sink: &Sink{cfg: Config{Index: index, BulkBytes: 64 << 20}}, idx: newIndexNamer(index)}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if end := w.fill(msgs, 0); end != len(msgs) || len(msgs[0].docs) != len(docs) {
					b.Fatalf("filled %d of %d messages, %d documents", end, len(msgs), len(msgs[0].docs))
				}
			}
		})
	}
}
