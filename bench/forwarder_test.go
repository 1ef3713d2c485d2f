package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/binaries"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// Issue 7, forwarder stages: the forwarder binary (built without -race) as a
// child process against an in-process aggregator that acknowledges every
// batch at once (discardServer), so the figures are the forwarder's own.
// CPU and memory come from /proc of the child; bytes allocated from its
// /metrics.

// BenchmarkForwarderBacklog catches up a backlog tree (stage 2): 100 pods of
// loggen's realistic mix, both runtime formats. The tree is generated beside
// an empty pods root and moved in once the forwarder is up, so start-up is
// not in the figures. The floor is the least any reader does with the same
// files: read them with a big buffer and count newlines (as
// forwarder/internal/reader's BenchmarkLineCounter).
func BenchmarkForwarderBacklog(b *testing.B) {
	bin := fwdBinary(b)
	linesPerPod := int64(10000) // 1 M lines
	if testing.Short() {
		linesPerPod = 100
	}
	src := filepath.Join(b.TempDir(), "src")
	st, err := loggen.Run(context.Background(), loggen.Config{
		Root: src, Seed: 1, Pods: 100, Format: "mixed", Lines: linesPerPod,
	})
	if err != nil {
		b.Fatal(err)
	}
	// A record is a logical line: the forwarder joins the parts of a line
	// the runtime split.
	records := st.Lines

	var fwdCPU, floorCPU time.Duration
	var floorLines, allocBytes, hwm int64
	for range b.N {
		floorLines, floorCPU = fwdLineCounter(b, src)
		addr, srv := startDiscardServer(b)
		root := filepath.Join(b.TempDir(), "pods")
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		p, admin := fwdStart(b, bin, root, addr)
		before, err := procStats(p.Pid())
		if err != nil {
			b.Fatal(err)
		}
		alloc0 := fwdMetric(b, admin, "go_memstats_alloc_bytes_total")
		base := srv.records.Load()
		if err := fwdMoveIn(src, root); err != nil {
			b.Fatal(err)
		}
		fwdWaitRecords(b, p, srv.records.Load, base+records, 10*time.Minute)
		after, err := procStats(p.Pid())
		if err != nil {
			b.Fatal(err)
		}
		allocBytes = int64(fwdMetric(b, admin, "go_memstats_alloc_bytes_total") - alloc0)
		fwdCPU = after.CPU - before.CPU
		hwm = after.HWM
		p.Stop(b)
		// Move the tree back for the next iteration (and the next floor run).
		if err := fwdMoveIn(root, src); err != nil {
			b.Fatal(err)
		}
	}
	fwdRate := float64(records) / fwdCPU.Seconds()
	floorRate := float64(floorLines) / floorCPU.Seconds()
	b.ReportMetric(fwdRate, "lines/cpu-s")
	b.ReportMetric(fwdCPU.Seconds()/float64(records)*1e6, "cpu-s/Mlines")
	b.ReportMetric(float64(allocBytes)/float64(records), "B/line")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(floorRate, "floor-lines/cpu-s")
	b.ReportMetric(fwdRate/floorRate, "x-floor")
	b.ReportMetric(float64(records), "lines")
	b.ReportMetric(float64(st.Bytes)/float64(records), "bytes/line")
}

// fwdBinary builds the forwarder without the race detector into a
// directory removed when the benchmark ends, and returns the directory.
// Unlike buildBinaries it needs only the forwarder to build, and leaves
// nothing behind; the build cache makes it a link.
//
// PODLOGS_BENCH_FORWARDER_DIR names a directory holding a forwarder binary
// to measure instead (another build, for a before/after comparison).
func fwdBinary(tb testing.TB) string {
	tb.Helper()
	if dir := os.Getenv("PODLOGS_BENCH_FORWARDER_DIR"); dir != "" {
		return dir
	}
	return binaries.Commands(tb, binaries.Fast, binaries.Forwarder)
}

// fwdLineCounter is the floor: it reads every file under root with a 64 KiB
// buffer and counts newlines, returning the count and the CPU time it took
// (this process's: nothing else runs in it meanwhile).
func fwdLineCounter(tb testing.TB, root string) (int64, time.Duration) {
	tb.Helper()
	buf := make([]byte, 64<<10)
	var lines int64
	cpu := fwdSelfCPU()
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			n, err := f.Read(buf)
			lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	return lines, fwdSelfCPU() - cpu
}

func fwdSelfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fwdMoveIn renames every pod directory of from into to.
func fwdMoveIn(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return fmt.Errorf("list %s: %w", from, err)
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return fmt.Errorf("move pod directory: %w", err)
		}
	}
	return nil
}

// fwdStart starts a forwarder over root sending to addr, with the defaults
// of a DaemonSet otherwise, and waits until it is connected. It returns the
// process and its admin address.
func fwdStart(tb testing.TB, bin, root, addr string, extra ...string) (*proctest.Proc, string) {
	tb.Helper()
	admin := proctest.FreeAddr(tb)
	args := append([]string{
		"--pods-root", root,
		"--data-dir", tb.TempDir(),
		"--aggregator", addr,
		"--admin-addr", admin,
		"--node-name", "bench",
		"--log.level", "warn",
	}, extra...)
	p := startProc(tb, bin, "forwarder", "forwarder", args...)
	p.WaitReady(tb, admin)
	return p, admin
}

// fwdMetric scrapes one unlabelled sample from the admin /metrics.
func fwdMetric(tb testing.TB, admin, name string) float64 {
	tb.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	tb.Fatalf("metric %s not exposed", name)
	return 0
}

// fwdWaitRecords waits until count() reaches want, polling every
// millisecond (the resolution of the lags measured with it), and returns
// when it did.
func fwdWaitRecords(tb testing.TB, p *proctest.Proc, count func() int64, want int64, timeout time.Duration) time.Time {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := count()
		if n >= want {
			if n > want {
				tb.Fatalf("received %d records, want %d", n, want)
			}
			return time.Now()
		}
		select {
		case <-p.Done():
			tb.Fatalf("forwarder exited (%v) after %d of %d records", p.Err(), n, want)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("received %d of %d records within %s", n, want, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// fwdTree is a pods tree of files CRI log files, one container per pod,
// each with one line already (a file has an identity from its first line).
type fwdTree struct {
	root  string
	files []*loggen.FileWriter
}

func fwdNewTree(tb testing.TB, files, linesEach int) *fwdTree {
	tb.Helper()
	t := &fwdTree{root: filepath.Join(tb.TempDir(), "pods")}
	tb.Cleanup(func() {
		for _, f := range t.files {
			f.Close()
		}
	})
	now := time.Now()
	for i := range files {
		ns := fwdNamespaces[i%len(fwdNamespaces)]
		dir := fmt.Sprintf("%s_%s-7d4b9c8f6d-%05d_0f8e6c5a-0d3b-4a8e-9a51-%012d", ns, ns, i, i)
		w, err := loggen.OpenFile(filepath.Join(t.root, dir, ns, "0.log"), loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		t.files = append(t.files, w)
		for j := range linesEach {
			if _, err := w.WriteLine(now, "stdout", fwdMessage(i, j)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return t
}

var fwdNamespaces = []string{"ui", "catalog", "carts", "checkout", "orders"}

// fwdMessages are typical lines of the retail-store sample's services
// (Spring Boot console layout, zap and pino JSON), 120–250 bytes.
var fwdMessages = []string{
	"2023-11-07T02:05:10.616Z  INFO 1 --- [nio-8080-exec-3] c.a.s.u.web.CatalogController            : GET /catalog?tag=watch&page=1 -> 8 products in 14 ms",
	`{"level":"info","ts":1699322710.616,"caller":"api/handlers.go:88","msg":"request served","method":"GET","path":"/catalogue/product/a1258cd2","status":200,"latency_ms":3.4}`,
	`{"level":30,"time":1699322710616,"pid":1,"hostname":"checkout-6c9d8b7f5-x2vqz","req":{"id":%d,"method":"POST","url":"/checkout/submit"},"res":{"statusCode":201},"responseTime":12}`,
	"2023-11-07T02:05:10.616Z  INFO 1 --- [nio-8080-exec-7] c.a.s.carts.controllers.CartsController  : Added product 'Café Crème ☕ Mug' (d27cf49f) to cart of customer 3f0e6c5a",
	"2023-11-07T02:05:10.616Z  WARN 1 --- [nio-8080-exec-1] c.a.s.u.s.c.CatalogClient                : Slow response from http://catalog.catalog.svc:80/catalogue: 1432 ms",
}

func fwdMessage(file, n int) string {
	m := fwdMessages[(file+n)%len(fwdMessages)]
	if strings.Contains(m, "%d") {
		return fmt.Sprintf(m, n)
	}
	return m + " #" + strconv.Itoa(n)
}

// BenchmarkLiveTail is the normal DaemonSet case (stage 6): a runtime
// appends lines to many files, one write per line, at a steady rate, and the
// forwarder follows. One more file stays quiet from the start; after the
// run a line is written to it and quiet-ms is how long it takes to reach
// the aggregator (the target is under a second).
func BenchmarkLiveTail(b *testing.B) {
	bin := fwdBinary(b)
	for _, c := range []struct {
		files, rate int
		dur         time.Duration
	}{
		{100, 10000, 60 * time.Second},
		{1000, 1000, 60 * time.Second},
	} {
		b.Run(fmt.Sprintf("files=%d,rate=%d", c.files, c.rate), func(b *testing.B) {
			dur, quiet := c.dur, 60*time.Second
			if testing.Short() {
				dur, quiet = 4*time.Second, 3*time.Second
			}
			var r fwdLiveResult
			for range b.N {
				r = fwdLiveTail(b, bin, c.files, c.rate, dur, quiet)
			}
			b.ReportMetric(r.cpu.Seconds()/r.wall.Seconds(), "cores")
			b.ReportMetric(r.cpu.Seconds()/float64(r.lines)*1e6, "cpu-s/Mlines")
			b.ReportMetric(float64(r.rss)/(1<<20), "rss-MiB")
			b.ReportMetric(float64(r.lag.Microseconds())/1e3, "lag-ms")
			b.ReportMetric(float64(r.quietLag.Microseconds())/1e3, "quiet-ms")
			b.ReportMetric(float64(r.lines)/r.wall.Seconds(), "lines/s")
			if r.quietLag >= time.Second {
				b.Logf("a line written to a file quiet for %s took %s to arrive; the target is under 1s", quiet, r.quietLag)
			}
		})
	}
}

type fwdLiveResult struct {
	cpu, wall     time.Duration // the forwarder's, while the generator wrote
	lines         int64
	rss           int64
	lag, quietLag time.Duration
}

func fwdLiveTail(b *testing.B, bin string, files, rate int, dur, quiet time.Duration) fwdLiveResult {
	tree := fwdNewTree(b, files+1, 1)
	quietFile := tree.files[files]
	quietSince := time.Now()
	addr, srv := startDiscardServer(b)
	p, _ := fwdStart(b, bin, tree.root, addr)
	total := int64(files + 1)
	fwdWaitRecords(b, p, srv.records.Load, total, time.Minute)

	gen := &fwdGenerator{files: tree.files[:files], rate: rate}
	before, err := procStats(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	written, lastWrite, err := gen.run(b.Context(), dur)
	if err != nil {
		b.Fatal(err)
	}
	wall := time.Since(start)
	after, err := procStats(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	total += written
	acked := fwdWaitRecords(b, p, srv.records.Load, total, time.Minute)
	r := fwdLiveResult{
		cpu: after.CPU - before.CPU, wall: wall, lines: written, rss: after.RSS,
		lag: acked.Sub(lastWrite),
	}

	if wait := quiet - time.Since(quietSince); wait > 0 {
		time.Sleep(wait)
	}
	// The clock starts before the write: the benchmark may be descheduled
	// right after it, while the forwarder is already at work.
	wrote := time.Now()
	if _, err := quietFile.WriteLine(wrote, "stdout", "after a quiet while"); err != nil {
		b.Fatal(err)
	}
	r.quietLag = fwdWaitRecords(b, p, srv.records.Load, total+1, time.Minute).Sub(wrote)
	p.Stop(b)
	return r
}

// fwdGenerator appends lines to files at rate lines per second, as
// container runtimes do: every 10 ms a tick writes the lines due, one
// write(2) each, spread round robin over the files.
type fwdGenerator struct {
	files []*loggen.FileWriter
	rate  int
	next  int // file of the next line
	n     int
}

// run writes for dur and returns the lines written and when the last one
// was.
func (g *fwdGenerator) run(ctx context.Context, dur time.Duration) (int64, time.Time, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var written int64
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return written, last, ctx.Err()
		case now := <-tick.C:
			elapsed := min(now.Sub(start), dur)
			due := int64(elapsed.Seconds()*float64(g.rate)) - written
			for range due {
				f := g.files[g.next]
				if _, err := f.WriteLine(now, "stdout", fwdMessage(g.next, g.n)); err != nil {
					return written, last, err
				}
				g.next = (g.next + 1) % len(g.files)
				g.n++
				written++
			}
			if due > 0 {
				last = time.Now()
			}
			if elapsed >= dur {
				return written, last, nil
			}
		}
	}
}

// BenchmarkForwarderMemory is stage 7: the forwarder's memory with 100,
// 1,000 and 5,000 files, each with some history, a few of them active,
// once it has caught up.
func BenchmarkForwarderMemory(b *testing.B) {
	bin := fwdBinary(b)
	for _, files := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			settle := 10 * time.Second
			if testing.Short() {
				settle = time.Second
			}
			var rss, hwm int64
			for range b.N {
				const history, active, activeRate = 20, 10, 1000
				tree := fwdNewTree(b, files, history)
				addr, srv := startDiscardServer(b)
				p, _ := fwdStart(b, bin, tree.root, addr)
				total := int64(files * history)
				fwdWaitRecords(b, p, srv.records.Load, total, 5*time.Minute)
				gen := &fwdGenerator{files: tree.files[:active], rate: activeRate}
				written, _, err := gen.run(b.Context(), settle)
				if err != nil {
					b.Fatal(err)
				}
				fwdWaitRecords(b, p, srv.records.Load, total+written, time.Minute)
				st, err := procStats(p.Pid())
				if err != nil {
					b.Fatal(err)
				}
				rss, hwm = st.RSS, st.HWM
				p.Stop(b)
			}
			b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
			b.ReportMetric(float64(hwm)/(1<<20), "hwm-MiB")
		})
	}
}
