package sender

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeServer acks every batch, except that it can break the first streams
// after receiving some batches without acking them.
type fakeServer struct {
	podlogsv1.UnimplementedIngestServiceServer

	mu       sync.Mutex
	streams  int
	breakAt  map[int]int    // stream number → break after this many batches
	received map[uint64]int // record offset → times received
	hold     chan struct{}  // when set, acks wait for it to close
	// limits are the Welcome.max_message_bytes of successive streams, the
	// last one for the rest (none: 0, unknown).
	limits []uint32
}

func (f *fakeServer) Stream(s grpc.BidiStreamingServer[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) error {
	f.mu.Lock()
	f.streams++
	n := f.streams
	breakAfter, breaks := f.breakAt[n]
	hold := f.hold
	var limit uint32
	if len(f.limits) > 0 {
		limit = f.limits[min(n, len(f.limits))-1]
	}
	f.mu.Unlock()
	if _, err := s.Recv(); err != nil {
		return err
	}
	s.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Welcome{Welcome: &podlogsv1.Welcome{ProtocolVersion: 1, AggregatorId: "fake", MaxMessageBytes: limit}}})
	for i := 1; ; i++ {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		b := req.GetBatch()
		f.mu.Lock()
		for _, r := range b.GetRecords() {
			f.received[r.GetOffset()]++
		}
		f.mu.Unlock()
		if breaks && i >= breakAfter {
			return status.Error(codes.Unavailable, "replica going away")
		}
		if hold != nil {
			<-hold
		}
		s.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Ack{Ack: &podlogsv1.Ack{ThroughSequence: b.GetSequence()}}})
	}
}

func setup(t *testing.T, f *fakeServer, window int) (*Sender, *[]uint64, func()) {
	t.Helper()
	cfg := Config{NodeName: "n", MaxInflightBytes: window, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond}
	return setupWith(t, f, cfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
}

func setupWith(t *testing.T, f *fakeServer, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Sender, *[]uint64, func()) {
	t.Helper()
	ln := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	podlogsv1.RegisterIngestServiceServer(gs, f)
	go gs.Serve(ln)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []uint64
	s := New(cfg, conn, func(b *podlogsv1.Batch) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.GetRecords() {
			acked = append(acked, r.GetOffset())
		}
	}, reg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	return s, &acked, func() {
		cancel()
		<-done
		conn.Close()
		gs.Stop()
	}
}

func batchOf(offsets ...uint64) *podlogsv1.Batch {
	b := &podlogsv1.Batch{Sources: []*podlogsv1.Source{{Path: "ns_p_u/c/0.log", Identity: &podlogsv1.FileIdentity{Inode: 1}}}}
	for _, o := range offsets {
		b.Records = append(b.Records, &podlogsv1.Record{Offset: o, NextOffset: o + 10, Data: []byte("0123456789")})
	}
	return b
}

func TestEveryBatchAckedOnceInOrderAcrossBrokenStreams(t *testing.T) {
	f := &fakeServer{breakAt: map[int]int{1: 3, 2: 1, 3: 5}, received: map[uint64]int{}}
	s, acked, stop := setup(t, f, 1<<20)
	defer stop()
	ctx := context.Background()
	const batches = 40
	for i := range uint64(batches) {
		if err := s.Submit(ctx, batchOf(2*i, 2*i+1), Size(batchOf(2*i, 2*i+1))); err != nil {
			t.Fatal(err)
		}
	}
	flushCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := s.Flush(flushCtx); err != nil {
		t.Fatal(err)
	}
	got := *acked
	if len(got) != 2*batches {
		t.Fatalf("acked %d records, want %d", len(got), 2*batches)
	}
	for i, o := range got {
		if o != uint64(i) {
			t.Fatalf("ack %d is offset %d: acks out of order or doubled: %v", i, o, got)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams < 4 {
		t.Fatalf("server saw %d streams, want at least 4 (3 broken)", f.streams)
	}
	resent := 0
	for _, n := range f.received {
		if n > 1 {
			resent++
		}
	}
	if resent == 0 {
		t.Fatal("no record was resent after the broken streams")
	}
}

func TestSubmitBlocksWhileWindowIsFull(t *testing.T) {
	f := &fakeServer{received: map[uint64]int{}, hold: make(chan struct{})}
	s, _, stop := setup(t, f, 25) // room for two batches of 10 bytes
	defer stop()
	ctx := context.Background()
	if err := s.Submit(ctx, batchOf(0), Size(batchOf(0))); err != nil {
		t.Fatal(err)
	}
	if err := s.Submit(ctx, batchOf(1), Size(batchOf(1))); err != nil {
		t.Fatal(err)
	}
	blocked, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s.Submit(blocked, batchOf(2), Size(batchOf(2))); err == nil {
		t.Fatal("Submit went through with the window full")
	}
	close(f.hold) // the server acks; the window frees up
	if err := s.Submit(ctx, batchOf(2), Size(batchOf(2))); err != nil {
		t.Fatal(err)
	}
	flushCtx, cancelFlush := context.WithTimeout(ctx, 10*time.Second)
	defer cancelFlush()
	if err := s.Flush(flushCtx); err != nil {
		t.Fatal(err)
	}
}

func TestOversizedBatchGoesAlone(t *testing.T) {
	f := &fakeServer{received: map[uint64]int{}}
	s, acked, stop := setup(t, f, 5) // smaller than one batch
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range uint64(3) {
		if err := s.Submit(ctx, batchOf(i), Size(batchOf(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(*acked) != 3 {
		t.Fatalf("acked %v", *acked)
	}
}

// errorLog is a slog handler that keeps what is logged at error level.
type errorLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *errorLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *errorLog) WithGroup(string) slog.Handler                { return h }

func (h *errorLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// announced returns the aggregator limits the error records name.
func (h *errorLog) announced() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "aggregator_max_message_bytes":
				out = append(out, a.Value.String())
			case "fix":
				if fix := a.Value.String(); !strings.Contains(fix, "forwarder's --max-message-bytes") || !strings.Contains(fix, "aggregator's --max-message-bytes") {
					out = append(out, "fix without both flags: "+fix)
				}
			}
			return true
		})
	}
	return out
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// An aggregator that accepts smaller messages than the forwarder may send is
// an error logged once per limit announced, however often streams reopen.
func TestAggregatorMessageLimitBelowOurs(t *testing.T) {
	const ours = 8 << 20
	f := func(limits []uint32, wantLogged []int64, wantGauge float64) {
		t.Helper()
		srv := &fakeServer{received: map[uint64]int{}, limits: limits, breakAt: map[int]int{1: 1, 2: 1, 3: 1, 4: 1}}
		reg := prometheus.NewRegistry()
		errs := &errorLog{}
		cfg := Config{NodeName: "n", MaxInflightBytes: 1 << 20, MaxMessageBytes: ours, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond}
		s, _, stop := setupWith(t, srv, cfg, reg, slog.New(errs))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := range uint64(6) {
			if err := s.Submit(ctx, batchOf(i), Size(batchOf(i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		stop()
		if srv.streams < 5 {
			t.Fatalf("%d streams, want at least 5", srv.streams)
		}
		if got := errs.announced(); fmt.Sprint(got) != fmt.Sprint(wantLogged) {
			t.Fatalf("limits logged: %v, want %v", got, wantLogged)
		}
		if got := gaugeValue(t, reg, "podlogs_forwarder_message_limit_above_aggregator"); got != wantGauge {
			t.Fatalf("gauge = %v, want %v", got, wantGauge)
		}
	}
	f([]uint32{1 << 20}, []int64{1 << 20}, 1)
	// Replicas of two configurations, e.g. during a rolling update.
	f([]uint32{1 << 20, 2 << 20, 1 << 20, 2 << 20}, []int64{1 << 20, 2 << 20}, 1)
	// Fixed: the gauge goes back to 0.
	f([]uint32{1 << 20, 16 << 20}, []int64{1 << 20}, 0)
	// Equal, larger or unknown (0, an older aggregator): nothing to say.
	f([]uint32{ours}, nil, 0)
	f([]uint32{16 << 20}, nil, 0)
	f(nil, nil, 0)
}
