package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlogs/podlogs/internal/docmsg"
	"github.com/podlogs/podlogs/internal/testkit/natsproc"
	"github.com/podlogs/podlogs/internal/testkit/natstest"
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
			out = append(out, &nats.Msg{Subject: "f.ui", Header: nats.Header{docmsg.HeaderMsgID: []string{fmt.Sprint(i)}, docmsg.HeaderDocs: []string{"1"}}, Data: doc})
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
	f(fmt.Errorf("wrapped: %w", nats.ErrMaxPayload), ReasonTooLarge)
	f(&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, ReasonTooLarge)
}

// A message JetStream refuses for good (larger than the stream takes) is
// not retried: Publish stores the others and names it in a *RefusedError.
func TestPublishRefusedForGood(t *testing.T) {
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, MaxMsgSize: 4 << 10}); err != nil {
		t.Fatal(err)
	}
	msg := func(id string, docs, size int) *nats.Msg {
		return &nats.Msg{Subject: "s.ui", Header: nats.Header{docmsg.HeaderMsgID: []string{id}, docmsg.HeaderDocs: []string{fmt.Sprint(docs)}},
			Data: bytes.Repeat([]byte("d"), size)}
	}
	reg := prometheus.NewRegistry()
	p := NewPublisher(js, reg, slog.New(slog.DiscardHandler))
	big := msg("big", 3, 8<<10)
	err := p.Publish(ctx, []*nats.Msg{msg("a", 2, 100), big, msg("b", 5, 100)})
	var refused *RefusedError
	if !errors.As(err, &refused) || len(refused.Msgs) != 1 || refused.Msgs[0] != big || refused.Reason != ReasonTooLarge {
		t.Fatalf("Publish = %v, want a RefusedError naming the large message", err)
	}
	if n := testutil.ToFloat64(p.metrics.published); n != 7 {
		t.Fatalf("published %v documents, want the other 7", n)
	}
	if n := testutil.ToFloat64(p.metrics.refused.WithLabelValues(ReasonTooLarge)); n != 3 {
		t.Fatalf("refused %v documents, want 3", n)
	}
}

// Open fits the embedded server to the largest message, and refuses an
// external server whose max_payload is smaller (nats-server with
// max_payload: 1MB), before anything is published.
func TestOpenChecksMaxPayload(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	cfg := func(url string, largest int) Config {
		return Config{
			URL: url, StoreDir: t.TempDir(), ClientName: "test", PublishMaxPending: 16, LargestMessage: largest,
			Stream:   StreamConfig{Name: "P", SubjectPrefix: "p", MaxBytes: 64 << 20, MaxAge: time.Hour, Duplicates: time.Minute, Replicas: 1},
			Consumer: jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy},
		}
	}
	b, err := Open(ctx, cfg("", 4<<20), log)
	if err != nil {
		t.Fatal(err)
	}
	if mp := b.Conn.MaxPayload(); mp < 4<<20+docmsg.HeaderBytes {
		t.Fatalf("embedded server's max_payload %d, want room for 4 MiB", mp)
	}
	if _, err := b.JS.Publish(ctx, "p.ui", bytes.Repeat([]byte("x"), 4<<20)); err != nil {
		t.Fatalf("publish the largest message to the embedded server: %v", err)
	}
	b.Close()

	srv := natsproc.Start(t, "max_payload: 1MB")
	b, err = Open(ctx, cfg(srv.URL(), 1<<20-docmsg.HeaderBytes), log)
	if err != nil {
		t.Fatalf("a largest message that fits 1 MB: %v", err)
	}
	b.Close()
	_, err = Open(ctx, cfg(srv.URL(), 2<<20), log)
	var pe *PayloadError
	if !errors.As(err, &pe) || pe.MaxPayload != 1<<20 || pe.Need != 2<<20+docmsg.HeaderBytes {
		t.Fatalf("Open = %v, want a PayloadError", err)
	}
}
