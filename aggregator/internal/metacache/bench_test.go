package metacache

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/internal/podpath"
)

// realisticPod is a Deployment's pod as an API server returns it: labels,
// annotations, managed fields, env, volumes, probes; most of it is trimmed.
func realisticPod(i int) *corev1.Pod {
	name := fmt.Sprintf("catalog-7d9f8b6c5-%05d", i)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: fmt.Sprintf("ns-%d", i%50), UID: types.UID(fmt.Sprintf("0b6e6f0a-1c2d-4e5f-8a9b-%012d", i)),
			ResourceVersion: "123456",
			Labels: map[string]string{
				"app.kubernetes.io/name": "catalog", "app.kubernetes.io/instance": "catalog", "app.kubernetes.io/component": "service",
				"app.kubernetes.io/owner": "retail-store-sample", "pod-template-hash": "7d9f8b6c5", "app": "catalog",
			},
			Annotations: map[string]string{
				"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics",
				"kubectl.kubernetes.io/restartedAt":                "2026-11-25T08:00:00Z",
				"kubectl.kubernetes.io/last-applied-configuration": string(make([]byte, 2048)),
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update"}, {Manager: "kubelet", Operation: "Update"}},
		},
		Spec: corev1.PodSpec{
			NodeName: fmt.Sprintf("ip-10-42-%d-%d.us-west-2.compute.internal", i%256, i%7),
			Containers: []corev1.Container{{
				Name: "catalog", Image: "public.ecr.aws/aws-containers/retail-store-sample-catalog:0.4.0",
				Env:   []corev1.EnvVar{{Name: "DB_ENDPOINT", Value: "catalog-mysql:3306"}, {Name: "DB_USER", Value: "catalog"}},
				Ports: []corev1.ContainerPort{{ContainerPort: 8080, Name: "http"}},
			}},
			Volumes: []corev1.Volume{{Name: "tmp"}, {Name: "kube-api-access-abcde"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.42.1.2",
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "catalog", RestartCount: 1, Ready: true,
				ContainerID:          "containerd://9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1e",
				Image:                "public.ecr.aws/aws-containers/retail-store-sample-catalog:0.4.0",
				ImageID:              "public.ecr.aws/aws-containers/retail-store-sample-catalog@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://0ld0e5f0a7b3d2c1e9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1"}},
			}},
		},
	}
}

// filled returns a cache holding n pods, fed as the informer feeds it (its
// store holding the trimmed pods, the handler rendering them).
func filled(tb testing.TB, n int) (*Cache, cache.Indexer, []podpath.Ref) {
	c := New(Config{Enrich: enrich.Options{Labels: true, Annotations: true}, TombstoneTTL: time.Minute, GetQPS: 1, GetBurst: 1},
		fake.NewClientset(), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	refs := make([]podpath.Ref, 0, n)
	for i := range n {
		p := realisticPod(i)
		trimmed, _ := TrimPod(p)
		if err := store.Add(trimmed); err != nil {
			tb.Fatal(err)
		}
		c.podChanged(nil, trimmed)
		refs = append(refs, podpath.Ref{Namespace: p.Namespace, Pod: p.Name, PodUID: string(p.UID), Container: "catalog", Restart: 1})
	}
	return c, store, refs
}

// BenchmarkEnrich is enrichment alone with 10,000 pods in the cache: per
// record, its share of a lookup (one per source per batch: batches of 100
// records from 10 files) and the document with the pod's metadata.
// Run with -cpu 1 for records/s per core.
func BenchmarkEnrich(b *testing.B) {
	c, _, refs := filled(b, 10000)
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
				Host: "node-1", PodExtra: r.Pod.Extra, ContainerExtra: r.ContainerExtra}
		}
		buf = document.Append(buf[:0], &meta, &line, line.Time)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkLookup is one lookup (a hit) among 10,000 pods.
func BenchmarkLookup(b *testing.B) {
	c, _, refs := filled(b, 10000)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Lookup(ctx, &refs[i%len(refs)])
		i++
	}
}

// TestMemoryPerPod measures the cache's memory per pod (trimmed pod in the
// informer's store plus its rendering), for the design's figures.
func TestMemoryPerPod(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 10,000 pods")
	}
	const n = 10000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, store, refs := filled(t, n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	perPod := float64(after.HeapAlloc-before.HeapAlloc) / n
	refsBytes := float64(len(refs)) * 100 // the test's own refs, roughly
	t.Logf("cache memory: %.0f bytes per pod (%d pods: trimmed pod in the informer store + rendering)", perPod-refsBytes/n, n)
	var full runtime.MemStats
	pods := make([]*corev1.Pod, n)
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range pods {
		pods[i] = realisticPod(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&full)
	t.Logf("for comparison, the untrimmed pod objects: %.0f bytes per pod", float64(full.HeapAlloc-before.HeapAlloc)/n)
	runtime.KeepAlive(c)
	runtime.KeepAlive(store)
	runtime.KeepAlive(pods)
	if perPod > 8192 {
		t.Errorf("%.0f bytes per pod: the transform keeps too much", perPod)
	}
}
