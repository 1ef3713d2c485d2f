package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/podlogs/podlogs/internal/docmsg"
	"github.com/podlogs/podlogs/internal/testkit/natstest"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

const podPath = "ui_ui-5dcbd7c4b8-x2vqz_3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10/ui/0.log"

type env struct {
	client podlogsv1.IngestServiceClient
	js     jetstream.JetStream
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
	return &env{client: podlogsv1.NewIngestServiceClient(conn), js: js, stream: st, srv: srv, reg: reg}
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

// storedDoc is a document as the stream holds it.
type storedDoc struct {
	subject, id, raw string
	doc              map[string]any
}

// stored reads every document of the stream, in order.
func (e *env) stored(t *testing.T) []storedDoc {
	t.Helper()
	ctx := context.Background()
	info, err := e.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedDoc
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := e.stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		docs, err := docmsg.Append(nil, m.Header, m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if docmsg.Count(m.Header) != len(docs) {
			t.Fatalf("message %d says %d documents, holds %d", seq, docmsg.Count(m.Header), len(docs))
		}
		for _, d := range docs {
			sd := storedDoc{subject: m.Subject, id: string(d.ID), raw: string(d.Data)}
			if err := json.Unmarshal(d.Data, &sd.doc); err != nil {
				t.Fatalf("message %d: document %s: %v", seq, d.Data, err)
			}
			out = append(out, sd)
		}
	}
	return out
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
	// The ack came after JetStream stored every document: one message, as
	// the batch's lines are of one namespace.
	info, err := e.stream.Info(context.Background())
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages (%v), want 1", info.State.Msgs, err)
	}
	// The same records again (a resend after a reconnect) are not stored twice.
	if err := s.Send(batch(2, lines...)); err != nil {
		t.Fatal(err)
	}
	if resp, err = s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 2 {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	info, _ = e.stream.Info(context.Background())
	if info.State.Msgs != 1 {
		t.Fatalf("after a resend the stream holds %d messages, want 1", info.State.Msgs)
	}
	if got := testutilCounter(t, e, "podlogs_aggregator_published_total"); got != 3 {
		t.Fatalf("published counter %v, want 3 documents", got)
	}
	if got := testutilCounter(t, e, "podlogs_aggregator_publish_duplicates_total"); got != 3 {
		t.Fatalf("publish duplicates counter %v, want the 3 documents resent", got)
	}
	docs := e.stored(t)
	if len(docs) != 3 {
		t.Fatalf("stream holds %d documents, want 3", len(docs))
	}
	first := docs[0]
	k := first.doc["kubernetes"].(map[string]any)
	if first.doc["log"] != "Started UiApplication in 5.917 seconds" || first.doc["@timestamp"] != "2023-11-07T02:05:10.616Z" ||
		k["pod_name"] != "ui-5dcbd7c4b8-x2vqz" || k["namespace_name"] != "ui" || k["host"] != "node-1" || first.subject != "t.docs.ui" {
		t.Fatalf("document %v on %s", first.doc, first.subject)
	}
	ids := map[string]bool{}
	for _, d := range docs {
		if len(d.id) != 22 || ids[d.id] {
			t.Fatalf("document id %q: want 22 characters, each its own", d.id)
		}
		ids[d.id] = true
	}
	if malformed := docs[2].raw; !strings.Contains(malformed, `"malformed":true`) || !strings.Contains(malformed, `"log":"not a CRI line"`) {
		t.Fatalf("malformed line stored as %s", malformed)
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

// A batch's documents go into one message per namespace, split where they
// pass MessageBytes; every document is there once, on its namespace's subject.
func TestBatchIsOneMessagePerNamespaceWithinTheSizeLimit(t *testing.T) {
	e := setupConfig(t, Config{AggregatorID: "agg-0", MaxMessageBytes: 4 << 20, ReadAheadBatches: 2, SubjectPrefix: "t.docs", MessageBytes: 8 << 10}, nil)
	s := open(t, e)
	s.Send(hello())
	s.Recv()
	b := &podlogsv1.Batch{Sequence: 1, Sources: []*podlogsv1.Source{
		{Path: podPath, Identity: &podlogsv1.FileIdentity{Fingerprint: 1}, Format: podlogsv1.Format_FORMAT_CRI},
		{Path: "shop_cart-1_u2/cart/0.log", Identity: &podlogsv1.FileIdentity{Fingerprint: 2}, Format: podlogsv1.Format_FORMAT_CRI},
		{Path: "ui_ui-2_u3/ui/0.log", Identity: &podlogsv1.FileIdentity{Fingerprint: 3}, Format: podlogsv1.Format_FORMAT_CRI},
	}}
	const n = 90
	want := map[string]string{} // log → subject
	for i := range n {
		msg := fmt.Sprintf("line %03d %s", i, strings.Repeat("x", 200))
		l := "2023-11-07T02:05:10.616482913Z stdout F " + msg
		b.Records = append(b.Records, &podlogsv1.Record{SourceIndex: uint32(i % 3), Offset: uint64(i * 1000), NextOffset: uint64(i*1000 + len(l) + 1), Data: []byte(l)})
		want[msg] = map[int]string{0: "t.docs.ui", 1: "t.docs.shop", 2: "t.docs.ui"}[i%3]
	}
	s.Send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Batch{Batch: b}})
	if resp, err := s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 1 {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	docs := e.stored(t)
	if len(docs) != n {
		t.Fatalf("stream holds %d documents, want %d", len(docs), n)
	}
	for _, d := range docs {
		log := d.doc["log"].(string)
		if want[log] != d.subject {
			t.Fatalf("document %q on %s, want %s (or stored twice)", log[:8], d.subject, want[log])
		}
		delete(want, log)
	}
	info, _ := e.stream.Info(context.Background())
	// 90 documents of some 500 bytes do not fit in one 8 KiB message per namespace.
	if info.State.Msgs <= 2 {
		t.Fatalf("%d messages for %d documents of 2 namespaces within 8 KiB each", info.State.Msgs, n)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, _ := e.stream.GetMsg(context.Background(), seq)
		if len(m.Data) > 8<<10 {
			t.Fatalf("message %d is %d bytes, over the 8 KiB limit", seq, len(m.Data))
		}
	}
}

// A stream's converter reuses its message buffers from batch to batch, as
// namespaces come and go: each batch's messages hold exactly its documents.
func TestConverterReusesBuffersAcrossBatches(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	conv := converter{node: "node-1", subjectPrefix: "t.docs", messageBytes: 8 << 10}
	paths := map[string]string{
		"a": "a_p-1_u1/c/0.log", "b": "b_p-2_u2/c/0.log", "c": "c_p-3_u3/c/0.log",
	}
	// Namespaces in changing order and number, lines of changing length,
	// so that groups and buffers move between subjects.
	sets := [][]string{{"a", "b"}, {"b", "c"}, {"c"}, {"a", "b", "c"}, {"b"}, {"c", "a"}}
	for round := range 60 {
		nss := sets[round%len(sets)]
		b := &podlogsv1.Batch{Sequence: uint64(round + 1)}
		for i, ns := range nss {
			b.Sources = append(b.Sources, &podlogsv1.Source{Path: paths[ns], Identity: &podlogsv1.FileIdentity{Fingerprint: uint64(i + 1)}, Format: podlogsv1.Format_FORMAT_CRI})
		}
		want := map[string]string{} // log → subject
		n := 20 + 37*round%60
		for i := range n {
			msg := fmt.Sprintf("round %d line %d %s", round, i, strings.Repeat("y", (i*131+round*17)%1800))
			l := "2023-11-07T02:05:10.616482913Z stdout F " + msg
			src := i % len(nss)
			off := uint64(round*1_000_000 + i*1000)
			b.Records = append(b.Records, &podlogsv1.Record{SourceIndex: uint32(src), Offset: off, NextOffset: off + uint64(len(l)) + 1, Data: []byte(l)})
			want[msg] = "t.docs." + nss[src]
		}
		msgs, err := conv.convert(context.Background(), b, time.Now(), m)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, msg := range msgs {
			docs, err := docmsg.Append(nil, msg.Header, msg.Data)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			for _, d := range docs {
				var doc struct{ Log string }
				if err := json.Unmarshal(d.Data, &doc); err != nil {
					t.Fatalf("round %d: %s: %v", round, d.Data, err)
				}
				if want[doc.Log] != msg.Subject {
					t.Fatalf("round %d: %.20q on %s, want %q (or a document twice, or of another batch)", round, doc.Log, msg.Subject, want[doc.Log])
				}
				delete(want, doc.Log)
				got++
			}
		}
		if got != n || len(want) != 0 {
			t.Fatalf("round %d: %d documents in %d messages, want %d", round, got, len(msgs), n)
		}
	}
}
