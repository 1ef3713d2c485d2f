package accounting_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/aggregator/internal/ingest"
	"github.com/podlogs/podlogs/aggregator/internal/metacache"
	"github.com/podlogs/podlogs/aggregator/internal/sink"
	"github.com/podlogs/podlogs/internal/podpath"
	"github.com/podlogs/podlogs/internal/testkit/natstest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

func TestMain(m *testing.M) { ostest.Main(m) }

// excluder marks one pod excluded (podlogs.io/exclude), as the metadata
// cache would.
type excluder struct{ pod string }

func (e excluder) Lookup(_ context.Context, ref *podpath.Ref) metacache.Result {
	if ref.Pod != e.pod {
		return metacache.Result{}
	}
	pod := enrich.Render(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Pod, UID: types.UID(ref.PodUID),
		Annotations: map[string]string{"podlogs.io/exclude": "true"}}}, nil, enrich.Options{})
	return metacache.Result{Source: metacache.Live, Pod: pod}
}

// Lines go through the real ingest server, JetStream and the bulk writer
// into a real OpenSearch, once, again within JetStream's duplicate window
// (JetStream drops them), and again after it (OpenSearch answers 409). One
// line is malformed, and the index maps podlogs.malformed as a date, so it
// is dead-lettered each time it reaches OpenSearch. One pod is excluded.
// Ingest and writer count in two ledgers, two replicas' worth: the report
// sums them and sets them beside OpenSearch's count per pod.
func TestReconcile(t *testing.T) {
	osURL, index := ostest.URL(t), ostest.Index(t)
	// The malformed line has podlogs.malformed: true, which this mapping
	// refuses: a mapping conflict, the dead-letter index's case.
	put(t, osURL+"/"+index, `{"mappings":{"date_detection":false,"properties":{
		"kubernetes":{"properties":{"pod_name":{"type":"keyword"},"namespace_name":{"type":"keyword"}}},
		"podlogs":{"properties":{"malformed":{"type":"date"}}}}}}`)

	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns, jetstream.WithPublishAsyncMaxPending(256))
	ctx := context.Background()
	const window = time.Second
	if _, err := buffer.EnsureStream(ctx, js, buffer.StreamConfig{
		Name: "T", SubjectPrefix: "t.docs", MaxBytes: 64 << 20, MaxAge: time.Hour, Duplicates: window, Replicas: 1,
	}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", sink.ConsumerConfig("writer", "t.docs.>", 1000, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	ingestLedger := accounting.New(accounting.Config{Replica: "agg-ingest"}, prometheus.NewRegistry())
	writerLedger := accounting.New(accounting.Config{Replica: "agg-writer"}, prometheus.NewRegistry())

	reg := prometheus.NewRegistry()
	srv := ingest.New(ingest.Config{AggregatorID: "agg-ingest", MaxMessageBytes: 4 << 20, ReadAheadBatches: 2, SubjectPrefix: "t.docs",
		Accounting: ingestLedger}, buffer.NewPublisher(js, reg, log), excluder{pod: "noisy-1"}, reg, log)
	gs := grpc.NewServer(srv.ServerOptions()...)
	podlogsv1.RegisterIngestServiceServer(gs, srv)
	ln := bufconn.Listen(1 << 20)
	go gs.Serve(ln)
	t.Cleanup(func() { gs.Stop(); srv.Wait() })

	client, err := opensearch.NewClient(opensearch.Config{Addresses: []string{osURL}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	snk := sink.New(sink.Config{
		Index: index, DeadLetter: index + "-dlq", Workers: 1, BulkDocs: 100, BulkBytes: 1 << 20, FlushInterval: 50 * time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Accounting: writerLedger,
	}, client, cons, prometheus.NewRegistry(), log)
	sinkCtx, stopSink := context.WithCancel(ctx)
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); snk.Run(sinkCtx) }()
	t.Cleanup(func() { stopSink(); <-sinkDone })

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	streamCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := podlogsv1.NewIngestServiceClient(conn).Stream(streamCtx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(m *podlogsv1.StreamRequest) *podlogsv1.StreamResponse {
		t.Helper()
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Hello{Hello: &podlogsv1.Hello{ProtocolVersion: 1, NodeName: "node-1"}}})

	// ui-1: 10 lines, the 4th malformed; carts-1: 5 lines, in two
	// containers; noisy-1: 3 lines, excluded.
	lines := map[string][]string{}
	for i := range 10 {
		l := fmt.Sprintf("2026-11-25T08:00:00.%09dZ stdout F ui line %d", i, i)
		if i == 3 {
			l = "not a CRI line"
		}
		lines["ui_ui-1_u1/ui/0.log"] = append(lines["ui_ui-1_u1/ui/0.log"], l)
	}
	for i := range 3 {
		lines["carts_carts-1_u2/carts/0.log"] = append(lines["carts_carts-1_u2/carts/0.log"], fmt.Sprintf("2026-11-25T08:00:01.%09dZ stdout F carts %d", i, i))
	}
	for i := range 2 {
		lines["carts_carts-1_u2/sidecar/0.log"] = append(lines["carts_carts-1_u2/sidecar/0.log"], fmt.Sprintf("2026-11-25T08:00:02.%09dZ stderr F side %d", i, i))
	}
	for i := range 3 {
		lines["ops_noisy-1_u3/noisy/0.log"] = append(lines["ops_noisy-1_u3/noisy/0.log"], fmt.Sprintf("2026-11-25T08:00:03.%09dZ stdout F noise %d", i, i))
	}
	batch := func(seq uint64) *podlogsv1.StreamRequest {
		b := &podlogsv1.Batch{Sequence: seq}
		for _, path := range []string{"ui_ui-1_u1/ui/0.log", "carts_carts-1_u2/carts/0.log", "carts_carts-1_u2/sidecar/0.log", "ops_noisy-1_u3/noisy/0.log"} {
			b.Sources = append(b.Sources, &podlogsv1.Source{Path: path, Identity: &podlogsv1.FileIdentity{Fingerprint: uint64(len(b.Sources) + 1)}, Format: podlogsv1.Format_FORMAT_CRI})
			off := uint64(0)
			for _, l := range lines[path] {
				b.Records = append(b.Records, &podlogsv1.Record{SourceIndex: uint32(len(b.Sources) - 1), Offset: off, NextOffset: off + uint64(len(l)) + 1, Data: []byte(l)})
				off += uint64(len(l)) + 1
			}
		}
		return &podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Batch{Batch: b}}
	}
	settled := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n uint64
			for _, r := range writerLedger.Snapshot("").Rows {
				n += r.Indexed + r.Duplicate + r.DeadLettered
			}
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the writer settled %d documents, want %d", n, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for seq := uint64(1); seq <= 2; seq++ { // the second a resend within the duplicate window
		if ack := send(batch(seq)).GetAck(); ack.GetThroughSequence() != seq {
			t.Fatalf("ack %v, want %d", ack, seq)
		}
	}
	settled(15)
	time.Sleep(window + 200*time.Millisecond)
	if ack := send(batch(3)).GetAck(); ack.GetThroughSequence() != 3 { // outside it: OpenSearch answers 409
		t.Fatalf("ack %v, want 3", ack)
	}
	settled(30)

	// Two replicas' endpoints, as the admin servers serve them.
	var urls []string
	for _, l := range []*accounting.Ledger{ingestLedger, writerLedger} {
		mux := http.NewServeMux()
		mux.Handle("GET "+accounting.HandlerPath, l.Handler())
		hs := httptest.NewServer(mux)
		t.Cleanup(hs.Close)
		urls = append(urls, strings.TrimPrefix(hs.URL, "http://"))
	}
	replicas, err := accounting.ReplicaURLs(ctx, strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := accounting.Collect(ctx, http.DefaultClient, replicas, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Replicas) != 2 {
		t.Fatalf("replicas %+v", rep.Replicas)
	}
	post(t, osURL+"/"+index+"/_refresh")
	counts, err := accounting.PodCounts(ctx, client, accounting.IndexExpression(index, index+"-dlq"), "")
	if err != nil {
		t.Fatal(err)
	}
	rep.Join(counts)

	type want struct {
		accounting.Counts
		pending, inOS int64
	}
	wantRows := map[string]want{
		// Sent 3 times: JetStream dropped the second sending, OpenSearch
		// the third (409); the malformed line was dead-lettered twice.
		"ui/ui-1":       {accounting.Counts{Received: 30, Published: 30, Indexed: 9, Duplicate: 9, DeadLettered: 2}, 10, 9},
		"carts/carts-1": {accounting.Counts{Received: 15, Published: 15, Indexed: 5, Duplicate: 5}, 5, 5},
		"ops/noisy-1":   {accounting.Counts{Received: 9, Excluded: 9}, 0, 0},
	}
	if len(rep.Rows) != len(wantRows) || rep.OnlyInOpenSearch != 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, r := range rep.Rows {
		w, ok := wantRows[r.Namespace+"/"+r.Pod]
		if !ok || r.Counts != w.Counts || r.Pending != w.pending || r.InOpenSearch != w.inOS || r.Difference != 0 {
			t.Errorf("row %+v, want %+v", r, w)
		}
	}
	if n := countDocs(t, osURL, index+"-dlq"); n != 1 {
		t.Errorf("dead-letter index holds %d documents, want 1", n)
	}

	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"replica agg-ingest", "replica agg-writer", "IN_OPENSEARCH", "ui-1", "TOTAL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("report:\n%s", out.String())
}

func put(t *testing.T, url, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT %s: %s %s", url, resp.Status, b)
	}
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func countDocs(t *testing.T, osURL, index string) int {
	t.Helper()
	post(t, osURL+"/"+index+"/_refresh")
	resp, err := http.Get(osURL + "/" + index + "/_count")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Count int }
	json.NewDecoder(resp.Body).Decode(&r)
	return r.Count
}
