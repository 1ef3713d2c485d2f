package sink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/internal/natstest"
	"github.com/podlogs/podlogs/internal/ostest"
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
		b.Run("direct/docs="+strconv.Itoa(bulk), func(b *testing.B) {
			b.SetBytes(int64(bytesTotal))
			var elapsed time.Duration
			for range b.N {
				index := ostest.Index(b)
				PutTemplate(context.Background(), client, templateName(index), IndexTemplate(index))
				b.ResetTimer()
				start := time.Now()
				directLoad(b, client, index, docs, bulk, workers)
				elapsed += time.Since(start)
				b.StopTimer()
			}
			b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "docs/s")
		})
		b.Run("writer/docs="+strconv.Itoa(bulk), func(b *testing.B) {
			b.SetBytes(int64(bytesTotal))
			var elapsed time.Duration
			for range b.N {
				b.StopTimer()
				d := writerLoad(b, client, docs, bulk, workers)
				elapsed += d
			}
			b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "docs/s")
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
				if _, err := do(context.Background(), client, http.MethodPost, "/_bulk", body.Bytes()); err != nil {
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
	msgs := make([]*nats.Msg, 0, 1000)
	for i, d := range docs {
		msgs = append(msgs, &nats.Msg{Subject: "b.docs.ui", Header: nats.Header{"Nats-Msg-Id": []string{"id-" + strconv.Itoa(i)}}, Data: d})
		if len(msgs) == cap(msgs) || i == len(docs)-1 {
			if err := pub.Publish(ctx, msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	s := New(Config{
		Index: index, DeadLetter: index + "-dlq", Workers: workers, BulkDocs: bulk, BulkBytes: 64 << 20,
		FlushInterval: 100 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
	}, client, cons, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	PutTemplate(ctx, client, templateName(index), IndexTemplate(index))
	PutTemplate(ctx, client, templateName(index+"-dlq"), DeadLetterTemplate(index+"-dlq"))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.StartTimer()
	start := time.Now()
	go func() { defer close(done); s.Run(runCtx) }()
	for {
		ci, err := cons.Info(ctx)
		if err == nil && ci.AckFloor.Stream == uint64(len(docs)) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	d := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	return d
}
