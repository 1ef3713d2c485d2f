package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// One pod's long lines must not stop a node's logs (issue 11). With the
// default limits and the embedded JetStream, ordinary pods write steadily
// while one pod writes a 20 MiB line (a base64 dump), another a 5 MiB run of
// CRI partial records that never gets its final part (the container was
// killed mid-line; its file is deleted later), and a third 1 MiB of random
// bytes. Every ordinary line arrives exactly once, within seconds; each long
// one is one document, cut and flagged with its original size; nothing is
// refused by the buffer or dead-lettered, and no batch is resent.
func TestE2ELongLinesDoNotStopANode(t *testing.T) {
	osURL := ostest.URL(t)
	index := "eks-pod-logs-long"
	s := search{url: osURL, index: index}
	agg := startAggregator(t, "aggregator-0", proctest.TempDir(t, "agg"), osURL, index, proctest.FreeAddr(t))
	root := proctest.TempDir(t, "pods")
	fwdAdmin := proctest.FreeAddr(t)
	start(t, "forwarder-0", "--pods-root="+root, "--data-dir="+proctest.TempDir(t, "fwd"), "--aggregator=dns:///"+agg.listen,
		"--node-name=node-e2e", "--admin-addr="+fwdAdmin, "--scan-interval=200ms", "--poll-interval=50ms",
		"--batch-linger=50ms", "--log.format=text", "--shutdown-grace=20s").WaitReady(t, fwdAdmin)

	podDir := func(name string, i int) string {
		return filepath.Join(root, fmt.Sprintf("long_%s-%d_7d9f8b6c-1c2d-4e5f-8a9b-%012d", name, i, i), "app")
	}
	open := func(dir, file string) *loggen.FileWriter {
		w, err := loggen.OpenFile(filepath.Join(dir, file), loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return w
	}
	write := func(w *loggen.FileWriter, msg string) {
		if _, err := w.WriteLine(time.Now(), "stdout", msg); err != nil {
			t.Error(err)
		}
	}

	// Ordinary pods, steadily, before, during and after the long lines.
	const pods, perPod = 5, 1500
	var wg sync.WaitGroup
	for p := range pods {
		w := open(podDir("web", p), "0.log")
		wg.Go(func() {
			for i := range perPod {
				write(w, fmt.Sprintf("web pod %d line %d: GET /cart 200 2.1ms", p, i))
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	// The long-line pods write ordinary lines around their long one.
	r := rand.New(rand.NewPCG(11, 12))
	dump := make([]byte, 15<<20)
	for i := range dump {
		dump[i] = byte(r.UintN(256))
	}
	random := make([]byte, 1<<20)
	for i := range random {
		if random[i] = byte(r.UintN(256)); random[i] == '\n' {
			random[i] = ' '
		}
	}
	const around = 50
	time.Sleep(300 * time.Millisecond)
	dumpPod := open(podDir("dump", 0), "0.log")
	randomPod := open(podDir("random", 0), "0.log")
	for i := range around {
		write(dumpPod, fmt.Sprintf("dump pod line %d", i))
		write(randomPod, fmt.Sprintf("random pod line %d", i))
	}
	dumpLine := "heap dump: " + base64.StdEncoding.EncodeToString(dump) // 20 MiB
	write(dumpPod, dumpLine)
	write(randomPod, string(random))
	for i := around; i < 2*around; i++ {
		write(dumpPod, fmt.Sprintf("dump pod line %d", i))
		write(randomPod, fmt.Sprintf("random pod line %d", i))
	}
	// A container killed in the middle of a 5 MiB line: partial records and
	// no final one. Its restart writes to 1.log; kubelet deletes 0.log later.
	killedDir := podDir("killed", 0)
	killed := open(killedDir, "0.log")
	for i := range around {
		write(killed, fmt.Sprintf("killed pod line %d", i))
	}
	var partials bytes.Buffer
	chunk := strings.Repeat("p", 16<<10)
	for range 5 << 20 / len(chunk) {
		fmt.Fprintf(&partials, "%s stdout P %s\n", time.Now().UTC().Format(time.RFC3339Nano), chunk)
	}
	f, err := os.OpenFile(filepath.Join(killedDir, "0.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(partials.Bytes()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	restarted := open(killedDir, "1.log")
	for i := around; i < 2*around; i++ {
		write(restarted, fmt.Sprintf("killed pod line %d", i))
	}
	wg.Wait()
	lastWrite := time.Now()
	time.Sleep(2 * time.Second)
	if err := os.Remove(filepath.Join(killedDir, "0.log")); err != nil {
		t.Fatal(err)
	}

	ordinary := pods*perPod + 3*2*around
	want := ordinary + 3
	s.waitCount(t, want, 60*time.Second)
	t.Logf("all %d documents searchable %s after the last ordinary line was written", want, time.Since(lastWrite).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second)
	s.waitCount(t, want, time.Second)

	hits := s.do(t, http.MethodPost, "/"+index+"/_search", map[string]any{
		"size": 10, "query": map[string]any{"term": map[string]any{"podlogs.truncated": true}},
		"_source": []string{"podlogs", "kubernetes.pod_name", "log"},
	})
	var resp struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Log     string `json:"log"`
					Podlogs struct {
						OriginalBytes int64 `json:"original_bytes"`
					} `json:"podlogs"`
					Kubernetes struct {
						PodName string `json:"pod_name"`
					} `json:"kubernetes"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(hits, &resp); err != nil {
		t.Fatal(err)
	}
	cut := resp.Hits.Hits
	if len(cut) != 3 {
		t.Fatalf("%d documents flagged truncated, want the 3 long lines", len(cut))
	}
	for _, h := range cut {
		d := h.Source
		t.Logf("pod %s: log of %d bytes kept, original %d bytes", d.Kubernetes.PodName, len(d.Log), d.Podlogs.OriginalBytes)
		switch {
		case strings.HasPrefix(d.Kubernetes.PodName, "dump"):
			if !strings.HasPrefix(d.Log, dumpLine[:1000]) || d.Podlogs.OriginalBytes < int64(len(dumpLine)) {
				t.Errorf("the dump's document: %.60q…, original_bytes %d", d.Log, d.Podlogs.OriginalBytes)
			}
		case strings.HasPrefix(d.Kubernetes.PodName, "killed"):
			if !strings.HasPrefix(d.Log, chunk[:1000]) || d.Podlogs.OriginalBytes < int64(partials.Len()) {
				t.Errorf("the partial run's document: %.60q…, original_bytes %d", d.Log, d.Podlogs.OriginalBytes)
			}
		case strings.HasPrefix(d.Kubernetes.PodName, "random"):
			if d.Podlogs.OriginalBytes < 1<<20 || len(d.Log) < 100<<10 {
				t.Errorf("the random line's document: %d bytes kept, original_bytes %d", len(d.Log), d.Podlogs.OriginalBytes)
			}
		default:
			t.Errorf("an ordinary line of pod %s was cut", d.Kubernetes.PodName)
		}
	}
	for _, m := range []struct{ name, match string }{
		{"podlogs_aggregator_publish_failures_total", ""},
		{"podlogs_aggregator_publish_refused_total", ""},
		{"podlogs_aggregator_dead_letters_total", ""},
		{"podlogs_aggregator_bulk_requests_total", `result="failed"`},
	} {
		var match []string
		if m.match != "" {
			match = append(match, m.match)
		}
		if v := aggMetric(t, agg, m.name, match...); v != 0 {
			t.Errorf("%s %s = %v, want 0: nothing is refused or retried", m.name, m.match, v)
		}
	}
	// The forwarder cut each at 1 MiB; the random line's document, escaped
	// to several times that, was cut again to --max-document-bytes.
	if v := aggMetric(t, agg, "podlogs_aggregator_documents_cut_total"); v != 1 {
		t.Errorf("documents cut by the aggregator: %v, want the random line's", v)
	}
	fwd := "http://" + fwdAdmin + "/metrics"
	if v := metric(t, fwd, "podlogs_forwarder_batches_resent_total"); v != 0 {
		t.Errorf("the forwarder resent %v batches", v)
	}
	if v := metric(t, fwd, "podlogs_forwarder_lost_bytes_total"); v != 0 {
		t.Errorf("the forwarder lost %v bytes", v)
	}
}
