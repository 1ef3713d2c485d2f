package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// Stage 5 of issue 7: the whole pipeline, lines written to files →
// documents searchable in a real OpenSearch node (refresh 1 s), with a
// forwarder and an aggregator process (embedded JetStream, two bulk
// workers, production defaults otherwise; no Kubernetes API: metadata from
// the file paths).
//
// The sub-benchmarks share one pipeline and run in order; run them with
// -benchtime 1x (each does its work once, whatever b.N):
//
//   - max-rate: a loggen backlog (seed 1, mixed CRI/docker, the default mix)
//     written before the forwarder starts; docs/s from the forwarder's
//     start until the index counts every line. A backlog makes the
//     pipeline run as fast as its slowest tier: the maximum sustainable
//     rate. CPU-seconds per million lines of each process.
//   - direct: the same documents, read back from the index, loaded into a
//     fresh index of the same mapping by a minimal _bulk loader (2 workers,
//     2,000 documents a request, as the aggregator's writer); x-direct is
//     max-rate's docs/s over this one's.
//   - half-rate: loggen (the command, seed 2) writes at half the max rate
//     for a while, a probe file takes one line every 50 ms, and the index is
//     polled every 100 ms for the probes: written→searchable p50/p99/max.
//
// PODLOGS_BENCH_E2E_LINES (default 200,000) sizes the backlog and
// PODLOGS_BENCH_E2E_SECONDS (default 30) the half-rate run. With
// PODLOGS_BENCH_PROFILE_DIR set, the aggregator's and the forwarder's CPU
// profiles of the max-rate run (their /debug/pprof/profile, the first
// PODLOGS_BENCH_PROFILE_SECONDS, default 20) and their allocation and heap
// profiles after it are written there.
func BenchmarkE2E(b *testing.B) {
	lines := e2eEnvInt("PODLOGS_BENCH_E2E_LINES", 200000)
	seconds := e2eEnvInt("PODLOGS_BENCH_E2E_SECONDS", 30)
	const pods = 50
	osURL := ostest.URL(b) // skips under -short
	bins := buildBinaries(b)
	index := ostest.Index(b)
	srch := e2eSearch{url: osURL, index: index}
	root := proctest.TempDir(b, "pods")

	// The backlog, before any process starts.
	stats, err := loggen.Run(context.Background(), loggen.Config{
		Root: root, Seed: 1, Pods: pods, Format: "mixed", Lines: int64((lines + pods - 1) / pods),
	})
	if err != nil {
		b.Fatal(err)
	}

	listen, aggAdmin, fwdAdmin := proctest.FreeAddr(b), proctest.FreeAddr(b), proctest.FreeAddr(b)
	agg := startProc(b, bins, "aggregator", "aggregator",
		"--id=bench-0", "--listen="+listen, "--admin-addr="+aggAdmin, "--data-dir="+proctest.TempDir(b, "agg"),
		"--opensearch-url="+osURL, "--index="+index, "--enrichment=off", "--log.format=text", "--pprof")
	agg.WaitReady(b, aggAdmin)

	parent := b
	var maxRate float64
	var want int64 // documents expected in the index so far
	var fwd *proctest.Proc
	b.Run("max-rate", func(b *testing.B) {
		b.Logf("dataset: stage=e2e seed=1 pods=%d lines=%d bytes=%d format=mixed mix=default", pods, stats.Lines, stats.Bytes)
		profDir := srch.profileDir()
		profSeconds := e2eEnvInt("PODLOGS_BENCH_PROFILE_SECONDS", 20)
		agg0, err := procStats(agg.Pid())
		if err != nil {
			b.Fatal(err)
		}
		cpu0 := srch.cpu(b)
		start := time.Now()
		// The forwarder belongs to the parent: it runs on for half-rate.
		fwd = startProc(parent, bins, "forwarder", "forwarder",
			"--pods-root="+root, "--data-dir="+proctest.TempDir(parent, "fwd"), "--aggregator=dns:///"+listen,
			"--node-name=node-bench", "--admin-addr="+fwdAdmin, "--log.format=text", "--pprof")
		fwd.WaitReady(b, fwdAdmin)
		var profiles sync.WaitGroup
		if profDir != "" {
			for name, admin := range map[string]string{"aggregator": aggAdmin, "forwarder": fwdAdmin} {
				profiles.Go(func() {
					e2eFetch(b, admin, fmt.Sprintf("/debug/pprof/profile?seconds=%d", profSeconds), filepath.Join(profDir, "e2e-"+name+".cpu.pprof"))
				})
			}
		}
		want = stats.Lines
		srch.waitCount(b, want, 15*time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		cpu0.report(b, srch.cpu(b), elapsed)
		aggS, err1 := procStats(agg.Pid())
		fwdS, err2 := procStats(fwd.Pid())
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		maxRate = float64(want) / elapsed.Seconds()
		b.SetBytes(stats.Bytes)
		b.ReportMetric(maxRate, "docs/s")
		b.ReportMetric((aggS.CPU-agg0.CPU).Seconds()/float64(want)*1e6, "agg-cpu-s/Mlines")
		b.ReportMetric(fwdS.CPU.Seconds()/float64(want)*1e6, "fwd-cpu-s/Mlines")
		b.ReportMetric(float64(aggS.HWM)/(1<<20), "agg-peak-rss-MiB")
		b.ReportMetric(float64(fwdS.HWM)/(1<<20), "fwd-peak-rss-MiB")
		profiles.Wait()
		if profDir != "" {
			for name, admin := range map[string]string{"aggregator": aggAdmin, "forwarder": fwdAdmin} {
				e2eFetch(b, admin, "/debug/pprof/allocs", filepath.Join(profDir, "e2e-"+name+".allocs.pprof"))
				e2eFetch(b, admin, "/debug/pprof/heap?gc=1", filepath.Join(profDir, "e2e-"+name+".heap.pprof"))
			}
		}
	})
	if maxRate == 0 {
		return
	}

	b.Run("direct", func(b *testing.B) {
		docs := srch.readAll(b)
		if int64(len(docs)) != want {
			b.Fatalf("read back %d documents, want %d", len(docs), want)
		}
		direct := e2eSearch{url: osURL, index: index + "-direct"}
		srch.copyMapping(b, direct.index)
		var size int64
		for _, d := range docs {
			size += int64(len(d.source))
		}
		b.ResetTimer()
		cpu0 := srch.cpu(b)
		start := time.Now()
		e2eDirectLoad(b, osURL, direct.index, docs, 2000, 2)
		direct.waitCount(b, want, 5*time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		cpu0.report(b, srch.cpu(b), elapsed)
		b.SetBytes(size)
		rate := float64(want) / elapsed.Seconds()
		b.ReportMetric(rate, "docs/s")
		b.ReportMetric(maxRate/rate, "e2e-x-direct")
	})

	b.Run("half-rate", func(b *testing.B) {
		if fwd == nil {
			b.Skip("no pipeline")
		}
		probe, err := loggen.OpenFile(filepath.Join(root, "probe_probe-0_00000000-0000-4000-8000-000000000001", "probe", "0.log"), loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer probe.Close()
		// A first line makes the forwarder find the file before timing starts.
		if _, err := probe.WriteLine(time.Now(), "stdout", "probe warm-up"); err != nil {
			b.Fatal(err)
		}
		want++
		srch.waitCount(b, want, time.Minute)

		rate := maxRate / 2
		perPod := rate / pods
		podLines := int64(perPod * float64(seconds))
		fwd0, _ := procStats(fwd.Pid())
		agg0, _ := procStats(agg.Pid())
		cpu0 := srch.cpu(b)
		b.ResetTimer()
		start := time.Now()
		gen := startProc(b, bins, "loggen", "loggen", "--root="+root, "--seed=2", fmt.Sprintf("--pods=%d", pods), "--format=mixed",
			fmt.Sprintf("--rate=%g", perPod), fmt.Sprintf("--lines=%d", podLines), "--log.format=text")

		genEnd := make(chan time.Time, 1)
		go func() { <-gen.Done(); genEnd <- time.Now() }() // ends with loggen

		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
		defer cancel()
		written := e2eProbe(ctx, b, probe, srch)
		genElapsed := (<-genEnd).Sub(start)
		// CPU over the whole measured interval, probes' tail included.
		cpu1, fwdS, aggS, elapsed := srch.cpu(b), e2eStatsNow(b, fwd), e2eStatsNow(b, agg), time.Since(start)
		cpu0.report(b, cpu1, elapsed)
		if gen.Err() != nil {
			b.Fatalf("loggen: %v\n%s", gen.Err(), gen.Tail(4000))
		}
		genLines := e2eLoggenLines(b, gen)
		want += genLines + int64(len(written.at))
		srch.waitCount(b, want, 5*time.Minute)
		b.StopTimer()

		lat := written.latencies(b)
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("no probe latencies")
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(float64(genLines)/genElapsed.Seconds(), "docs/s")
		b.ReportMetric(rate, "target-docs/s")
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		b.ReportMetric(float64(len(lat)), "probes")
		b.ReportMetric((fwdS.CPU-fwd0.CPU).Seconds()/elapsed.Seconds(), "fwd-cores")
		b.ReportMetric((aggS.CPU-agg0.CPU).Seconds()/elapsed.Seconds(), "agg-cores")
		b.Logf("dataset: stage=e2e-half-rate seed=2 pods=%d lines=%d rate=%.0f/s probes=%d", pods, genLines, rate, len(lat))
	})
	if fwd != nil {
		fwd.Stop(b)
	}
	agg.Stop(b)
}

// e2eStatsNow is procStats of p, failing the benchmark on an error.
func e2eStatsNow(tb testing.TB, p *proctest.Proc) procStat {
	s, err := procStats(p.Pid())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// e2eProbes are the probe lines written, by number, with their write time.
type e2eProbes struct {
	at []time.Time
	// seen is when the poller first found each probe searchable.
	mu   sync.Mutex
	seen map[int]time.Time
}

// e2eProbe writes a probe line every 50 ms until ctx ends while polling the
// index every 100 ms for the probes written so far; it goes on polling
// (at most 30 s) until every probe has been seen.
func e2eProbe(ctx context.Context, b *testing.B, probe *loggen.FileWriter, srch e2eSearch) *e2eProbes {
	p := &e2eProbes{seen: map[int]time.Time{}}
	done := make(chan struct{})
	var written sync.WaitGroup
	written.Go(func() { // ends with ctx
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			t := time.Now()
			if _, err := probe.WriteLine(t, "stdout", fmt.Sprintf("probe %d", n)); err != nil {
				b.Error(err)
				return
			}
			p.mu.Lock()
			p.at = append(p.at, t)
			p.mu.Unlock()
		}
	})
	go func() { // the poller; ends once the writer has and every probe is seen
		defer close(done)
		var deadline time.Time
		writing := make(chan struct{})
		go func() { written.Wait(); close(writing) }()
		for {
			select {
			case <-writing:
				if deadline.IsZero() {
					deadline = time.Now().Add(30 * time.Second)
				}
			default:
			}
			p.mu.Lock()
			n := len(p.at)
			complete := len(p.seen) == n
			p.mu.Unlock()
			if !deadline.IsZero() && (complete || time.Now().After(deadline)) {
				return
			}
			for _, id := range srch.probesVisible(b) {
				p.mu.Lock()
				if _, ok := p.seen[id]; !ok {
					p.seen[id] = time.Now()
				}
				p.mu.Unlock()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	<-done
	return p
}

// latencies are the probes' written→searchable times.
func (p *e2eProbes) latencies(b *testing.B) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lat []time.Duration
	for id, t := range p.at {
		if s, ok := p.seen[id]; ok {
			lat = append(lat, s.Sub(t))
		} else {
			b.Errorf("probe %d never became searchable", id)
		}
	}
	return lat
}

// e2eLoggenLines reads "lines=N" from loggen's last log line.
func e2eLoggenLines(b *testing.B, gen *proctest.Proc) int64 {
	out, err := os.ReadFile(gen.Out)
	if err != nil {
		b.Fatal(err)
	}
	i := bytes.LastIndex(out, []byte(" lines="))
	if i < 0 {
		b.Fatalf("no lines= in loggen's output:\n%s", out)
	}
	f := strings.Fields(string(out[i+len(" lines="):]))
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		b.Fatalf("loggen lines=%q: %v", f[0], err)
	}
	return n
}

// e2eSearch is a minimal OpenSearch client for the benchmark.
type e2eSearch struct {
	url, index string
}

func (e2eSearch) profileDir() string {
	d := os.Getenv("PODLOGS_BENCH_PROFILE_DIR")
	if d != "" {
		os.MkdirAll(d, 0o755)
	}
	return d
}

func (s e2eSearch) do(tb testing.TB, method, path string, body []byte) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("%s %s: %d %.2000s", method, path, resp.StatusCode, out)
	}
	return out
}

// count is the number of searchable documents (no refresh is forced: the
// index's own 1 s refresh decides, as for a user's search); 0 before the
// index exists.
func (s e2eSearch) count(tb testing.TB) int64 {
	resp, err := http.Get(s.url + "/" + s.index + "/_count")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0
	}
	var r struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		tb.Fatal(err)
	}
	return r.Count
}

// waitCount polls every 100 ms until the index counts want documents,
// failing on more or after timeout.
func (s e2eSearch) waitCount(tb testing.TB, want int64, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := s.count(tb)
		if n == want {
			return
		}
		if n > want {
			tb.Fatalf("index %s holds %d documents, more than the %d lines written", s.index, n, want)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("index %s holds %d documents after %s, want %d", s.index, n, timeout, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probesVisible returns the numbers of the probe lines searchable now.
func (s e2eSearch) probesVisible(tb testing.TB) []int {
	q := `{"size":10000,"_source":["log"],"query":{"term":{"kubernetes.namespace_name":"probe"}}}`
	var r struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Log string `json:"log"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(s.do(tb, http.MethodPost, "/"+s.index+"/_search", []byte(q)), &r); err != nil {
		tb.Fatal(err)
	}
	var ids []int
	for _, h := range r.Hits.Hits {
		if n, err := strconv.Atoi(strings.TrimPrefix(h.Source.Log, "probe ")); err == nil {
			ids = append(ids, n)
		}
	}
	return ids
}

// e2eDoc is a stored document: its id and source as stored.
type e2eDoc struct {
	id     string
	source json.RawMessage
}

// readAll reads every document of the index with a scroll.
func (s e2eSearch) readAll(tb testing.TB) []e2eDoc {
	var docs []e2eDoc
	type page struct {
		ScrollID string `json:"_scroll_id"`
		Hits     struct {
			Hits []struct {
				ID     string          `json:"_id"`
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	var p page
	body := s.do(tb, http.MethodPost, "/"+s.index+"/_search?scroll=2m", []byte(`{"size":5000,"sort":["_doc"]}`))
	for {
		p = page{}
		if err := json.Unmarshal(body, &p); err != nil {
			tb.Fatal(err)
		}
		if len(p.Hits.Hits) == 0 {
			break
		}
		for _, h := range p.Hits.Hits {
			docs = append(docs, e2eDoc{id: h.ID, source: h.Source})
		}
		q, _ := json.Marshal(map[string]string{"scroll": "2m", "scroll_id": p.ScrollID})
		body = s.do(tb, http.MethodPost, "/_search/scroll", q)
	}
	q, _ := json.Marshal(map[string]any{"scroll_id": []string{p.ScrollID}})
	s.do(tb, http.MethodDelete, "/_search/scroll", q)
	return docs
}

// copyMapping creates index with this index's mapping and field limits.
func (s e2eSearch) copyMapping(tb testing.TB, index string) {
	var m map[string]struct {
		Mappings json.RawMessage `json:"mappings"`
	}
	if err := json.Unmarshal(s.do(tb, http.MethodGet, "/"+s.index+"/_mapping", nil), &m); err != nil {
		tb.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"settings": map[string]any{"index.mapping.total_fields.limit": 2000, "index.mapping.depth.limit": 20},
		"mappings": m[s.index].Mappings,
	})
	s.do(tb, http.MethodPut, "/"+index, body)
}

// e2eDirectLoad is the minimal direct loader: bulk-create the documents,
// with their ids, in requests of bulk documents from workers goroutines.
func e2eDirectLoad(tb testing.TB, url, index string, docs []e2eDoc, bulk, workers int) {
	s := e2eSearch{url: url, index: index}
	work := make(chan []e2eDoc)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var body bytes.Buffer
			for part := range work {
				body.Reset()
				for _, d := range part {
					fmt.Fprintf(&body, `{"create":{"_index":%q,"_id":%q}}`+"\n", index, d.id)
					body.Write(d.source)
					body.WriteByte('\n')
				}
				out := s.do(tb, http.MethodPost, "/_bulk", body.Bytes())
				if bytes.Contains(out[:min(len(out), 100)], []byte(`"errors":true`)) {
					tb.Errorf("bulk errors: %.1000s", out)
				}
			}
		})
	}
	for start := 0; start < len(docs); start += bulk {
		work <- docs[start:min(start+bulk, len(docs))]
	}
	close(work)
	wg.Wait()
}

// e2eFetch saves an admin endpoint's answer (a profile) to file.
func e2eFetch(tb testing.TB, admin, path, file string) {
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		tb.Errorf("fetch %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Errorf("fetch %s: %d %v", path, resp.StatusCode, err)
		return
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		tb.Error(err)
	}
}

func e2eEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// e2eCPU is CPU time used so far: OpenSearch's process (its node stats) and
// the machine's, all processes (/proc/stat), to tell which one a phase was
// short of.
type e2eCPU struct {
	os, machine time.Duration
}

func (s e2eSearch) cpu(tb testing.TB) e2eCPU {
	var c e2eCPU
	var st struct {
		Nodes map[string]struct {
			Process struct {
				CPU struct {
					TotalInMillis int64 `json:"total_in_millis"`
				} `json:"cpu"`
			} `json:"process"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(s.do(tb, http.MethodGet, "/_nodes/_local/stats/process", nil), &st); err != nil {
		tb.Fatal(err)
	}
	for _, n := range st.Nodes {
		c.os += time.Duration(n.Process.CPU.TotalInMillis) * time.Millisecond
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait; guest time is in user already
			c.machine += time.Duration(n) * time.Second / clockTicks
		}
	}
	return c
}

// report adds OpenSearch's and the machine's busy cores over elapsed.
func (c e2eCPU) report(b *testing.B, now e2eCPU, elapsed time.Duration) {
	b.ReportMetric((now.os-c.os).Seconds()/elapsed.Seconds(), "opensearch-cores")
	b.ReportMetric((now.machine-c.machine).Seconds()/elapsed.Seconds(), "machine-cores")
}
