package metacache

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/internal/podpath"
	"github.com/podlogs/podlogs/internal/testkit/podfixture"
)

// realisticPod is the i-th pod of an EKS cluster (podfixture.RealisticPod),
// the Deployments spread over 50 namespaces.
func realisticPod(i int) *corev1.Pod {
	return podfixture.RealisticPod(i, fmt.Sprintf("team-%02d", i/10%50))
}

// filled returns a cache holding n pods, filled by its informer, and a
// reference to a file of each pod's first container.
func filled(tb testing.TB, n int) (*Cache, []podpath.Ref) {
	c, stop := informerFilled(tb, n)
	tb.Cleanup(stop)
	refs := make([]podpath.Ref, 0, n)
	for i := range n {
		p := realisticPod(i)
		refs = append(refs, podpath.Ref{Namespace: p.Namespace, Pod: p.Name, PodUID: string(p.UID), Container: "catalog",
			Restart: int(p.Status.ContainerStatuses[0].RestartCount)})
	}
	return c, refs
}

// BenchmarkEnrich is enrichment alone with 10,000 pods in the cache: per
// record, its share of a lookup (one per source per batch: batches of 100
// records from 10 files) and the document with the pod's metadata.
// Run with -cpu 1 for records/s per core.
func BenchmarkEnrich(b *testing.B) {
	c, refs := filled(b, 10000)
	ctx := context.Background()
	line := document.Line{
		Time: time.Date(2026, 11, 25, 8, 0, 0, 123456789, time.UTC), Stream: "stdout",
		Message: []byte(`2026-11-25T08:00:00.123Z  INFO 1 --- [nio-8080-exec-1] c.a.s.catalog.web.CatalogController : GET /catalogue 200 12ms`),
	}
	buf := make([]byte, 0, 4096)
	const perSource = 10 // records of one file in a batch
	var meta document.Meta
	b.SetBytes(int64(len(line.Message)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%perSource == 0 {
			ref := &refs[(i/perSource*7919)%len(refs)]
			r := c.Lookup(ctx, ref)
			if r.Source != Live {
				b.Fatal("miss")
			}
			meta = document.Meta{PodName: ref.Pod, Namespace: ref.Namespace, PodID: ref.PodUID, ContainerName: ref.Container,
				Host: "node-1", PodExtra: r.Pod.Extra(), ContainerExtra: r.ContainerExtra, ImageExtra: r.ImageExtra}
		}
		buf = document.Append(buf[:0], &meta, &line, line.Time)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkLookup is one lookup (a hit) among 10,000 pods.
func BenchmarkLookup(b *testing.B) {
	c, refs := filled(b, 10000)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Lookup(ctx, &refs[i%len(refs)])
		i++
	}
}

// TestMemoryPerPod holds the cache to the design's budget: at most 1 KiB
// per pod (BenchmarkCacheMemory has the figures).
func TestMemoryPerPod(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 10,000 pods")
	}
	// The target is 1 KiB a pod (BenchmarkCacheMemory reports it; about
	// 930-980 B measured); the test's bound leaves room for run-to-run noise
	// in the informer's spare buffers (±30 B) but not for a pod object or a
	// per-pod copy of the labels creeping back in (several KB each).
	const n, budget = 10000, 1280
	perPod, _, _ := cacheMemory(t, n)
	t.Logf("cache memory: %.0f bytes per pod (%d pods: the informer's store, the renderings, the maps)", perPod, n)
	if perPod > budget {
		t.Errorf("%.0f bytes per pod, over the budget of %d", perPod, budget)
	}
}

var heapProfile = flag.String("metacache.heapprofile", "", "write a heap profile of the cache of each BenchmarkCacheMemory run to this file (the last run wins)")

// BenchmarkCacheMemory is the memory of a cache holding N pods, filled as in
// production: the informer lists them from an API (a fake clientset's list
// reactor, so that no copy stays in the fake), its transform renders them
// and the event handlers publish them. B/pod is the live heap each pod adds
// (the informer's store, renderings, maps; an empty cache's heap
// subtracted), heap-MiB the live heap of the whole cache; rss-MiB is the
// test process's resident set once the garbage is returned to the OS, the
// test binary and whatever earlier runs left included: an upper bound.
func BenchmarkCacheMemory(b *testing.B) {
	sizes := []int{1000, 10000, 50000}
	if testing.Short() {
		sizes = sizes[:1]
	}
	for _, n := range sizes {
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			var perPod, heap, rss float64
			for b.Loop() {
				perPod, heap, rss = cacheMemory(b, n)
			}
			b.ReportMetric(perPod, "B/pod")
			b.ReportMetric(heap/(1<<20), "heap-MiB")
			b.ReportMetric(rss/(1<<20), "rss-MiB")
		})
	}
}

// cacheMemory fills a cache with n pods through its informer and returns
// the live heap it holds: per pod, less what an empty cache (its client,
// informers and metrics) holds, and in all; and the process's resident set
// meanwhile.
func cacheMemory(tb testing.TB, n int) (perPod, heap, rss float64) {
	heapOf(tb, 0, "") // once-only allocations (type registrations, pools)
	empty, _ := heapOf(tb, 0, "")
	heap, rss = heapOf(tb, n, *heapProfile)
	return (heap - empty) / float64(n), heap, rss
}

// heapOf is the live heap a cache holding n pods adds, and the resident
// set once the garbage is returned to the OS; profile, if not empty, is
// where to write a heap profile of the cache.
func heapOf(tb testing.TB, n int, profile string) (heap, rss float64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, stop := informerFilled(tb, n)
	defer stop()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			tb.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			tb.Fatal(err)
		}
	}
	debug.FreeOSMemory()
	rss = float64(vmRSS(tb))
	runtime.KeepAlive(c)
	return float64(int64(after.HeapAlloc) - int64(before.HeapAlloc)), rss
}

// informerFilled returns a running cache whose informer has listed n
// realistic pods, and a func that stops it.
func informerFilled(tb testing.TB, n int) (*Cache, func()) {
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: make([]corev1.Pod, n)}
		for i := range n {
			list.Items[i] = *realisticPod(i)
		}
		return true, list, nil
	})
	c := New(Config{Enrich: enrich.Options{Labels: true, Annotations: true}, TombstoneTTL: time.Minute, GetQPS: 1, GetBurst: 1},
		client, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	if !c.WaitForSync(wctx) {
		stop()
		tb.Fatal("cache did not sync")
	}
	c.mu.RLock()
	got := len(c.byUID)
	c.mu.RUnlock()
	if got != n {
		stop()
		tb.Fatalf("synced with %d pods, want %d", got, n)
	}
	return c, stop
}

// vmRSS is this process's resident set size (0 where /proc is missing).
func vmRSS(tb testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	return 0
}
