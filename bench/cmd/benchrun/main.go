// Command benchrun runs the benchmarks of issue 7 stage by stage (`make
// bench`), tees their raw `go test -bench` output to <out>/raw.txt (ready
// for benchstat), keeps the profiles of the end-to-end run in <out>, and
// writes bench/RESULTS.md: a table per stage, a summary of the figures
// against their targets, the data set, the machine and the commit.
//
// Each stage is one or more `go test -run '^$' -bench <pattern> -benchmem
// -count 1 <package>` commands run one after another; a failing command is
// reported in RESULTS.md and makes benchrun exit non-zero once every stage
// has run. Text of RESULTS.md between the lines "<!-- notes -->" and
// "<!-- /notes -->" is kept from one run to the next: that is where the
// profiles' findings and what was done about them are written by hand.
//
//	go run ./bench/cmd/benchrun [-stages 1,3,5] [-short]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podlogs/podlogs/internal/testkit/repo"
)

// run is one `go test` command of a stage.
type run struct {
	pkg, pattern string
	benchtime    string            // "" leaves go test's default (1s)
	env          map[string]string // added to the environment
	profile      string            // set: -cpuprofile/-memprofile of the test binary into out/<profile>.{cpu,mem}.pprof
	// skip, when set, says why the run cannot be done on this machine, or "".
	skip func() string
}

// needKubeAssets skips runs that need kube-apiserver and etcd (envtest)
// when they have not been unpacked: building them takes longer than every
// stage together (make kube-assets).
func needKubeAssets() string {
	d := os.Getenv("KUBEBUILDER_ASSETS")
	if d == "" {
		return "KUBEBUILDER_ASSETS is not set (make kube-assets)"
	}
	if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err != nil {
		return "no kube-apiserver in " + d + " (make kube-assets)"
	}
	return ""
}

type stage struct {
	n     int
	name  string
	about string // what it measures, for RESULTS.md
	runs  []run
}

func stages(out string) []stage {
	return []stage{
		{1, "floor", "A minimal reader counting the lines of the forwarder benchmark tree (loggen seed 1, 20 pods, mixed formats): the speed of reading the files at all.",
			[]run{{pkg: "./forwarder/internal/reader/", pattern: "^BenchmarkLineCounter$"}}},
		{2, "forwarder alone", "The forwarder binary catching up a loggen backlog against a discarding gRPC server (x-floor: its lines per CPU-second over the floor's, measured in the same run), and the in-process forwarder path (read, frame, batch, gRPC, acks).",
			[]run{{pkg: "./bench/", pattern: "^BenchmarkForwarderBacklog$", benchtime: "1x"}, {pkg: "./forwarder/internal/reader/", pattern: "^BenchmarkForwarder$"}}},
		{3, "aggregator alone", "Records through parse → enrich (10,000 pods in the metadata cache) → publish to an embedded JetStream file stream with a null consumer; records/cpu-s counts the whole process (JetStream server included). replicas=2: two converters/publishers with their own connections against the one server.",
			[]run{{pkg: "./aggregator/internal/ingest/", pattern: "^BenchmarkIngest$", benchtime: "300000x", profile: "ingest"}}},
		{4, "writer alone", "Documents from a JetStream stream into the real OpenSearch node by the aggregator's writer, against a minimal direct _bulk loader of the same documents, per bulk size.",
			[]run{{pkg: "./aggregator/internal/sink/", pattern: "^BenchmarkWriter$", benchtime: "1x"}}},
		{5, "end to end", "Lines written to files → documents searchable (forwarder and aggregator processes, real OpenSearch, refresh 1 s): a backlog at the maximum rate, the direct loader on the same documents, then half the maximum rate with probe lines for written→searchable latency.",
			[]run{{pkg: "./bench/", pattern: "^BenchmarkE2E$", benchtime: "1x", profile: "e2e-bench", env: map[string]string{"PODLOGS_BENCH_PROFILE_DIR": out}}}},
		{6, "live tail", "The forwarder following files written in many small writes: 10,000 lines/s over 100 files, then 1,000 lines/s over 1,000 files; a line in a quiet file.",
			[]run{{pkg: "./bench/", pattern: "^BenchmarkLiveTail$", benchtime: "1x"}}},
		{7, "memory", "Forwarder RSS following 100, 1,000 and 5,000 files; the aggregator's metadata cache per pod with 1k/10k/50k pods (in process), and the aggregator process's RSS with its cache listed from a real kube-apiserver (envtest; run when its binaries are unpacked).",
			[]run{
				{pkg: "./bench/", pattern: "^BenchmarkForwarderMemory$", benchtime: "1x"},
				{pkg: "./aggregator/internal/metacache/", pattern: "^BenchmarkCacheMemory$", benchtime: "1x"},
				{pkg: "./bench/", pattern: "^BenchmarkAggregatorMemory$", benchtime: "1x", skip: needKubeAssets},
			}},
		{8, "micro-benchmarks", "Framers, record parser, enrichment, document encoding, JetStream publishing, reader, generator.",
			[]run{
				{pkg: "./internal/cri/", pattern: "^(BenchmarkFramer|BenchmarkParseRecord)$"},
				{pkg: "./aggregator/internal/metacache/", pattern: "^(BenchmarkEnrich|BenchmarkLookup)$"},
				{pkg: "./aggregator/internal/document/", pattern: "^BenchmarkAppend$"},
				{pkg: "./aggregator/internal/buffer/", pattern: "^BenchmarkPublish$", benchtime: "20x"},
				{pkg: "./forwarder/internal/reader/", pattern: "^BenchmarkReader$"},
				{pkg: "./internal/loggen/", pattern: "^BenchmarkWriteLine$"},
			}},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := mainErr(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func mainErr(ctx context.Context) error {
	root, err := repo.Root()
	if err != nil {
		return err
	}
	out := flag.String("out", filepath.Join(root, "bench", "out"), "directory for raw.txt and the profiles (git-ignored)")
	results := flag.String("results", filepath.Join(root, "bench", "RESULTS.md"), "results file to write")
	only := flag.String("stages", "", "comma-separated stage numbers to run (default: all)")
	short := flag.Bool("short", false, "run every benchmark once with -short, to check the runner (figures meaningless)")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	rawPath := filepath.Join(*out, "raw.txt")
	raw, err := os.Create(rawPath)
	if err != nil {
		return err
	}
	defer raw.Close()

	all := stages(*out)
	var want []int
	for _, s := range strings.Split(*only, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			want = append(want, n)
		}
	}
	start := time.Now()
	var res []stageResult
	var failed []string
	for _, st := range all {
		if len(want) > 0 && !slices.Contains(want, st.n) {
			continue
		}
		label := fmt.Sprintf("stage %d/%d", st.n, len(all)-1)
		if st.n > len(all)-1 {
			label = "then"
		}
		fmt.Printf("%s: %s … (%s elapsed)\n", label, st.name, time.Since(start).Round(time.Second))
		sr := stageResult{stage: st}
		t0 := time.Now()
		for _, r := range st.runs {
			if r.skip != nil {
				if why := r.skip(); why != "" {
					msg := fmt.Sprintf("skipped %s %s: %s", r.pkg, r.pattern, why)
					sr.notes = append(sr.notes, msg)
					fmt.Println("  " + msg)
					continue
				}
			}
			fmt.Fprintf(raw, "# stage %d: %s: %s %s\n", st.n, st.name, r.pkg, r.pattern)
			lines, err := goTest(ctx, root, *out, r, *short, raw)
			sr.lines = append(sr.lines, lines...)
			if err != nil {
				msg := fmt.Sprintf("stage %d (%s): %s %s: %v", st.n, st.name, r.pkg, r.pattern, err)
				sr.errors = append(sr.errors, msg)
				failed = append(failed, msg)
				fmt.Println("  FAILED:", err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		sr.took = time.Since(t0)
		res = append(res, sr)
	}
	fmt.Printf("all stages done in %s; raw output in %s\n", time.Since(start).Round(time.Second), rawPath)

	profiles := topProfiles(ctx, root, *out)
	var notes string
	if old, err := os.ReadFile(*results); err == nil {
		notes = keptNotes(string(old))
	}
	md := render(root, res, profiles, notes, time.Since(start), *short)
	if err := os.WriteFile(*results, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", *results)
	// A copy of the raw output next to RESULTS.md, for benchstat comparisons
	// against the committed run.
	if b, err := os.ReadFile(rawPath); err == nil {
		os.WriteFile(filepath.Join(filepath.Dir(*results), "raw.txt"), b, 0o644)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d benchmark commands failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

// goTest runs one benchmark command, copying its output to raw and printing
// its result lines; it returns every output line.
func goTest(ctx context.Context, root, out string, r run, short bool, raw io.Writer) ([]string, error) {
	args := []string{"test", "-run", "^$", "-bench", r.pattern, "-benchmem", "-count", "1", "-timeout", "30m"}
	bt := r.benchtime
	if short {
		bt = "1x"
		args = append(args, "-short")
	}
	if bt != "" {
		args = append(args, "-benchtime", bt)
	}
	if r.profile != "" {
		// -o keeps the test binary beside its profiles for pprof.
		args = append(args, "-cpuprofile", filepath.Join(out, r.profile+".cpu.pprof"), "-memprofile", filepath.Join(out, r.profile+".mem.pprof"),
			"-o", filepath.Join(out, r.profile+".test"))
	}
	args = append(args, r.pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	for k, v := range r.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	waitErr := make(chan error, 1)
	go func() { // ends when the command does
		err := cmd.Wait()
		pw.Close()
		waitErr <- err
	}()
	var lines []string
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	t0 := time.Now()
	for sc.Scan() {
		l := sc.Text()
		fmt.Fprintln(raw, l)
		lines = append(lines, l)
		if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "--- FAIL") || strings.HasPrefix(l, "FAIL") || strings.Contains(l, "panic:") {
			fmt.Printf("  %s (%s)\n", l, time.Since(t0).Round(time.Second))
		}
	}
	io.Copy(io.Discard, pr)
	return lines, <-waitErr
}

type stageResult struct {
	stage  stage
	lines  []string
	errors []string
	notes  []string // runs skipped, and why
	took   time.Duration
}

// result is one benchmark line: name (without the -GOMAXPROCS suffix),
// iterations and metrics by unit, units in their order.
type result struct {
	name   string
	n      int64
	values map[string]float64
	units  []string
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

func parse(lines []string) []result {
	var rs []result
	for _, l := range lines {
		m := benchLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		r := result{name: m[1], n: n, values: map[string]float64{}}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			r.values[f[i+1]] = v
			r.units = append(r.units, f[i+1])
		}
		// A derived figure the floor's table needs: lines/s.
		if lpo, ok := r.values["lines/op"]; ok && r.values["ns/op"] > 0 {
			r.values["lines/s"] = lpo * 1e9 / r.values["ns/op"]
			r.units = append(r.units, "lines/s")
		}
		rs = append(rs, r)
	}
	return rs
}

// profile is the top of one pprof profile.
type profile struct {
	title, file, top string
}

// topProfiles runs `go tool pprof -top` on the end-to-end run's profiles.
func topProfiles(ctx context.Context, root, out string) []profile {
	specs := []struct{ title, file, index, binary string }{
		{"end to end: aggregator CPU (max-rate run)", "e2e-aggregator.cpu.pprof", "", ""},
		{"end to end: aggregator allocations (alloc_space, since start)", "e2e-aggregator.allocs.pprof", "alloc_space", ""},
		{"end to end: aggregator heap in use (after the max-rate run)", "e2e-aggregator.heap.pprof", "inuse_space", ""},
		{"end to end: forwarder CPU (max-rate run)", "e2e-forwarder.cpu.pprof", "", ""},
		{"end to end: forwarder allocations (alloc_space, since start)", "e2e-forwarder.allocs.pprof", "alloc_space", ""},
		{"end to end: forwarder heap in use (after the max-rate run)", "e2e-forwarder.heap.pprof", "inuse_space", ""},
		{"end to end: benchmark process CPU (OpenSearch polling, direct loader)", "e2e-bench.cpu.pprof", "", "e2e-bench.test"},
		{"end to end: benchmark process allocations", "e2e-bench.mem.pprof", "alloc_space", "e2e-bench.test"},
		{"stage 3, aggregator alone: CPU (converter, publisher, JetStream server, null consumer)", "ingest.cpu.pprof", "", "ingest.test"},
		{"stage 3, aggregator alone: allocations", "ingest.mem.pprof", "alloc_space", "ingest.test"},
	}
	var ps []profile
	for _, s := range specs {
		path := filepath.Join(out, s.file)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		args := []string{"tool", "pprof", "-top", "-nodecount=10"}
		if s.index != "" {
			args = append(args, "-sample_index="+s.index)
		}
		if s.binary != "" {
			args = append(args, filepath.Join(out, s.binary))
		}
		args = append(args, path)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		b, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				b = append(b, ee.Stderr...)
			}
		}
		top := strings.TrimSpace(string(b))
		if s.index == "" {
			// For CPU, where the time goes by caller as well: the flat top
			// of a pipeline is syscalls and memmove.
			args := append([]string{"tool", "pprof", "-top", "-cum", "-nodecount=15", "-show=" + ownCode}, args[4:]...)
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = root
			if b, err := cmd.Output(); err == nil {
				top += "\n\nby cumulative time, podlogs and its libraries only:\n" + strings.TrimSpace(string(b))
			}
		}
		ps = append(ps, profile{title: s.title, file: s.file, top: top})
	}
	return ps
}

// ownCode selects the functions of podlogs and of the libraries it drives
// in a cumulative listing.
const ownCode = `podlogs|nats-io|grpc|opensearch|net/http\.|encoding/json`

const notesBegin, notesEnd = "<!-- notes -->", "<!-- /notes -->"

func keptNotes(old string) string {
	i := strings.Index(old, notesBegin)
	j := strings.Index(old, notesEnd)
	if i < 0 || j < i {
		return ""
	}
	return strings.TrimSpace(old[i+len(notesBegin) : j])
}

// figure is a target of the issue and where its measure comes from.
type figure struct {
	name, target string
	measure      func(all map[string]result) (value float64, shown string, ok bool)
	met          func(v float64) bool
}

func metric(name, unit string) func(map[string]result) (float64, string, bool) {
	return func(all map[string]result) (float64, string, bool) {
		r, ok := all[name]
		if !ok {
			return 0, "", false
		}
		v, ok := r.values[unit]
		return v, fmt.Sprintf("%s %s", num(v), unit), ok
	}
}

func ratio(num1, unit1, den, unit2 string) func(map[string]result) (float64, string, bool) {
	return func(all map[string]result) (float64, string, bool) {
		a, ok1 := all[num1]
		b, ok2 := all[den]
		if !ok1 || !ok2 || b.values[unit2] == 0 {
			return 0, "", false
		}
		v := a.values[unit1] / b.values[unit2]
		return v, fmt.Sprintf("%.2f × (%s / %s)", v, num(a.values[unit1]), num(b.values[unit2])), true
	}
}

func figures(all map[string]result) []figure {
	// The benchmark names with GOMAXPROCS removed; sub-benchmark names as
	// their files spell them.
	ingest1, ingest2 := findName(all, "BenchmarkIngest/", "replicas=1"), findName(all, "BenchmarkIngest/", "replicas=2")
	return []figure{
		{"forwarder lines per CPU-second, catching up a backlog", "≥ 0.25 × floor", metric("BenchmarkForwarderBacklog", "x-floor"), func(v float64) bool { return v >= 0.25 }},
		{"allocations per line in framing (CRI)", "0", metric("BenchmarkFramer/cri", "allocs/op"), func(v float64) bool { return v == 0 }},
		{"allocations per line in framing (docker)", "0", metric("BenchmarkFramer/docker", "allocs/op"), func(v float64) bool { return v == 0 }},
		{"live tail CPU, 10k lines/s over 100 files", "≤ 0.05 core", metric("BenchmarkLiveTail/files=100,rate=10000", "cores"), func(v float64) bool { return v <= 0.05 }},
		{"quiet file's line forwarded within", "≤ 1000 ms", metric("BenchmarkLiveTail/files=100,rate=10000", "quiet-ms"), func(v float64) bool { return v <= 1000 }},
		{"aggregator records/s per core to JetStream (null consumer)", "≥ 250,000", metric(ingest1, "records/cpu-s"), func(v float64) bool { return v >= 250000 }},
		{"aggregator, 2 replicas : 1 (records/s)", "≥ 1.8", ratio(ingest2, "records/s", ingest1, "records/s"), func(v float64) bool { return v >= 1.8 }},
		{"writer : direct loader (2,000 docs a request)", "≥ 0.9", ratio("BenchmarkWriter/writer/docs=2000", "docs/s", "BenchmarkWriter/direct/docs=2000", "docs/s"), func(v float64) bool { return v >= 0.9 }},
		{"end to end : direct loader (docs/s)", "≥ 0.9", ratio("BenchmarkE2E/max-rate", "docs/s", "BenchmarkE2E/direct", "docs/s"), func(v float64) bool { return v >= 0.9 }},
		{"p99 written→searchable at half the maximum rate (refresh 1 s)", "≤ 2000 ms", metric("BenchmarkE2E/half-rate", "p99-ms"), func(v float64) bool { return v <= 2000 }},
		{"forwarder RSS following 1,000 files", "≤ 40 MiB", metric("BenchmarkForwarderMemory/files=1000", "rss-MiB"), func(v float64) bool { return v <= 40 }},
		{"aggregator metadata cache per pod (10k pods)", "≤ 1024 B", metric("BenchmarkCacheMemory/pods=10000", "B/pod"), func(v float64) bool { return v <= 1024 }},
	}
}

// findName returns the first benchmark name with prefix and containing sub.
func findName(all map[string]result, prefix, sub string) string {
	var names []string
	for n := range all {
		if strings.HasPrefix(n, prefix) && strings.Contains(n, sub) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return prefix + sub
	}
	return names[0]
}

func num(v float64) string {
	switch a := max(v, -v); {
	case a == 0:
		return "0"
	case a >= 100:
		return withCommas(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func withCommas(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func render(root string, res []stageResult, profiles []profile, notes string, took time.Duration, short bool) string {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmark results\n\n")
	w("Written by `make bench` (bench/cmd/benchrun) on %s in %s. Raw `go test -bench` output: [raw.txt](raw.txt) (benchstat-ready; `bench/out/raw.txt` after a run).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	if short {
		w("**This run used -short and -benchtime 1x: it checks the runner, its figures mean nothing.**\n\n")
	}
	w("## Machine\n\n")
	w("| | |\n|---|---|\n")
	w("| CPU | %s |\n| cores | %d |\n| memory | %s |\n| OS | %s/%s, kernel %s |\n| Go | %s |\n| commit | %s |\n\n",
		cpuModel(), runtime.NumCPU(), memTotal(), runtime.GOOS, runtime.GOARCH, kernel(), goVersion(root), commit(root))

	all := map[string]result{}
	var datasets []string
	for _, sr := range res {
		for _, r := range parse(sr.lines) {
			all[r.name] = r
		}
		for _, l := range sr.lines {
			if i := strings.Index(l, "dataset:"); i >= 0 {
				datasets = append(datasets, strings.TrimSpace(l[i+len("dataset:"):]))
			}
		}
	}

	w("## Summary\n\n")
	w("Figures of issue 7, reported, not asserted.\n\n")
	w("| figure | target | measured | met? |\n|---|---|---|---|\n")
	for _, f := range figures(all) {
		v, shown, ok := f.measure(all)
		met := "no"
		switch {
		case !ok:
			shown, met = "not measured", "–"
		case f.met(v):
			met = "yes"
		}
		w("| %s | %s | %s | %s |\n", f.name, f.target, shown, met)
	}
	w("\n")

	w("## Data set\n\n")
	w("Every stage generates its logs with internal/loggen, fixed seeds (the same pods and messages every run; timestamps are the time of writing): pods of the AWS retail-store sample's namespaces (ui, catalog, carts, checkout, orders), CRI or docker JSON per pod (`mixed`), the default mix of Spring Boot text lines, zap/pino JSON lines, stderr warnings, stack traces (1 %%) and lines over 16 KiB (0.3 %%).\n\n")
	if len(datasets) > 0 {
		for _, d := range dedupe(datasets) {
			w("- %s\n", d)
		}
		w("\n")
	}

	for _, sr := range res {
		st := sr.stage
		title := fmt.Sprintf("Stage %d: %s", st.n, st.name)
		if st.n > 7 {
			title = "Micro-benchmarks"
		}
		w("## %s\n\n%s (%s)\n\n", title, st.about, sr.took.Round(time.Second))
		for _, e := range sr.errors {
			w("**Failed:** %s\n\n", e)
		}
		for _, n := range sr.notes {
			w("%s.\n\n", strings.ToUpper(n[:1])+n[1:])
		}
		rs := parse(sr.lines)
		if len(rs) == 0 {
			w("No results.\n\n")
			continue
		}
		if st.n > 7 {
			// Micro-benchmarks: a table per benchmark, their units differ.
			var groups [][]result
			for _, r := range rs {
				top, _, _ := strings.Cut(r.name, "/")
				if len(groups) > 0 {
					if last, _, _ := strings.Cut(groups[len(groups)-1][0].name, "/"); last == top {
						groups[len(groups)-1] = append(groups[len(groups)-1], r)
						continue
					}
				}
				groups = append(groups, []result{r})
			}
			for _, g := range groups {
				table(&b, g)
			}
			continue
		}
		table(&b, rs)
		if st.n == 4 {
			writerRatios(&b, all)
		}
	}

	w("## Profiles\n\n")
	w("Kept in bench/out/ (git-ignored). Of the end-to-end run (stage 5): the aggregator's and the forwarder's CPU profiles of the max-rate run from their `/debug/pprof/` (flag --pprof), their allocation and heap profiles after it, and the benchmark process's own (-cpuprofile, -memprofile); and of stage 3, the aggregator-alone benchmark's. `go tool pprof -top` of each, top 10 by flat time; for CPU also the top 15 by cumulative time among podlogs and its libraries:\n\n")
	if len(profiles) == 0 {
		w("No profiles (stage 5 did not run).\n\n")
	}
	for _, p := range profiles {
		w("### %s\n\n`bench/out/%s`\n\n```\n%s\n```\n\n", p.title, p.file, trimPprof(p.top))
	}
	w("## Findings\n\nWhat the profiles say about each figure not reached, and what was done about them (kept by benchrun from run to run).\n\n")
	w("%s\n", notesBegin)
	if notes == "" {
		notes = "(to be written from the profiles above)"
	}
	w("%s\n%s\n", notes, notesEnd)
	return b.String()
}

// table writes results as a table, a column per unit.
func table(b *bytes.Buffer, rs []result) {
	var units []string
	for _, r := range rs {
		for _, u := range r.units {
			if !slices.Contains(units, u) {
				units = append(units, u)
			}
		}
	}
	fmt.Fprint(b, "| benchmark |")
	for _, u := range units {
		fmt.Fprintf(b, " %s |", u)
	}
	fmt.Fprint(b, "\n|---|")
	for range units {
		fmt.Fprint(b, "---:|")
	}
	fmt.Fprintln(b)
	for _, r := range rs {
		fmt.Fprintf(b, "| %s |", strings.TrimPrefix(r.name, "Benchmark"))
		for _, u := range units {
			if v, ok := r.values[u]; ok {
				fmt.Fprintf(b, " %s |", num(v))
			} else {
				fmt.Fprint(b, " |")
			}
		}
		fmt.Fprintln(b)
	}
	fmt.Fprintln(b)
}

// writerRatios adds the writer : direct ratio per bulk size.
func writerRatios(b *bytes.Buffer, all map[string]result) {
	var sizes []string
	for n := range all {
		if s, ok := strings.CutPrefix(n, "BenchmarkWriter/direct/docs="); ok {
			sizes = append(sizes, s)
		}
	}
	slices.SortFunc(sizes, func(a, c string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(c); return x - y })
	if len(sizes) == 0 {
		return
	}
	fmt.Fprintf(b, "| bulk size | writer docs/s | direct docs/s | writer : direct |\n|---:|---:|---:|---:|\n")
	for _, s := range sizes {
		d, wr := all["BenchmarkWriter/direct/docs="+s], all["BenchmarkWriter/writer/docs="+s]
		r := "–"
		if d.values["docs/s"] > 0 && wr.values["docs/s"] > 0 {
			r = fmt.Sprintf("%.2f", wr.values["docs/s"]/d.values["docs/s"])
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", s, num(wr.values["docs/s"]), num(d.values["docs/s"]), r)
	}
	fmt.Fprintln(b)
}

// trimPprof drops pprof's header lines that name the temporary binary.
func trimPprof(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "File: ") || strings.HasPrefix(l, "Build ID: ") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	return "unknown"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func goVersion(root string) string {
	cmd := exec.Command("go", "env", "GOVERSION")
	cmd.Dir = root
	b, _ := cmd.Output()
	return strings.TrimSpace(string(b))
}

// commit is the short commit, "-dirty" when the tree has changes.
func commit(root string) string {
	cmd := exec.Command("git", "rev-parse", "--short", "HEAD")
	cmd.Dir = root
	b, err := cmd.Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(b))
	cmd = exec.Command("git", "status", "--porcelain", "--untracked-files=no")
	cmd.Dir = root
	if st, err := cmd.Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "-dirty"
	}
	return c
}
