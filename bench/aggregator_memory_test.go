package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
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

	"github.com/podlogs/podlogs/internal/kubetest"
)

// BenchmarkAggregatorMemory is the aggregator process's memory with N pods
// in a real kube-apiserver (envtest; skipped under -short): it starts with
// --kubeconfig, lists the pods into its metadata cache, and once ready (the
// cache synced) its resident set is read. rss-MiB is VmRSS then, hwm-MiB the
// peak (the initial list's garbage included); pods=0 is the process without
// pods, for the difference. Pods are those of metacache's BenchmarkCacheMemory
// in shape (Deployments of 10 replicas, an init container, the application
// and a sidecar, statuses with container ids), spread over 10 namespaces.
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
	admin := freeAddr(tb)
	agg := startProc(tb, bins, "aggregator", "aggregator",
		"--id=bench-mem", "--listen="+freeAddr(tb), "--admin-addr="+admin, "--data-dir="+tb.TempDir(),
		"--opensearch-url=http://127.0.0.1:1", "--index=podlogs-bench-mem", "--kubeconfig="+kubeconfig,
		"--enrich-sync-timeout=10m", "--log.format=text")
	defer agg.stop(tb)
	waitReady(tb, agg, admin)
	deadline := time.Now().Add(10 * time.Minute)
	for aggMetric(tb, admin, "podlogs_aggregator_metacache_pods") != float64(n) {
		if time.Now().After(deadline) {
			tb.Fatalf("the cache does not hold %d pods after 10 minutes", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the informer's start-up garbage collected, as it would be
	s, err := procStats(agg.pid())
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

// aggPod is the i-th pod: see BenchmarkAggregatorMemory.
func aggPod(i int, ns string) *corev1.Pod {
	d := i / 10
	app := fmt.Sprintf("catalog-%d", d)
	hash := fmt.Sprintf("%x", sha256.Sum256([]byte(app)))
	name := fmt.Sprintf("%s-%s-%05x", app, hash[:9], i%(1<<20))
	id := func(what string) string {
		return fmt.Sprintf("containerd://%x", sha256.Sum256([]byte(name+"/"+what)))
	}
	image := fmt.Sprintf("123456789012.dkr.ecr.us-west-2.amazonaws.com/retail/%s:1.%d.0", app, d%7)
	imageID := fmt.Sprintf("123456789012.dkr.ecr.us-west-2.amazonaws.com/retail/%s@sha256:%s", app, hash)
	const (
		sidecar   = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.1"
		sidecarID = "public.ecr.aws/aws-observability/aws-otel-collector@sha256:5e9d7b1c0b2f6f3e4f2b1d7c9a8e6f5d4c3b2a1908f7e6d5c4b3a29180f7e6d5"
		initImage = "public.ecr.aws/docker/library/busybox:1.36"
		initID    = "public.ecr.aws/docker/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"
	)
	started := metav1.NewTime(time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC))
	restarts := int32(0)
	var last corev1.ContainerState
	if i%10 == 3 {
		restarts = 1
		last.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", ContainerID: id("catalog-0"), StartedAt: started, FinishedAt: started}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels: map[string]string{
				"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "app.kubernetes.io/component": "service",
				"app.kubernetes.io/part-of": "retail-store", "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "catalog-1.2.0",
				"pod-template-hash": hash[:9],
			},
			Annotations: map[string]string{
				"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics",
				"checksum/config": hash, "kubectl.kubernetes.io/restartedAt": "2026-11-20T08:00:00Z",
			},
		},
		Spec: corev1.PodSpec{
			NodeName:       fmt.Sprintf("ip-10-42-%d-%d.us-west-2.compute.internal", i%256, i%7),
			InitContainers: []corev1.Container{{Name: "wait-for-db", Image: initImage}},
			Containers: []corev1.Container{
				{Name: "catalog", Image: image, Env: []corev1.EnvVar{{Name: "DB_ENDPOINT", Value: "catalog-mysql:3306"}}},
				{Name: "otel-collector", Image: sidecar},
			},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.42.%d.%d", i/256%256, i%256), StartTime: &started,
			InitContainerStatuses: []corev1.ContainerStatus{{
				Name: "wait-for-db", ContainerID: id("wait-for-db"), Image: initImage, ImageID: initID,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", ContainerID: id("wait-for-db")}},
			}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "catalog", RestartCount: restarts, Ready: true, ContainerID: id("catalog-" + strconv.Itoa(int(restarts))),
				Image: image, ImageID: imageID, LastTerminationState: last,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			}, {
				Name: "otel-collector", Ready: true, ContainerID: id("otel-collector"), Image: sidecar, ImageID: sidecarID,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			}},
		},
	}
}
