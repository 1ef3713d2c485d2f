package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
)

// TestE2EForwarderMemory follows 5,000 files of which 10 are written to:
// the forwarder's RSS stays under 64 MiB. Then the aggregator stops for
// 60 s while the writers go on: the RSS stays flat (the window is full and
// reading pauses; the files are the buffer), and once the aggregator is
// back every line arrives.
func TestE2EForwarderMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	const files, active, rate = 5000, 10, 200 // lines/s per active file
	outage := time.Duration(envInt("PODLOGS_E2E_OUTAGE_SECONDS", 60)) * time.Second
	bins := fastBinaries(t)
	root := tempDir(t, "pods")
	var lines atomic.Int64
	var writers []*loggen.FileWriter
	for i := range files {
		ns := []string{"ui", "catalog", "carts", "checkout", "orders"}[i%5]
		path := filepath.Join(root, fmt.Sprintf("%s_%s-6d9f8b6c5-%05d_1b6e6f0a-1c2d-4e5f-8a9b-%012d/%s/0.log", ns, ns, i, i, ns))
		w, err := loggen.OpenFile(path, loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for j := range 2 {
			w.WriteLine(time.Now(), "stdout", fmt.Sprintf("file %d started, line %d", i, j))
			lines.Add(1)
		}
		if i < active {
			writers = append(writers, w)
			defer w.Close()
		} else {
			w.Close()
		}
	}

	natsAddr, listen, aggAdmin, fwdAdmin := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	aggDir := tempDir(t, "agg")
	aggArgs := []string{"--id=aggregator-0", "--listen=" + listen, "--admin-addr=" + aggAdmin, "--data-dir=" + aggDir,
		"--nats-embedded-listen=" + natsAddr, "--bulk-workers=0", "--log.format=text"}
	agg := startFrom(t, bins, "aggregator-0", aggArgs...)
	waitReady(t, agg, aggAdmin)
	fwd := startFrom(t, bins, "forwarder-0",
		"--pods-root="+root, "--data-dir="+tempDir(t, "fwd"), "--aggregator=dns:///"+listen,
		"--node-name=node-e2e", "--admin-addr="+fwdAdmin, "--log.format=text")
	waitReady(t, fwd, fwdAdmin)

	ctx, stopWriting := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / rate)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if _, err := w.WriteLine(time.Now(), "stdout", fmt.Sprintf("active %d line %d: GET /catalogue 200 %s", i, n, strings.Repeat("x", 100))); err != nil {
					t.Error(err)
					return
				}
				lines.Add(1)
			}
		}()
	}
	defer func() { stopWriting(); wg.Wait() }()

	time.Sleep(15 * time.Second)
	steady := rssMiB(t, fwd)
	t.Logf("forwarder RSS with %d files (%d active): %.1f MiB", files, active, steady)
	if steady > 64 {
		t.Errorf("forwarder RSS %.1f MiB with %d files, want under 64 MiB", steady, files)
	}

	agg.stop(t)
	time.Sleep(10 * time.Second) // the window fills, reading pauses
	lo, hi := 1e9, 0.0
	for end := time.Now().Add(outage); time.Now().Before(end); time.Sleep(2 * time.Second) {
		r := rssMiB(t, fwd)
		lo, hi = min(lo, r), max(hi, r)
	}
	t.Logf("forwarder RSS during a %s outage: %.1f..%.1f MiB", outage, lo, hi)
	if hi > lo*1.10 {
		t.Errorf("forwarder RSS grew from %.1f to %.1f MiB while the aggregator was away", lo, hi)
	}

	agg = startFrom(t, bins, "aggregator-1", aggArgs...)
	waitReady(t, agg, aggAdmin)
	time.Sleep(3 * time.Second)
	stopWriting()
	wg.Wait()
	want := lines.Load()

	stream := aggregatorStream(t, natsAddr)
	if n := waitStream(t, stream, uint64(want), 2*time.Minute); n != uint64(want) {
		logMetrics(t, fwdAdmin, "podlogs_forwarder_")
		t.Fatalf("stream holds %d documents, %d lines were written", n, want)
	}
	time.Sleep(time.Second) // a doubled line would arrive now
	if n := waitStream(t, stream, uint64(want)+1, 0); n != uint64(want) {
		t.Fatalf("stream holds %d documents, %d lines were written", n, want)
	}
	t.Logf("all %d lines arrived after the outage", want)
}

// rssMiB reads a process's resident set size from /proc.
func rssMiB(t *testing.T, p *proc) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read %s status: %v", p.name, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no VmRSS for %s", p.name)
	return 0
}
