package reader

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/internal/loggen"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// The benchmark tree: 20 containers, a realistic mix of Spring Boot text,
// JSON lines, stack traces and some long (split) lines, in both formats.
var (
	benchOnce  sync.Once
	benchRoot  string
	benchLines int64
	benchBytes int64
	benchErr   error
)

func benchTree(b *testing.B) (string, int64, int64) {
	b.Helper()
	benchOnce.Do(func() {
		benchRoot, benchErr = os.MkdirTemp("", "podlogs-bench-")
		if benchErr != nil {
			return
		}
		var st loggen.Stats
		st, benchErr = loggen.Run(context.Background(), loggen.Config{
			Root: benchRoot, Seed: 1, Pods: 20, Format: "mixed", Lines: 25000,
		})
		benchLines = st.Lines
		// Count physical lines and bytes as the baseline sees them.
		benchLines, benchBytes = 0, 0
		filepath.Walk(benchRoot, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				data, _ := os.ReadFile(p)
				benchBytes += int64(len(data))
			}
			return nil
		})
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchRoot, benchLines, benchBytes
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLineCounter is the floor: the least a reader can do with the same
// files (read them, count newlines).
func BenchmarkLineCounter(b *testing.B) {
	root, _, size := benchTree(b)
	b.SetBytes(size)
	b.ReportAllocs()
	buf := make([]byte, 64<<10)
	var lines int64
	cpu := cpuTime()
	for b.Loop() {
		lines = 0
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			r := bufio.NewReaderSize(f, len(buf))
			for {
				n, err := r.Read(buf)
				lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
				if err == io.EOF {
					break
				}
			}
			f.Close()
			return nil
		})
	}
	reportPerLine(b, lines, cpuTime()-cpu)
}

// countingSubmitter takes every batch at once and counts its records.
type countingSubmitter struct {
	records atomic.Int64
	done    chan struct{}
	want    int64
	once    sync.Once
}

func (c *countingSubmitter) TrySubmit(b *podlogsv1.Batch, _ int) bool {
	if c.records.Add(int64(len(b.GetRecords()))) >= c.want {
		c.once.Do(func() { close(c.done) })
	}
	return true
}

func (c *countingSubmitter) Space() <-chan struct{} { return nil }

// BenchmarkReader is the forwarder's read path over the same files: find,
// open, fingerprint, read, frame (partial lines joined), batch.
func BenchmarkReader(b *testing.B) {
	root, _, size := benchTree(b)
	// Records, not physical lines: split lines are joined into one.
	records := countRecords(b, root)
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
		sub := &countingSubmitter{done: make(chan struct{}), want: records}
		r := New(Config{
			PodsRoot: root, ScanInterval: time.Hour, PollInterval: time.Hour, ReadBytes: 64 << 10,
			BatchBytes: 1 << 20, BatchRecords: 2000, BatchLinger: time.Second, MaxRecordBytes: 1 << 20,
		}, store, sub, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		<-sub.done
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		cancel()
		<-done
	}
	b.ReportMetric(float64(mallocs)/float64(int64(b.N)*records), "allocs/record")
	reportPerLine(b, records, cpuTime()-cpu)
}

func countRecords(b *testing.B, root string) int64 {
	b.Helper()
	store, _ := checkpoint.Open(filepath.Join(b.TempDir(), "ckpt.json"))
	sub := &countingSubmitter{done: make(chan struct{}), want: 1 << 62}
	r := New(Config{
		PodsRoot: root, ScanInterval: time.Hour, PollInterval: 50 * time.Millisecond, ReadBytes: 64 << 10,
		BatchBytes: 1 << 20, BatchRecords: 2000, BatchLinger: time.Millisecond, MaxRecordBytes: 1 << 20, NoWatch: true,
	}, store, sub, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	var last int64 = -1
	for n := sub.records.Load(); n != last; n = sub.records.Load() {
		last = n
		time.Sleep(300 * time.Millisecond)
	}
	cancel()
	<-done
	return last
}

// reportPerLine reports lines per CPU-second over all iterations.
func reportPerLine(b *testing.B, perOp int64, cpu time.Duration) {
	total := float64(perOp) * float64(b.N)
	b.ReportMetric(total/cpu.Seconds(), "lines/cpu-s")
	b.ReportMetric(float64(perOp), "lines/op")
}
