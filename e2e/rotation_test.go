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

	"github.com/podlogs/podlogs/internal/loggen"
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
	root := tempDir(t, "pods")
	natsAddr := freeAddr(t)
	listen, aggAdmin, fwdAdmin := freeAddr(t), freeAddr(t), freeAddr(t)
	agg := startFrom(t, bins, "aggregator-0",
		"--id=aggregator-0", "--listen="+listen, "--admin-addr="+aggAdmin, "--data-dir="+tempDir(t, "agg"),
		"--nats-embedded-listen="+natsAddr, "--bulk-workers=0", "--log.format=text")
	waitReady(t, agg, aggAdmin)
	fwd := startFrom(t, bins, "forwarder-0",
		"--pods-root="+root, "--data-dir="+tempDir(t, "fwd"), "--aggregator=dns:///"+listen,
		"--node-name=node-e2e", "--admin-addr="+fwdAdmin, "--log.format=text")
	waitReady(t, fwd, fwdAdmin)

	var mu sync.Mutex
	want := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
	defer cancel()
	stats, err := loggen.Run(ctx, loggen.Config{
		Root: root, Seed: 7, Pods: 10, Format: "mixed", Rate: float64(rate),
		RotateBytes: 2 << 20, RotateKeep: 2,
		Observe: func(l loggen.Line) {
			mu.Lock()
			want[l.Pod+"\x00"+strconv.FormatInt(l.Time.UnixNano(), 10)+"\x00"+l.Message]++
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d lines (%.0f lines/s), %d MB, %d rotations", stats.Lines, float64(stats.Lines)/float64(seconds), stats.Bytes>>20, stats.Rotations)

	// Count at the aggregator's output.
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(context.Background(), "PODLOGS")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		info, err := stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs >= uint64(stats.Lines) || time.Now().After(deadline) {
			t.Logf("stream holds %d of %d after %s", info.State.Msgs, stats.Lines, time.Since(deadline.Add(-3*time.Minute)).Round(time.Second))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	cons, err := stream.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	total := 0
	for {
		batch, err := cons.FetchNoWait(5000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var d struct {
				Time       time.Time `json:"time"`
				Log        string    `json:"log"`
				Kubernetes struct {
					PodName string `json:"pod_name"`
				} `json:"kubernetes"`
			}
			if err := json.Unmarshal(m.Data(), &d); err != nil {
				t.Fatal(err)
			}
			got[d.Kubernetes.PodName+"\x00"+strconv.FormatInt(d.Time.UnixNano(), 10)+"\x00"+d.Log]++
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total != int(stats.Lines) {
		t.Errorf("stream holds %d documents, wrote %d lines", total, stats.Lines)
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
		t.Fatalf("%d lines missing, %d doubled, of %d", missing, doubled, stats.Lines)
	}
	fwd.stop(t)
	agg.stop(t)
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
