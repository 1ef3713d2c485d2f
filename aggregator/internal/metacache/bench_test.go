package metacache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/internal/podpath"
)

// realisticPod is the i-th pod of an EKS cluster as the API server returns
// it: Deployments of 10 replicas (the pods of one ReplicaSet share their
// labels, annotations and images), spread over 50 namespaces, each pod with
// Helm's labels, a config checksum and Prometheus annotations, an init
// container, the application and a sidecar, managed fields, env, volumes,
// probes and a full status; one pod in ten has restarted. Most of it is
// trimmed.
func realisticPod(i int) *corev1.Pod {
	d := i / 10 // the Deployment
	app := fmt.Sprintf("catalog-%d", d)
	hash := fmt.Sprintf("%x", sha256.Sum256([]byte(app)))
	templateHash := hash[:9]
	name := fmt.Sprintf("%s-%s-%05x", app, templateHash, i%(1<<20))
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
	fields := make([]byte, 0, 1536)
	for len(fields) < 1500 {
		fields = append(fields, `{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/name":{}}},"f:spec":{"f:containers":{}}}`...)
	}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 10}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, GenerateName: app + "-" + templateHash + "-", Namespace: fmt.Sprintf("team-%02d", d%50),
			UID:             types.UID(fmt.Sprintf("%s-%s-%s-%s-%s", hash[9:17], hash[17:21], hash[21:25], hash[25:29], fmt.Sprintf("%012x", i))),
			ResourceVersion: strconv.Itoa(40000000 + i), CreationTimestamp: started,
			Labels: map[string]string{
				"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "app.kubernetes.io/component": "service",
				"app.kubernetes.io/part-of": "retail-store", "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "catalog-1.2.0",
				"pod-template-hash": templateHash,
			},
			Annotations: map[string]string{
				"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics",
				"checksum/config":                   hash,
				"kubectl.kubernetes.io/restartedAt": "2026-11-20T08:00:00Z",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + templateHash,
				UID: types.UID("5f3c2b1a-0e9d-4c8b-a7f6-" + hash[:12]), Controller: new(true), BlockOwnerDeletion: new(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: "Update", APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: fields}},
				{Manager: "kubelet", Operation: "Update", APIVersion: "v1", FieldsType: "FieldsV1", Subresource: "status", FieldsV1: &metav1.FieldsV1{Raw: fields}},
			},
		},
		Spec: corev1.PodSpec{
			NodeName:           fmt.Sprintf("ip-10-42-%d-%d.us-west-2.compute.internal", i%256, i%7),
			ServiceAccountName: app,
			InitContainers:     []corev1.Container{{Name: "wait-for-db", Image: initImage, Command: []string{"sh", "-c", "until nc -z catalog-mysql 3306; do sleep 1; done"}}},
			Containers: []corev1.Container{{
				Name: "catalog", Image: image,
				Env:            []corev1.EnvVar{{Name: "DB_ENDPOINT", Value: "catalog-mysql:3306"}, {Name: "DB_USER", Value: "catalog"}},
				Ports:          []corev1.ContainerPort{{ContainerPort: 8080, Name: "http", Protocol: corev1.ProtocolTCP}},
				LivenessProbe:  probe,
				ReadinessProbe: probe,
				VolumeMounts:   []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}, {Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			}, {
				Name: "otel-collector", Image: sidecar, Args: []string{"--config=/conf/collector.yaml"},
				VolumeMounts: []corev1.VolumeMount{{Name: "otel-config", MountPath: "/conf"}},
			}},
			Volumes: []corev1.Volume{{Name: "tmp"}, {Name: "otel-config"}, {Name: "kube-api-access-x7k2p"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "10.42.1.17", PodIP: fmt.Sprintf("10.42.%d.%d", i/256%256, i%256), StartTime: &started, QOSClass: corev1.PodQOSBurstable,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{
				Name: "wait-for-db", Ready: true, ContainerID: id("wait-for-db"), Image: initImage, ImageID: initID,
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
