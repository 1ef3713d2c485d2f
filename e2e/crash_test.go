package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// TestE2EForwarderSIGKILL kills the forwarder at 20 random moments while
// 200,000 lines are written, restarting it each time: every line must be
// indexed exactly once. Only acknowledged offsets are checkpointed, so a
// kill loses nothing; what is sent again carries the same ids.
func TestE2EForwarderSIGKILL(t *testing.T) {
	const pods, perPod, kills = 10, 20000, 20
	if testing.Short() {
		t.Skip("long end-to-end test")
	}
	osURL, index := ostest.URL(t), ostest.Index(t)
	root := proctest.TempDir(t, "pods")
	fwdDir := proctest.TempDir(t, "fwd")
	agg := startAggregator(t, "aggregator-0", proctest.TempDir(t, "agg"), osURL, index, proctest.FreeAddr(t))

	var wg sync.WaitGroup
	start := time.Now()
	for p := range pods {
		path := filepath.Join(root, fmt.Sprintf("crash_app-%d-7d9f8b6c5-abcde_5b0e6f0a-1c2d-4e5f-8a9b-%012d/app/0.log", p, p))
		format := loggen.FormatCRI
		if p%2 == 1 {
			format = loggen.FormatDocker
		}
		w, err := loggen.OpenFile(path, format, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			// About 30 s of writing in small bursts, as a busy app does.
			for i := range perPod {
				if _, err := w.WriteLine(time.Now(), "stdout", fmt.Sprintf("pod %d line %d: GET /catalogue?page=%d 200 3.2ms", p, i, i%17)); err != nil {
					t.Error(err)
					return
				}
				if i%100 == 99 {
					time.Sleep(150 * time.Millisecond)
				}
			}
		}()
	}

	rng := rand.New(rand.NewPCG(1, 2))
	fwd := startForwarder(t, "forwarder-0", root, fwdDir, agg.listen)
	for k := range kills {
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		fwd.Kill() // SIGKILL: no flush, no final checkpoint
		fwd = startForwarder(t, fmt.Sprintf("forwarder-%d", k+1), root, fwdDir, agg.listen)
	}
	wg.Wait()
	t.Logf("%d kills while writing %d lines in %s", kills, pods*perPod, time.Since(start).Round(time.Second))

	s := search{url: osURL, index: index}
	s.waitCount(t, pods*perPod, 5*time.Minute)
	time.Sleep(2 * time.Second)
	s.waitCount(t, pods*perPod, time.Second)
}
