package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podlogs/podlogs/internal/testkit/kubetest"
	"github.com/podlogs/podlogs/internal/testkit/podfixture"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// BenchmarkAggregatorMemory is the aggregator process's memory with N pods
// in a real kube-apiserver (envtest; skipped under -short): it starts with
// --kubeconfig, lists the pods into its metadata cache, and once ready (the
// cache synced) its resident set is read. rss-MiB is VmRSS then, hwm-MiB the
// peak (the initial list's garbage included); pods=0 is the process without
// pods, for the difference. Pods are those of metacache's BenchmarkCacheMemory
// (podfixture.RealisticPod: Deployments of 10 replicas, an init container,
// the application and a sidecar, statuses with container ids), spread over
// 10 namespaces.
// PODLOGS_BENCH_AGG_PODS (e.g. "0,1000,10000,50000") sets the sizes;
// creating 50,000 pods takes minutes on a small machine.
func BenchmarkAggregatorMemory(b *testing.B) {
	sizes := aggSizes(b, "0,1000,10000")
	cfg := kubetest.Config(b) // skips under -short
	b.Cleanup(kubetest.Stop)  // only this benchmark of package bench uses it
	cfg.QPS, cfg.Burst = 5000, 5000
	client := kubernetes.NewForConfigOrDie(cfg)
	kc := kubetest.Kubeconfig(b)
	bins := buildBinaries(b)
	var nss []string
	for range 10 {
		nss = append(nss, kubetest.Namespace(b, client, map[string]string{"team": "retail"}))
	}
	created := 0
	for _, n := range sizes {
		if n > created {
			begin := time.Now()
			aggCreatePods(b, client, nss, created, n)
			b.Logf("created pods %d to %d in %s", created, n, time.Since(begin).Round(time.Millisecond))
			created = n
		}
		b.Run("pods="+strconv.Itoa(n), func(b *testing.B) {
			var s procStat
			for b.Loop() {
				s = aggMeasure(b, bins, kc, n)
			}
			b.ReportMetric(float64(s.RSS)/(1<<20), "rss-MiB")
			b.ReportMetric(float64(s.HWM)/(1<<20), "hwm-MiB")
		})
	}
}

func aggSizes(tb testing.TB, def string) []int {
	spec := def
	if v := strings.TrimSpace(os.Getenv("PODLOGS_BENCH_AGG_PODS")); v != "" {
		spec = v
	}
	var sizes []int
	for f := range strings.SplitSeq(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || len(sizes) > 0 && n < sizes[len(sizes)-1] {
			tb.Fatalf("PODLOGS_BENCH_AGG_PODS %q: want ascending pod counts", spec)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// aggMeasure starts an aggregator, waits until its cache holds n pods and
// returns its memory then.
func aggMeasure(tb testing.TB, bins, kubeconfig string, n int) procStat {
	admin := proctest.FreeAddr(tb)
	agg := startProc(tb, bins, "aggregator", "aggregator",
		"--id=bench-mem", "--listen="+proctest.FreeAddr(tb), "--admin-addr="+admin, "--data-dir="+tb.TempDir(),
		"--opensearch-url=http://127.0.0.1:1", "--index=podlogs-bench-mem", "--kubeconfig="+kubeconfig,
		"--enrich-sync-timeout=10m", "--log.format=text")
	defer agg.Stop(tb)
	agg.WaitReady(tb, admin)
	deadline := time.Now().Add(10 * time.Minute)
	for aggMetric(tb, admin, "podlogs_aggregator_metacache_pods") != float64(n) {
		if time.Now().After(deadline) {
			tb.Fatalf("the cache does not hold %d pods after 10 minutes", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the informer's start-up garbage collected, as it would be
	s, err := procStats(agg.Pid())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// aggMetric reads an unlabelled metric from an admin address.
func aggMetric(tb testing.TB, admin, name string) float64 {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("%s %q: %v", name, v, err)
			}
			return f
		}
	}
	return -1
}

// aggCreatePods creates pods from..to-1 with their statuses, with a few
// requests at a time.
func aggCreatePods(tb testing.TB, client kubernetes.Interface, nss []string, from, to int) {
	ctx := context.Background()
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Go(func() {
			for i := range next {
				p := aggPod(i, nss[i/10%len(nss)])
				status := p.Status
				created, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
				if err == nil {
					created.Status = status
					_, err = client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("pod %d: %w", i, err))
					mu.Unlock()
				}
			}
		})
	}
	for i := from; i < to; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// aggPod is the i-th pod (podfixture.RealisticPod) as a request to create
// it: without what the API server sets (uid, resourceVersion, creation time,
// managed fields) and with a source for each volume, which validation
// requires.
func aggPod(i int, ns string) *corev1.Pod {
	p := podfixture.RealisticPod(i, ns)
	p.UID, p.ResourceVersion, p.CreationTimestamp, p.ManagedFields = "", "", metav1.Time{}, nil
	for j := range p.Spec.Volumes {
		p.Spec.Volumes[j].EmptyDir = &corev1.EmptyDirVolumeSource{}
	}
	return p
}
