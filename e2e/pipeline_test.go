package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// written is one line as the test wrote it.
type written struct {
	ns, pod, uid, container, stream, msg string
	t                                    time.Time
}

// podSet writes lines for pods the way a runtime does: even pods in CRI
// format, odd pods in docker json-file; stdout and stderr; unicode; one
// 100 KiB line per pod, which the runtime splits in 16 KiB parts.
type podSet struct {
	root    string
	writers []*loggen.FileWriter
	pods    []written // identity of each pod (msg, stream, t unset)
	lines   map[string]written
	clock   time.Time
}

func newPodSet(t *testing.T, root string, pods int) *podSet {
	t.Helper()
	ps := &podSet{root: root, lines: map[string]written{}, clock: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	for i := range pods {
		ns := []string{"ui", "catalog", "carts", "checkout", "orders"}[i%5]
		w := written{ns: ns, pod: fmt.Sprintf("%s-7d9f8b6c5-p%03d", ns, i), uid: fmt.Sprintf("0b6e6f0a-1c2d-4e5f-8a9b-%012d", i), container: ns}
		format := loggen.FormatCRI
		if i%2 == 1 {
			format = loggen.FormatDocker
		}
		path := filepath.Join(root, w.ns+"_"+w.pod+"_"+w.uid, w.container, "0.log")
		fw, err := loggen.OpenFile(path, format, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fw.Close() })
		ps.writers = append(ps.writers, fw)
		ps.pods = append(ps.pods, w)
	}
	return ps
}

// write appends lines [from, to) to every pod's file.
func (ps *podSet) write(t *testing.T, from, to int) {
	t.Helper()
	for n := from; n < to; n++ {
		for i, fw := range ps.writers {
			w := ps.pods[i]
			w.stream = "stdout"
			if n%7 == 3 {
				w.stream = "stderr"
			}
			switch {
			case n == 250:
				w.msg = fmt.Sprintf("pod %d line %d long: ", i, n) + strings.Repeat("0123456789abcdef", 100<<10/16)
			case n%10 == 5:
				w.msg = fmt.Sprintf(`pod %d line %d {"level":"info","msg":"café 日本語 🚀 \"quoted\" tab\there"}`, i, n)
			case n%50 == 7:
				w.msg = fmt.Sprintf("pod %d line %d", i, n) + "  ⣿ Ünïcödé ✓ — ‘smart’"
			default:
				w.msg = fmt.Sprintf("%s  INFO 1 --- [nio-8080-exec-%d] c.a.s.u.web.HomeController : pod %d line %d GET /home 200", ps.clock.Format("2006-01-02T15:04:05.000Z"), n%10, i, n)
			}
			ps.clock = ps.clock.Add(time.Millisecond + 123*time.Nanosecond)
			w.t = ps.clock
			if _, err := fw.WriteLine(w.t, w.stream, w.msg); err != nil {
				t.Fatal(err)
			}
			key := w.pod + "\x00" + w.msg
			if _, dup := ps.lines[key]; dup {
				t.Fatalf("BUG: test wrote a line twice: %q", key)
			}
			ps.lines[key] = w
		}
	}
}

// check compares the index with what was written, line for line.
func (ps *podSet) check(t *testing.T, s search) {
	t.Helper()
	docs := s.all(t)
	if len(docs) != len(ps.lines) {
		t.Fatalf("index holds %d documents, wrote %d lines", len(docs), len(ps.lines))
	}
	seen := map[string]bool{}
	for _, d := range docs {
		key := d.Kubernetes.PodName + "\x00" + d.Log
		w, ok := ps.lines[key]
		if !ok {
			t.Fatalf("document matches no written line: pod %s log %.200q", d.Kubernetes.PodName, d.Log)
		}
		if seen[key] {
			t.Fatalf("line stored twice: %.200q", key)
		}
		seen[key] = true
		want := fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|node-e2e|false|false",
			w.t.Format("2006-01-02T15:04:05.000Z"), w.t.Format("2006-01-02T15:04:05.000000000Z"), w.stream, w.ns, w.pod, w.uid, w.container)
		got := fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%s|%v|%v", d.Timestamp, d.Time, d.Stream, d.Kubernetes.NamespaceName,
			d.Kubernetes.PodName, d.Kubernetes.PodID, d.Kubernetes.ContainerName, d.Kubernetes.Host, d.Podlogs.Malformed, d.Podlogs.Truncated)
		if got != want {
			t.Fatalf("line %.100q:\n got %s\nwant %s", w.msg, got, want)
		}
	}
}

func TestE2EEveryLineOnce(t *testing.T) {
	osURL, index := ostest.URL(t), ostest.Index(t)
	root := proctest.TempDir(t, "pods")
	ps := newPodSet(t, root, 20)
	ps.write(t, 0, 500)

	agg := startAggregator(t, "aggregator-0", proctest.TempDir(t, "agg"), osURL, index, proctest.FreeAddr(t))
	startForwarder(t, "forwarder-0", root, proctest.TempDir(t, "fwd"), agg.listen)

	s := search{url: osURL, index: index}
	s.waitCount(t, 10000, 3*time.Minute)
	time.Sleep(2 * time.Second) // anything doubled would show up now
	s.waitCount(t, 10000, time.Second)
	ps.check(t, s)
	ps.checkDashboardQueries(t, s)
}

func TestE2ERestartsMidRun(t *testing.T) {
	osURL, index := ostest.URL(t), ostest.Index(t)
	root := proctest.TempDir(t, "pods")
	aggDir, fwdDir := proctest.TempDir(t, "agg"), proctest.TempDir(t, "fwd")
	listen := proctest.FreeAddr(t)
	ps := newPodSet(t, root, 20)
	ps.write(t, 0, 300)

	agg := startAggregator(t, "aggregator-0", aggDir, osURL, index, listen)
	fwd := startForwarder(t, "forwarder-0", root, fwdDir, agg.listen)
	s := search{url: osURL, index: index}
	// Stop both in the middle of the run: some lines are indexed, others are
	// in flight or not yet read.
	for s.count(t) < 1000 {
		time.Sleep(20 * time.Millisecond)
	}
	fwd.StopClean(t)
	agg.StopClean(t)
	t.Logf("stopped with %d documents indexed", s.count(t))

	ps.write(t, 300, 400) // written while nothing runs
	agg = startAggregator(t, "aggregator-1", aggDir, osURL, index, listen)
	fwd = startForwarder(t, "forwarder-1", root, fwdDir, agg.listen)
	ps.write(t, 400, 450)

	// Restart the forwarder alone, then the aggregator alone, while lines flow.
	fwd.StopClean(t)
	startForwarder(t, "forwarder-2", root, fwdDir, agg.listen)
	agg.StopClean(t)
	ps.write(t, 450, 500)
	startAggregator(t, "aggregator-2", aggDir, osURL, index, listen)

	s.waitCount(t, 10000, 3*time.Minute)
	time.Sleep(2 * time.Second)
	s.waitCount(t, 10000, time.Second)
	ps.check(t, s)
}
