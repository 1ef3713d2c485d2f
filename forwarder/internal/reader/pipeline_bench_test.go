package reader

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/forwarder/internal/sender"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// discardServer acknowledges every batch and counts its records.
type discardServer struct {
	podlogsv1.UnimplementedIngestServiceServer
	records atomic.Int64
}

func (d *discardServer) Stream(s grpc.BidiStreamingServer[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	s.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Welcome{Welcome: &podlogsv1.Welcome{ProtocolVersion: 1}}})
	for {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		b := req.GetBatch()
		d.records.Add(int64(len(b.GetRecords())))
		if err := s.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Ack{Ack: &podlogsv1.Ack{ThroughSequence: b.GetSequence()}}}); err != nil {
			return err
		}
	}
}

// BenchmarkForwarder is the forwarder's whole path over the benchmark tree:
// read, frame, batch, send over gRPC (loopback TCP) with the window and
// acknowledgements, checkpoint. The receiving side only counts and acks;
// its CPU is in the figures too.
func BenchmarkForwarder(b *testing.B) {
	root, _, size := benchTree(b)
	records := countRecords(b, root)
	srv := &discardServer{}
	gs := grpc.NewServer()
	podlogsv1.RegisterIngestServiceServer(gs, srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()

	b.SetBytes(size)
	b.ReportAllocs()
	var mallocs uint64
	var ms runtime.MemStats
	cpu := cpuTime()
	for b.Loop() {
		store, err := checkpoint.Open(filepath.Join(b.TempDir(), "ckpt.json"))
		if err != nil {
			b.Fatal(err)
		}
		log := slog.New(slog.DiscardHandler)
		reg := prometheus.NewRegistry()
		snd := sender.New(sender.Config{NodeName: "bench", MaxInflightBytes: 16 << 20, BackoffMin: time.Millisecond, BackoffMax: time.Second},
			conn, func(bt *podlogsv1.Batch) {
				for _, r := range bt.GetRecords() {
					id := bt.GetSources()[r.GetSourceIndex()].GetIdentity()
					store.Advance(checkpoint.Key{Device: id.GetDevice(), Inode: id.GetInode(), Fingerprint: id.GetFingerprint()}, "", r.GetNextOffset())
				}
			}, reg, log)
		r := New(Config{
			PodsRoot: root, ScanInterval: time.Hour, PollInterval: time.Hour, ReadBytes: 64 << 10,
			BatchBytes: 1 << 20, BatchRecords: 2000, BatchLinger: 200 * time.Millisecond, MaxRecordBytes: 1 << 20,
		}, store, snd, reg, log)
		start := srv.records.Load()
		ctx, cancel := context.WithCancel(context.Background())
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		sendDone, readDone := make(chan struct{}), make(chan struct{})
		go func() { snd.Run(ctx); close(sendDone) }()
		go func() { r.Run(ctx); close(readDone) }()
		for srv.records.Load()-start < records {
			time.Sleep(time.Millisecond)
		}
		if err := snd.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		cancel()
		<-readDone
		<-sendDone
	}
	b.ReportMetric(float64(mallocs)/float64(int64(b.N)*records), "allocs/record")
	reportPerLine(b, records, cpuTime()-cpu)
}
