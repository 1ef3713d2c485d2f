package metacache

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/internal/podpath"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testConfig = Config{
	Enrich:       enrich.Options{Labels: true, Annotations: true, NamespaceLabels: true},
	TombstoneTTL: time.Minute, MissWait: 300 * time.Millisecond, GetQPS: 100, GetBurst: 100,
	GetTimeout: 5 * time.Second, MissingTTL: time.Minute,
}

func pod(ns, name, uid string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: labels,
			Annotations: map[string]string{"team": "a"}},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", ContainerID: "containerd://c0", ImageID: "app@sha256:1",
		}}},
	}
}

type env struct {
	t      *testing.T
	client *fake.Clientset
	cache  *Cache
	reg    *prometheus.Registry
	now    time.Time
	mu     sync.Mutex // guards now
}

// start returns a cache on a fake clientset holding objs; run=false leaves
// the informers stopped (a cache that never hears of new pods).
func start(t *testing.T, cfg Config, run bool, objs ...*corev1.Pod) *env {
	t.Helper()
	e := &env{t: t, client: fake.NewClientset(), reg: prometheus.NewRegistry(), now: time.Now()}
	for _, o := range objs {
		e.create(o)
	}
	e.cache = New(cfg, e.client, e.reg, slog.New(slog.DiscardHandler))
	e.cache.now = func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now }
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { e.cache.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if !e.cache.WaitForSync(wctx) {
			t.Fatal("cache did not sync")
		}
	}
	return e
}

func (e *env) advance(d time.Duration) { e.mu.Lock(); e.now = e.now.Add(d); e.mu.Unlock() }

func (e *env) create(p *corev1.Pod) {
	e.t.Helper()
	if _, err := e.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) update(p *corev1.Pod) {
	e.t.Helper()
	if _, err := e.client.CoreV1().Pods(p.Namespace).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) lookup(ns, name, uid, container string, restart int) Result {
	e.t.Helper()
	return e.cache.Lookup(context.Background(), &podpath.Ref{Namespace: ns, Pod: name, PodUID: uid, Container: container, Restart: restart})
}

// eventually waits for the informer to deliver what cond checks.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) gets() int {
	n := 0
	for _, a := range e.client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "pods" {
			n++
		}
	}
	return n
}

func (e *env) counter(name, label string) float64 {
	switch name {
	case "lookups":
		return testutil.ToFloat64(e.cache.metrics.lookups.WithLabelValues(label))
	case "gets":
		return testutil.ToFloat64(e.cache.metrics.gets.WithLabelValues(label))
	}
	e.t.Fatalf("no counter %s", name)
	return 0
}

// fields renders a result as the kubernetes members it adds.
func fields(t *testing.T, r Result) map[string]any {
	t.Helper()
	if r.Pod == nil {
		return nil
	}
	b := append([]byte(`{"x":0`), r.Pod.Extra()...)
	b = append(append(append(b, r.ContainerExtra...), r.ImageExtra...), '}')
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	delete(m, "x")
	return m
}

func TestLookupLivePod(t *testing.T) {
	e := start(t, testConfig, true, pod("ui", "ui-1", "u1", map[string]string{"app": "ui"}))
	r := e.lookup("ui", "ui-1", "u1", "app", 0)
	if r.Source != Live {
		t.Fatalf("source = %v, want hit", r.Source)
	}
	got, _ := json.Marshal(fields(t, r))
	want := `{"annotations":{"team":"a"},"container_hash":"app@sha256:1","container_image":"app:1","docker_id":"c0","labels":{"app":"ui"}}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if e.gets() != 0 || e.counter("lookups", "hit") != 1 {
		t.Fatalf("gets %d, hits %v", e.gets(), e.counter("lookups", "hit"))
	}
}

func TestLabelsUpdate(t *testing.T) {
	p := pod("ui", "ui-1", "u1", map[string]string{"version": "1"})
	e := start(t, testConfig, true, p)
	p = p.DeepCopy()
	p.Labels["version"] = "2"
	p.ResourceVersion = "2"
	e.update(p)
	e.eventually("new labels", func() bool {
		return fields(t, e.lookup("ui", "ui-1", "u1", "app", 0))["labels"].(map[string]any)["version"] == "2"
	})
}

func TestNamespaceLabels(t *testing.T) {
	e := start(t, testConfig, true, pod("ui", "ui-1", "u1", nil))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ui", Labels: map[string]string{"team": "retail"}}}
	if _, err := e.client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("namespace labels", func() bool {
		nl, _ := fields(t, e.lookup("ui", "ui-1", "u1", "app", 0))["namespace_labels"].(map[string]any)
		return nl["team"] == "retail"
	})
	// Without the option, no namespace informer and no field.
	cfg := testConfig
	cfg.Enrich.NamespaceLabels = false
	e2 := start(t, cfg, true, pod("ui", "ui-1", "u1", nil))
	if e2.cache.nss != nil || fields(t, e2.lookup("ui", "ui-1", "u1", "app", 0))["namespace_labels"] != nil {
		t.Fatal("namespace labels without the option")
	}
}

// A pod created a moment ago: the lookup waits for the informer, no GET.
func TestLookupWaitsForInformer(t *testing.T) {
	cfg := testConfig
	cfg.MissWait = 5 * time.Second
	e := start(t, cfg, true)
	done := make(chan Result)
	go func() { done <- e.lookup("ui", "ui-2", "u2", "app", 0) }()
	time.Sleep(50 * time.Millisecond)
	e.create(pod("ui", "ui-2", "u2", nil))
	if r := <-done; r.Source != Live || e.gets() != 0 {
		t.Fatalf("source %v after %d gets, want a hit and no GET", r.Source, e.gets())
	}
}

// The informer does not deliver: after MissWait, one GET.
func TestLookupFallsBackToGet(t *testing.T) {
	e := start(t, testConfig, false, pod("ui", "ui-3", "u3", map[string]string{"app": "ui"}))
	begin := time.Now()
	r := e.lookup("ui", "ui-3", "u3", "app", 0)
	if r.Source != Fetched || fields(t, r)["docker_id"] != "c0" {
		t.Fatalf("got %v %v, want the fetched pod", r.Source, fields(t, r))
	}
	if waited := time.Since(begin); waited < testConfig.MissWait {
		t.Fatalf("GET after %s, before MissWait", waited)
	}
	// The fetched pod is kept: no second GET.
	if r := e.lookup("ui", "ui-3", "u3", "app", 0); r.Source != Fetched || e.gets() != 1 {
		t.Fatalf("second lookup %v, %d gets", r.Source, e.gets())
	}
	// Gone, or another pod of that name: remembered as missing.
	for _, uid := range []string{"u-other", "u-other"} {
		if r := e.lookup("ui", "ui-3", uid, "app", 0); r.Source != Miss {
			t.Fatalf("uid %s: %v, want a miss", uid, r.Source)
		}
	}
	if r := e.lookup("ui", "nope", "u4", "app", 0); r.Source != Miss {
		t.Fatal("a missing pod found")
	}
	e.lookup("ui", "nope", "u4", "app", 0)
	if e.gets() != 3 || e.counter("gets", "other_uid") != 1 || e.counter("gets", "not_found") != 1 {
		t.Fatalf("%d gets (want 3: found, other uid, not found)", e.gets())
	}
	// After MissingTTL they are asked for again.
	e.advance(testConfig.MissingTTL)
	e.lookup("ui", "nope", "u4", "app", 0)
	if e.gets() != 4 {
		t.Fatalf("%d gets, want 4", e.gets())
	}
}

func TestGetRateLimit(t *testing.T) {
	cfg := testConfig
	cfg.MissWait = 0
	cfg.GetQPS, cfg.GetBurst = 0.001, 2
	e := start(t, cfg, false)
	for i := range 5 {
		e.lookup("ui", "p", "u"+string(rune('a'+i)), "app", 0)
	}
	if e.gets() != 2 || e.counter("gets", "throttled") != 3 {
		t.Fatalf("%d gets, %v throttled; want 2, 3", e.gets(), e.counter("gets", "throttled"))
	}
}

func TestTombstones(t *testing.T) {
	e := start(t, testConfig, true, pod("ui", "ui-1", "u1", map[string]string{"app": "ui"}))
	// A deletion arrives as an update with a deletionTimestamp, then the delete.
	p, _ := e.client.CoreV1().Pods("ui").Get(context.Background(), "ui-1", metav1.GetOptions{})
	now := metav1.Now()
	p.DeletionTimestamp = &now
	p.ResourceVersion = "9"
	e.update(p)
	if err := e.client.CoreV1().Pods("ui").Delete(context.Background(), "ui-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("tombstone", func() bool { return e.lookup("ui", "ui-1", "u1", "app", 0).Source == Tombstone })
	if r := e.lookup("ui", "ui-1", "u1", "app", 0); fields(t, r)["labels"].(map[string]any)["app"] != "ui" {
		t.Fatalf("tombstone lost the labels: %v", fields(t, r))
	}
	if testutil.ToFloat64(e.cache.metrics.tombstones) != 1 || testutil.ToFloat64(e.cache.metrics.pods) != 0 {
		t.Fatal("gauges wrong")
	}
	e.advance(testConfig.TombstoneTTL)
	e.cache.sweepOnce()
	if r := e.lookup("ui", "ui-1", "u1", "app", 0); r.Source != Miss {
		t.Fatalf("after the TTL: %v, want a miss", r.Source)
	}
	if testutil.ToFloat64(e.cache.metrics.tombstones) != 0 {
		t.Fatal("tombstone gauge not back to 0")
	}
}

func TestRestartedContainer(t *testing.T) {
	p := pod("ui", "ui-1", "u1", nil)
	e := start(t, testConfig, true, p)
	// Restart 1 before the informer knows it: waits, then what is known.
	if r := e.lookup("ui", "ui-1", "u1", "app", 1); r.Source != Live || fields(t, r)["docker_id"] != nil || fields(t, r)["container_image"] != "app:1" {
		t.Fatalf("unknown restart: %v %v", r.Source, fields(t, r))
	}
	// The status update arrives while a lookup waits.
	done := make(chan Result)
	go func() { done <- e.lookup("ui", "ui-1", "u1", "app", 1) }()
	p = p.DeepCopy()
	p.ResourceVersion = "5"
	p.Status.ContainerStatuses[0].RestartCount = 1
	p.Status.ContainerStatuses[0].ContainerID = "containerd://c1"
	p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: "containerd://c0"}
	e.update(p)
	if r := <-done; fields(t, r)["docker_id"] != "c1" {
		t.Fatalf("restart 1: %v", fields(t, r))
	}
	// The previous run's file keeps its id.
	if r := e.lookup("ui", "ui-1", "u1", "app", 0); fields(t, r)["docker_id"] != "c0" {
		t.Fatalf("restart 0: %v", fields(t, r))
	}
	if e.gets() != 0 {
		t.Fatalf("%d GETs for a known pod", e.gets())
	}
}

// A pod deleted and created again under its name while the watch was down
// arrives as an update of the informer's object of that name.
func TestRecreatedPod(t *testing.T) {
	e := start(t, testConfig, false)
	old := newPodObject(enrich.Render(pod("db", "db-0", "u-old", nil), nil, testConfig.Enrich), "1")
	e.cache.podChanged(nil, old)
	p := pod("db", "db-0", "u-new", nil)
	p.ResourceVersion = "2"
	again, _ := e.cache.transformPod(p)
	e.cache.podChanged(old, again)
	if r := e.lookup("db", "db-0", "u-old", "app", 0); r.Source != Tombstone {
		t.Fatalf("the old pod: %v, want a tombstone", r.Source)
	}
	if r := e.lookup("db", "db-0", "u-new", "app", 0); r.Source != Live {
		t.Fatalf("the new pod: %v, want a hit", r.Source)
	}
}

func TestStaticPod(t *testing.T) {
	// kubelet names the log directory after the static pod's uid (its config
	// hash); the API holds a mirror pod with another uid.
	mirror := pod("kube-system", "etcd-node-1", "mirror-uid", map[string]string{"component": "etcd"})
	mirror.Annotations[enrich.AnnotationMirror] = "0123abcd"
	e := start(t, testConfig, true, mirror)
	if r := e.lookup("kube-system", "etcd-node-1", "0123abcd", "app", 0); r.Source != Live || r.Pod.UID != "mirror-uid" {
		t.Fatalf("static pod: %v", r.Source)
	}
	if err := e.client.CoreV1().Pods("kube-system").Delete(context.Background(), "etcd-node-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("mirror tombstone", func() bool {
		return e.lookup("kube-system", "etcd-node-1", "0123abcd", "app", 0).Source == Tombstone
	})
}

func TestExcludeAndParser(t *testing.T) {
	p := pod("ui", "ui-1", "u1", nil)
	p.Annotations[enrich.AnnotationExclude] = "true"
	q := pod("ui", "ui-2", "u2", nil)
	q.Annotations[enrich.AnnotationParser] = "json"
	cfg := testConfig
	cfg.Enrich.MaxDataFields = 7
	e := start(t, cfg, true, p, q)
	if r := e.lookup("ui", "ui-1", "u1", "app", 0); !r.Pod.Exclude() {
		t.Fatal("exclude annotation ignored")
	}
	if r := e.lookup("ui", "ui-2", "u2", "app", 0); r.Pod.DataFields() != 7 {
		t.Fatal("parser annotation ignored")
	}
}

// Many pods in one namespace; a lookup stays a map read.
func TestManyPodsInNamespace(t *testing.T) {
	var pods []*corev1.Pod
	for i := range 1000 {
		pods = append(pods, pod("big", "p-"+itoa(i), "u-"+itoa(i), map[string]string{"i": itoa(i)}))
	}
	e := start(t, testConfig, true, pods...)
	for i := 0; i < 1000; i += 37 {
		r := e.lookup("big", "p-"+itoa(i), "u-"+itoa(i), "app", 0)
		if r.Source != Live || fields(t, r)["labels"].(map[string]any)["i"] != itoa(i) {
			t.Fatalf("pod %d: %v", i, r.Source)
		}
	}
	if testutil.ToFloat64(e.cache.metrics.pods) != 1000 || e.gets() != 0 {
		t.Fatal("wrong pod count or GETs")
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// The informer's store holds a podObject in place of each pod; a relist
// keeps the renderings it has.
func TestTransformPod(t *testing.T) {
	e := start(t, testConfig, false)
	p := pod("ui", "ui-1", "u1", map[string]string{"app": "ui"})
	p.ResourceVersion = "7"
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	out, err := e.cache.transformPod(p)
	if err != nil {
		t.Fatal(err)
	}
	o := out.(*podObject)
	key, err := cache.MetaNamespaceKeyFunc(o)
	if err != nil || key != "ui/ui-1" || o.GetUID() != "u1" || o.resourceVersion != "7" {
		t.Fatalf("key %q (%v), uid %q, resource version %q", key, err, o.GetUID(), o.resourceVersion)
	}
	if f := fields(t, Result{Pod: o.pod.Load()}); jsonOf(f) != `{"annotations":{"team":"a"},"labels":{"app":"ui"}}` {
		t.Fatalf("rendering %s", jsonOf(f))
	}
	if again, _ := e.cache.transformPod(o); again != o {
		t.Fatal("transform of a podObject is not itself")
	}
	if err := e.cache.pods.GetIndexer().Add(o); err != nil {
		t.Fatal(err)
	}
	if again, _ := e.cache.transformPod(p.DeepCopy()); again != o {
		t.Fatal("a relisted pod was rendered again")
	}
	p.ResourceVersion = "8"
	if again, _ := e.cache.transformPod(p); again == o {
		t.Fatal("a changed pod was not rendered again")
	}
}

func jsonOf(v any) string { b, _ := json.Marshal(v); return string(b) }
