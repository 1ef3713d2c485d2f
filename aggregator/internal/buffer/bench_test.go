package buffer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/internal/testkit/natstest"
)

// BenchmarkPublish measures what "one message per record" costs against
// "one message per batch of records" (the issue asks to choose by
// measurement): a batch of 1000 documents of about 700 bytes into a file
// stream of the embedded server, as the aggregator publishes an acked batch.
//
//	go test -run '^$' -bench Publish -benchtime 20x ./aggregator/internal/buffer/
func BenchmarkPublish(b *testing.B) {
	const batch = 1000
	doc := bytes.Repeat([]byte("x"), 700)
	for _, shape := range []string{"per-record", "per-batch"} {
		b.Run(shape, func(b *testing.B) {
			ns := natstest.Start(b)
			_, js := natstest.Connect(b, ns, jetstream.WithPublishAsyncMaxPending(4096))
			ctx := context.Background()
			if _, err := EnsureStream(ctx, js, StreamConfig{Name: "B", SubjectPrefix: "b", MaxBytes: 8 << 30, MaxAge: time.Hour, Duplicates: 2 * time.Minute, Replicas: 1}); err != nil {
				b.Fatal(err)
			}
			// Interest retention keeps nothing without a consumer.
			if _, err := js.CreateOrUpdateConsumer(ctx, "B", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				b.Fatal(err)
			}
			p := NewPublisher(js, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			b.SetBytes(int64(batch * len(doc)))
			b.ResetTimer()
			for n := range b.N {
				var msgs []*nats.Msg
				if shape == "per-record" {
					msgs = make([]*nats.Msg, batch)
					for i := range msgs {
						msgs[i] = &nats.Msg{Subject: "b.ui", Header: nats.Header{"Nats-Msg-Id": []string{fmt.Sprintf("%d-%d", n, i)}}, Data: doc}
					}
				} else {
					var body bytes.Buffer
					for range batch {
						body.Write(doc)
						body.WriteByte('\n')
					}
					msgs = []*nats.Msg{{Subject: "b.ui", Header: nats.Header{"Nats-Msg-Id": []string{strconv.Itoa(n)}}, Data: body.Bytes()}}
				}
				if err := p.Publish(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "docs/s")
		})
	}
}
