package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/internal/natstest"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

const podPath = "ui_ui-5dcbd7c4b8-x2vqz_3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10/ui/0.log"

type env struct {
	client podlogsv1.IngestServiceClient
	stream jetstream.Stream
	srv    *Server
	reg    *prometheus.Registry
}

func setup(t *testing.T, maxMessageBytes int) *env {
	t.Helper()
	return setupWith(t, maxMessageBytes, nil, 0)
}

func setupWith(t *testing.T, maxMessageBytes int, enricher Enricher, dataFields int) *env {
	t.Helper()
	return setupConfig(t, Config{AggregatorID: "agg-0", MaxMessageBytes: maxMessageBytes, ReadAheadBatches: 2, SubjectPrefix: "t.docs", DataFields: dataFields}, enricher)
}

func setupConfig(t *testing.T, cfg Config, enricher Enricher) *env {
	t.Helper()
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns, jetstream.WithPublishAsyncMaxPending(256))
	ctx := context.Background()
	st, err := buffer.EnsureStream(ctx, js, buffer.StreamConfig{
		Name: "T", SubjectPrefix: "t.docs", MaxBytes: 64 << 20, MaxAge: time.Hour, Duplicates: time.Minute, Replicas: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The stream keeps what a consumer has yet to ack (interest retention),
	// as the writers' durable consumer does in the aggregator.
	if _, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "writers", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	srv := New(cfg, buffer.NewPublisher(js, reg, log), enricher, reg, log)
	gs := grpc.NewServer(srv.ServerOptions()...)
	podlogsv1.RegisterIngestServiceServer(gs, srv)
	ln := bufconn.Listen(1 << 20)
	go gs.Serve(ln)
	t.Cleanup(func() { gs.Stop(); srv.Wait() })
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{client: podlogsv1.NewIngestServiceClient(conn), stream: st, srv: srv, reg: reg}
}

func hello() *podlogsv1.StreamRequest {
	return &podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Hello{Hello: &podlogsv1.Hello{
		ProtocolVersion: 1, NodeName: "node-1",
	}}}
}

func batch(seq uint64, lines ...string) *podlogsv1.StreamRequest {
	b := &podlogsv1.Batch{Sequence: seq, Sources: []*podlogsv1.Source{{
		Path: podPath, Identity: &podlogsv1.FileIdentity{Device: 1, Inode: 2, Fingerprint: 3}, Format: podlogsv1.Format_FORMAT_CRI,
	}}}
	off := uint64(0)
	for _, l := range lines {
		b.Records = append(b.Records, &podlogsv1.Record{Offset: off, NextOffset: off + uint64(len(l)) + 1, Data: []byte(l)})
		off += uint64(len(l)) + 1
	}
	return &podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Batch{Batch: b}}
}

func open(t *testing.T, e *env) grpc.BidiStreamingClient[podlogsv1.StreamRequest, podlogsv1.StreamResponse] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := e.client.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStreamPublishesThenAcks(t *testing.T) {
	e := setup(t, 4<<20)
	s := open(t, e)
	if err := s.Send(hello()); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil || resp.GetWelcome().GetAggregatorId() != "agg-0" || resp.GetWelcome().GetMaxMessageBytes() != 4<<20 {
		t.Fatalf("welcome = %v, %v", resp, err)
	}
	lines := []string{
		"2023-11-07T02:05:10.616482913Z stdout F Started UiApplication in 5.917 seconds",
		"2023-11-07T02:05:10.700000000Z stderr F WARN something",
		"not a CRI line",
	}
	if err := s.Send(batch(1, lines...)); err != nil {
		t.Fatal(err)
	}
	resp, err = s.Recv()
	if err != nil || resp.GetAck().GetThroughSequence() != 1 {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	// The ack came after JetStream stored every document.
	info, err := e.stream.Info(context.Background())
	if err != nil || info.State.Msgs != 3 {
		t.Fatalf("stream holds %d messages (%v), want 3", info.State.Msgs, err)
	}
	// The same records again (a resend after a reconnect) are not stored twice.
	if err := s.Send(batch(2, lines...)); err != nil {
		t.Fatal(err)
	}
	if resp, err = s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 2 {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	info, _ = e.stream.Info(context.Background())
	if info.State.Msgs != 3 {
		t.Fatalf("after a resend the stream holds %d messages, want 3", info.State.Msgs)
	}
	msg, err := e.stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(msg.Data, &doc); err != nil {
		t.Fatal(err)
	}
	k := doc["kubernetes"].(map[string]any)
	if doc["log"] != "Started UiApplication in 5.917 seconds" || doc["@timestamp"] != "2023-11-07T02:05:10.616Z" ||
		k["pod_name"] != "ui-5dcbd7c4b8-x2vqz" || k["namespace_name"] != "ui" || k["host"] != "node-1" || msg.Subject != "t.docs.ui" {
		t.Fatalf("document %s on %s", msg.Data, msg.Subject)
	}
	if len(msg.Header.Get("Nats-Msg-Id")) != 22 {
		t.Fatalf("Nats-Msg-Id %q", msg.Header.Get("Nats-Msg-Id"))
	}
	malformed, _ := e.stream.GetMsg(context.Background(), 3)
	if !strings.Contains(string(malformed.Data), `"malformed":true`) || !strings.Contains(string(malformed.Data), `"log":"not a CRI line"`) {
		t.Fatalf("malformed line stored as %s", malformed.Data)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
}

func TestStreamRejectsInvalidMessages(t *testing.T) {
	e := setup(t, 64<<10)
	f := func(name string, msgs []*podlogsv1.StreamRequest, want codes.Code, wantText string) {
		t.Helper()
		s := open(t, e)
		for _, m := range msgs {
			if err := s.Send(m); err != nil {
				break // the server may end the stream before we are done sending
			}
		}
		var err error
		for err == nil {
			_, err = s.Recv()
		}
		st, _ := status.FromError(err)
		if st.Code() != want || !strings.Contains(st.Message(), wantText) {
			t.Fatalf("%s: got %v, want %v containing %q", name, err, want, wantText)
		}
	}
	ok := "2023-11-07T02:05:10.616482913Z stdout F hi"
	f("batch before hello", []*podlogsv1.StreamRequest{batch(1, ok)}, codes.InvalidArgument, "first message of a stream must be a hello")
	f("old protocol", []*podlogsv1.StreamRequest{{Message: &podlogsv1.StreamRequest_Hello{Hello: &podlogsv1.Hello{ProtocolVersion: 9, NodeName: "n"}}}},
		codes.InvalidArgument, "protocol version 9")
	f("sequence gap", []*podlogsv1.StreamRequest{hello(), batch(2, ok)}, codes.InvalidArgument, "batch sequence 2, want 1")
	bad := batch(1, ok)
	bad.GetBatch().Records[0].SourceIndex = 5
	f("missing source", []*podlogsv1.StreamRequest{hello(), bad}, codes.InvalidArgument, "names source 5")
	badPath := batch(1, ok)
	badPath.GetBatch().Sources[0].Path = "etc/passwd"
	f("bad path", []*podlogsv1.StreamRequest{hello(), badPath}, codes.InvalidArgument, "not a pod log path")
	f("oversized", []*podlogsv1.StreamRequest{hello(), batch(1, strings.Repeat("x", 100<<10))}, codes.ResourceExhausted, "larger than max")

	// After all that, the server still serves a well-behaved stream.
	s := open(t, e)
	s.Send(hello())
	s.Recv()
	s.Send(batch(1, ok))
	if resp, err := s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 1 {
		t.Fatalf("healthy stream after bad ones: %v, %v", resp, err)
	}
}

func TestDrainEndsStreamsWithUnavailable(t *testing.T) {
	e := setup(t, 4<<20)
	s := open(t, e)
	s.Send(hello())
	s.Recv()
	s.Send(batch(1, "2023-11-07T02:05:10.616482913Z stdout F hi"))
	if resp, err := s.Recv(); err != nil || resp.GetAck() == nil {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	e.srv.Drain()
	_, err := s.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("after Drain: %v, want Unavailable", err)
	}
}

func TestStreamEndsAtMaxAge(t *testing.T) {
	const age = 300 * time.Millisecond
	e := setupConfig(t, Config{AggregatorID: "agg-0", MaxMessageBytes: 4 << 20, ReadAheadBatches: 2, SubjectPrefix: "t.docs", MaxStreamAge: age}, nil)
	s := open(t, e)
	begin := time.Now()
	s.Send(hello())
	s.Recv()
	s.Send(batch(1, "2023-11-07T02:05:10.616482913Z stdout F hi"))
	if resp, err := s.Recv(); err != nil || resp.GetAck() == nil {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	_, err := s.Recv()
	took := time.Since(begin)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "maximum age") {
		t.Fatalf("aged stream ended with %v, want Unavailable naming the age", err)
	}
	if took < age*9/10 || took > age*3 {
		t.Errorf("stream ended after %s, want about %s", took, age)
	}
	if got := testutil.ToFloat64(e.srv.metrics.aged); got != 1 {
		t.Errorf("streams_aged_total = %v, want 1", got)
	}
}
