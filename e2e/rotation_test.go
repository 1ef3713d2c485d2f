package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podlogs/podlogs/internal/docmsg"
	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// TestE2ERotationUnderLoad writes fast into 10 pods' files while kubelet-
// style rotation renames them every 2 MB (older ones gzipped, then deleted),
// and counts what the aggregator stored in its JetStream stream: every line
// exactly once. The rate is PODLOGS_E2E_RATE lines/s per pod (default 5000)
// for PODLOGS_E2E_SECONDS (default 30).
func TestE2ERotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	rate := envInt("PODLOGS_E2E_RATE", 5000)
	seconds := envInt("PODLOGS_E2E_SECONDS", 30)
	bins := fastBinaries(t)
	agg, fwd, root, natsAddr, fwdAdmin := startLoadPipeline(t, bins)
	want, stats := writeRotating(t, root, rate, seconds)

	// Count at the aggregator's output.
	docs := newStreamDocs(t, aggregatorStream(t, natsAddr))
	got := map[string]int{}
	each := func(b []byte) { addDoc(t, got, b) }
	start := time.Now()
	n := docs.wait(t, uint64(stats.Lines), 3*time.Minute, each)
	t.Logf("stream holds %d of %d after %s", n, stats.Lines, time.Since(start).Round(time.Second))
	time.Sleep(time.Second) // a doubled line would arrive now
	docs.more(t, each)
	compareLines(t, want, got, stats.Lines, fwdAdmin)
	fwd.StopClean(t)
	agg.StopClean(t)
}

// TestE2ERotationThroughOpenSearch is the same shape at 1,000 lines/s per pod
// (PODLOGS_E2E_OS_RATE), checked in the real index.
func TestE2ERotationThroughOpenSearch(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	osURL, index := ostest.URL(t), ostest.Index(t)
	bins := fastBinaries(t)
	_, _, root, _, fwdAdmin := startLoadPipeline(t, bins, "--opensearch-url="+osURL, "--index="+index, "--flush-interval=200ms")
	want, stats := writeRotating(t, root, envInt("PODLOGS_E2E_OS_RATE", 1000), envInt("PODLOGS_E2E_SECONDS", 30))
	s := search{url: osURL, index: index}
	s.waitCount(t, int(stats.Lines), 5*time.Minute)
	time.Sleep(2 * time.Second)
	s.waitCount(t, int(stats.Lines), time.Second)
	got := map[string]int{}
	for _, d := range s.all(t) {
		b, _ := json.Marshal(d)
		addDoc(t, got, b)
	}
	compareLines(t, want, got, stats.Lines, fwdAdmin)
}

// startLoadPipeline starts an aggregator (ingest only, unless aggArgs say
// where to write) and a forwarder from bins.
func startLoadPipeline(t *testing.T, bins string, aggArgs ...string) (agg, fwd *proctest.Proc, root, natsAddr, fwdAdmin string) {
	t.Helper()
	root = proctest.TempDir(t, "pods")
	natsAddr = proctest.FreeAddr(t)
	listen, aggAdmin := proctest.FreeAddr(t), proctest.FreeAddr(t)
	fwdAdmin = proctest.FreeAddr(t)
	args := []string{"--id=aggregator-0", "--listen=" + listen, "--admin-addr=" + aggAdmin, "--data-dir=" + proctest.TempDir(t, "agg"),
		"--nats-embedded-listen=" + natsAddr, "--nats-stream-max-bytes=8589934592", "--log.format=text"}
	if len(aggArgs) == 0 {
		args = append(args, "--bulk-workers=0")
	} else {
		args = append(args, aggArgs...)
	}
	agg = startFrom(t, bins, "aggregator-0", args...)
	agg.WaitReady(t, aggAdmin)
	fwd = startFrom(t, bins, "forwarder-0",
		"--pods-root="+root, "--data-dir="+proctest.TempDir(t, "fwd"), "--aggregator=dns:///"+listen,
		"--node-name=node-e2e", "--admin-addr="+fwdAdmin, "--log.format=text")
	fwd.WaitReady(t, fwdAdmin)
	return agg, fwd, root, natsAddr, fwdAdmin
}

// writeRotating writes 10 pods at rate lines/s each for seconds, rotating
// every 2 MB and keeping two rotated files (the older gzipped), as kubelet.
func writeRotating(t *testing.T, root string, rate, seconds int) (map[string]int, loggen.Stats) {
	t.Helper()
	var mu sync.Mutex
	want := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
	defer cancel()
	stats, err := loggen.Run(ctx, loggen.Config{
		Root: root, Seed: 7, Pods: 10, Format: "mixed", Rate: float64(rate),
		RotateBytes: 2 << 20, RotateKeep: 2,
		Observe: func(l loggen.Line) {
			mu.Lock()
			want[lineKey(l.Pod, l.Time, l.Message)]++
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d lines (%.0f lines/s), %d MB, %d rotations", stats.Lines, float64(stats.Lines)/float64(seconds), stats.Bytes>>20, stats.Rotations)
	return want, stats
}

func lineKey(pod string, t time.Time, msg string) string {
	return pod + "\x00" + strconv.FormatInt(t.UnixNano(), 10) + "\x00" + msg
}

func addDoc(t *testing.T, got map[string]int, b []byte) {
	var d struct {
		Time       time.Time `json:"time"`
		Log        string    `json:"log"`
		Kubernetes struct {
			PodName string `json:"pod_name"`
		} `json:"kubernetes"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	got[lineKey(d.Kubernetes.PodName, d.Time, d.Log)]++
}

// compareLines fails unless every written line was delivered exactly once.
func compareLines(t *testing.T, want, got map[string]int, lines int64, fwdAdmin string) {
	t.Helper()
	total := 0
	for _, n := range got {
		total += n
	}
	if total != int(lines) {
		t.Errorf("%d documents delivered, %d lines written", total, lines)
	}
	missing, doubled := 0, 0
	for k, n := range want {
		switch g := got[k]; {
		case g < n:
			missing += n - g
			if missing <= 3 {
				t.Errorf("line missing: %.150q", k)
			}
		case g > n:
			doubled += g - n
		}
	}
	if missing > 0 || doubled > 0 {
		logMetrics(t, fwdAdmin, "podlogs_forwarder_")
		t.Fatalf("%d lines missing, %d doubled, of %d", missing, doubled, lines)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// logMetrics logs a process's own metrics, for a failing test's reader.
func logMetrics(t *testing.T, admin, prefix string) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Logf("metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			lines = append(lines, l)
		}
	}
	t.Logf("metrics of %s:\n%s", admin, strings.Join(lines, "\n"))
}

// aggregatorStream connects to an aggregator's embedded NATS server (started
// with --nats-embedded-listen) and returns its documents stream.
func aggregatorStream(t *testing.T, natsAddr string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), "PODLOGS")
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// streamDocs reads the documents of an aggregator's stream, from its start,
// as the writers would: a message holds a batch's documents of one namespace.
type streamDocs struct {
	cons jetstream.Consumer
	n    uint64 // documents read so far
}

func newStreamDocs(t *testing.T, stream jetstream.Stream) *streamDocs {
	t.Helper()
	cons, err := stream.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &streamDocs{cons: cons}
}

// more reads the documents stored since the last call, passing each to
// each (if not nil), and returns how many were read in all.
func (s *streamDocs) more(t *testing.T, each func(doc []byte)) uint64 {
	t.Helper()
	var docs []docmsg.Doc
	for {
		batch, err := s.cons.FetchNoWait(5000)
		if err != nil {
			t.Fatal(err)
		}
		msgs := 0
		for m := range batch.Messages() {
			msgs++
			if docs, err = docmsg.Append(docs[:0], m.Headers(), m.Data()); err != nil {
				t.Fatal(err)
			}
			s.n += uint64(len(docs))
			for _, d := range docs {
				if each != nil {
					each(d.Data)
				}
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if msgs == 0 {
			return s.n
		}
	}
}

// wait reads until at least want documents were read, or the timeout
// passes, and returns how many were.
func (s *streamDocs) wait(t *testing.T, want uint64, timeout time.Duration, each func(doc []byte)) uint64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if n := s.more(t, each); n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
}
