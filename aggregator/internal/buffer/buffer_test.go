package buffer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlogs/podlogs/internal/natstest"
)

// A full stream refuses publishes with 503 / 10077 "maximum bytes
// exceeded": the publisher classifies it as stream_full and retries, and
// the publish returns once the writers' acks made room (interest retention).
func TestPublishWaitsForRoomInAFullStream(t *testing.T) {
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns, jetstream.WithPublishAsyncMaxPending(256), jetstream.WithPublishAsyncTimeout(5*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := EnsureStream(ctx, js, StreamConfig{Name: "F", SubjectPrefix: "f", MaxBytes: 64 << 10, MaxAge: time.Hour, Duplicates: time.Minute, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "F", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	doc := bytes.Repeat([]byte("d"), 1000)
	msgs := func(from, n int) []*nats.Msg {
		var out []*nats.Msg
		for i := from; i < from+n; i++ {
			out = append(out, &nats.Msg{Subject: "f.ui", Header: nats.Header{"Nats-Msg-Id": []string{fmt.Sprint(i)}}, Data: doc})
		}
		return out
	}
	// Fill it.
	_, err = js.PublishMsg(ctx, msgs(-1, 1)[0])
	for i := 0; err == nil; i++ {
		_, err = js.PublishMsg(ctx, msgs(1000+i, 1)[0])
	}
	if r := FailureReason(err); r != ReasonStreamFull {
		t.Fatalf("full stream: %v classified %q, want %q", err, r, ReasonStreamFull)
	}

	reg := prometheus.NewRegistry()
	p := NewPublisher(js, reg, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, msgs(0, 50)) }()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("publish into a full stream returned %v; want it to wait", err)
	default:
	}
	if n := testutil.ToFloat64(p.metrics.failures.WithLabelValues(ReasonStreamFull)); n == 0 {
		t.Fatal("no stream_full failure counted")
	}
	// The writers catch up: acked documents leave the stream.
	go func() {
		for ctx.Err() == nil {
			batch, err := cons.Fetch(100, jetstream.FetchMaxWait(200*time.Millisecond))
			if err != nil {
				continue
			}
			for m := range batch.Messages() {
				m.Ack()
			}
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(p.metrics.published); n != 50 {
		t.Fatalf("published %v, want 50", n)
	}
}

func TestFailureReason(t *testing.T) {
	f := func(err error, want string) {
		t.Helper()
		if got := FailureReason(err); got != want {
			t.Errorf("FailureReason(%v) = %q, want %q", err, got, want)
		}
	}
	f(&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, ReasonStreamFull)
	f(&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "some store failure"}, ReasonOther)
	f(jetstream.ErrAsyncPublishTimeout, ReasonTimeout)
	f(jetstream.ErrNoStreamResponse, ReasonNoResponders)
	f(jetstream.ErrTooManyStalledMsgs, ReasonStalled)
	f(fmt.Errorf("wrapped: %w", nats.ErrConnectionReconnecting), ReasonDisconnected)
}
