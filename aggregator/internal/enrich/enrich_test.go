package enrich

import (
	"encoding/json"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UIPod is the design's example pod, restarted once.
func UIPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "ui-5dcbd7c4b8-x2vqz", Namespace: "ui", UID: "3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10",
			Labels: map[string]string{"app": "ui", "app.kubernetes.io/name": "ui", "pod-template-hash": "5dcbd7c4b8"},
			Annotations: map[string]string{
				"prometheus.io/scrape": "true", "kubectl.kubernetes.io/last-applied-configuration": "{…huge…}",
			},
		},
		Spec: corev1.PodSpec{
			NodeName:       "ip-10-42-11-23.us-west-2.compute.internal",
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1.36"}},
			Containers:     []corev1.Container{{Name: "ui", Image: "public.ecr.aws/aws-containers/retail-store-sample-ui:0.4.0"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debugger", Image: "busybox:debug"}}},
		},
		Status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://1111", ImageID: "docker.io/library/busybox@sha256:aaaa"}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "ui", RestartCount: 1, ContainerID: "containerd://9c1e2222",
				Image:                "public.ecr.aws/aws-containers/retail-store-sample-ui:0.4.0",
				ImageID:              "public.ecr.aws/aws-containers/retail-store-sample-ui@sha256:bbbb",
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://0ld0"}},
			}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debugger", ContainerID: "docker://3333", ImageID: "docker-pullable://busybox@sha256:cccc"}},
		},
	}
}

func decode(t *testing.T, members ...[]byte) map[string]any {
	t.Helper()
	b := []byte(`{"x":1`)
	for _, m := range members {
		b = append(b, m...)
	}
	b = append(b, '}')
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	delete(got, "x")
	return got
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRenderContainers(t *testing.T) {
	p := Render(UIPod(), nil, Options{Labels: true, Annotations: true})
	f := func(container string, restart int, wantKnown bool, want map[string]any) {
		t.Helper()
		id, image, known := p.Container(container, restart)
		if known != wantKnown {
			t.Errorf("%s/%d: known = %v, want %v", container, restart, known, wantKnown)
		}
		if got := decode(t, id, image); jsonOf(got) != jsonOf(want) {
			t.Errorf("%s/%d: got %s, want %s", container, restart, jsonOf(got), jsonOf(want))
		}
	}
	ui := "public.ecr.aws/aws-containers/retail-store-sample-ui:0.4.0"
	uiHash := "public.ecr.aws/aws-containers/retail-store-sample-ui@sha256:bbbb"
	// The current run, and the one before (its file is still being read).
	f("ui", 1, true, map[string]any{"docker_id": "9c1e2222", "container_hash": uiHash, "container_image": ui})
	f("ui", 0, true, map[string]any{"docker_id": "0ld0", "container_hash": uiHash, "container_image": ui})
	// A restart the status does not name: the image, no id.
	f("ui", 2, false, map[string]any{"container_image": ui})
	f("init", 0, true, map[string]any{"docker_id": "1111", "container_hash": "docker.io/library/busybox@sha256:aaaa", "container_image": "busybox:1.36"})
	f("debugger", 0, true, map[string]any{"docker_id": "3333", "container_hash": "busybox@sha256:cccc", "container_image": "busybox:debug"})
	f("nope", 0, false, map[string]any{})
	if p.Restarts("ui", 2) || !p.Restarts("ui", 0) || p.Restarts("nope", 0) {
		t.Error("Restarts is wrong")
	}
}

func TestRenderPod(t *testing.T) {
	nsLabels := map[string]string{"team": "retail", "kubernetes.io/metadata.name": "ui"}
	f := func(opts Options, mutate func(*corev1.Pod), want map[string]any, wantExclude bool, wantFields int) {
		t.Helper()
		pod := UIPod()
		if mutate != nil {
			mutate(pod)
		}
		p := Render(pod, nsLabels, opts)
		if got := decode(t, p.Extra()); jsonOf(got) != jsonOf(want) {
			t.Errorf("got %s\nwant %s", jsonOf(got), jsonOf(want))
		}
		if p.Exclude() != wantExclude || p.DataFields() != wantFields {
			t.Errorf("exclude, data fields = %v, %d; want %v, %d", p.Exclude(), p.DataFields(), wantExclude, wantFields)
		}
	}
	labels := map[string]any{"app": "ui", "app.kubernetes.io/name": "ui", "pod-template-hash": "5dcbd7c4b8"}
	annotations := map[string]any{"prometheus.io/scrape": "true"}
	f(Options{Labels: true, Annotations: true}, nil, map[string]any{"labels": labels, "annotations": annotations}, false, 0)
	f(Options{Labels: true}, nil, map[string]any{"labels": labels}, false, 0)
	f(Options{Annotations: true}, nil, map[string]any{"annotations": annotations}, false, 0)
	f(Options{}, nil, map[string]any{}, false, 0)
	f(Options{Labels: true, NamespaceLabels: true}, nil, map[string]any{"labels": labels, "namespace_labels": map[string]any{
		"kubernetes.io/metadata.name": "ui", "team": "retail"}}, false, 0)
	// Dots replaced; keys equal after replacement written once.
	f(Options{Labels: true, Keys: KeysUnderscore}, func(p *corev1.Pod) { p.Labels["app_kubernetes_io/name"] = "dup" }, map[string]any{"labels": map[string]any{
		"app": "ui", "app_kubernetes_io/name": "ui", "pod-template-hash": "5dcbd7c4b8"}}, false, 0)
	// The cap keeps the first keys in order.
	f(Options{Labels: true, MaxKeys: 2}, nil, map[string]any{"labels": map[string]any{"app": "ui", "app.kubernetes.io/name": "ui"}}, false, 0)
	// Per-pod switches.
	f(Options{}, func(p *corev1.Pod) { p.Annotations[AnnotationExclude] = "true" }, map[string]any{}, true, 0)
	f(Options{MaxDataFields: 50}, func(p *corev1.Pod) { p.Annotations[AnnotationParser] = "json" }, map[string]any{}, false, 50)
	f(Options{ParseJSON: true, MaxDataFields: 50}, nil, map[string]any{}, false, 50)
	f(Options{ParseJSON: true, MaxDataFields: 50}, func(p *corev1.Pod) { p.Annotations[AnnotationParser] = "text" }, map[string]any{}, false, 0)
	// Strings that need escaping, and invalid UTF-8, stay valid JSON.
	f(Options{Labels: true}, func(p *corev1.Pod) { p.Labels = map[string]string{"a\"b": "c\\d\xff\n"} }, map[string]any{"labels": map[string]any{
		"a\"b": "c\\d\ufffd\n"}}, false, 0)
}

func TestRenderMirrorPod(t *testing.T) {
	pod := UIPod()
	pod.Annotations[AnnotationMirror] = "6f4c0b1e5a"
	if p := Render(pod, nil, Options{}); p.MirrorOf() != "6f4c0b1e5a" {
		t.Fatalf("MirrorOf = %q", p.MirrorOf())
	}
}

func TestParseKeyStyle(t *testing.T) {
	for s, want := range map[string]KeyStyle{"flat_object": KeysKept, "underscore": KeysUnderscore} {
		if got, ok := ParseKeyStyle(s); !ok || got != want || got.String() != s {
			t.Errorf("%s: %v %v", s, got, ok)
		}
	}
	if _, ok := ParseKeyStyle("dots"); ok {
		t.Error("accepted dots")
	}
}

// The pods of a ReplicaSet share their renderings; what is theirs alone is
// their identity and container ids. The sizes are the cache's per-pod
// budget (metacache.TestMemoryPerPod).
func TestRenderShares(t *testing.T) {
	opts := Options{Labels: true, Annotations: true, NamespaceLabels: true}
	ns := RenderNamespace(map[string]string{"team": "retail"}, opts)
	a := RenderWith(UIPod(), ns, opts)
	other := UIPod()
	other.Name, other.UID = "ui-5dcbd7c4b8-abcde", "another-uid"
	other.Status.ContainerStatuses[0].ContainerID = "containerd://another"
	b := RenderWith(other, ns, opts)
	same := func(x, y []byte) bool { return len(x) > 0 && len(x) == len(y) && &x[0] == &y[0] }
	if !same(a.Extra(), b.Extra()) {
		t.Error("labels and annotations not shared")
	}
	ida, imagea, _ := a.Container("ui", 1)
	idb, imageb, _ := b.Container("ui", 1)
	if !same(imagea, imageb) || same(ida, idb) {
		t.Error("images not shared, or ids shared")
	}
	if got := decode(t, b.Extra(), idb); got["docker_id"] != "another" || got["namespace_labels"] == nil {
		t.Errorf("rendering %s", jsonOf(got))
	}
	if unsafe.Sizeof(uintptr(0)) == 8 {
		if s := unsafe.Sizeof(Pod{}); s != 80 {
			t.Errorf("a Pod is %d bytes, want 80", s)
		}
		if s := unsafe.Sizeof(container{}); s != 40 {
			t.Errorf("a container is %d bytes, want 40", s)
		}
	}
}

func TestWithNamespace(t *testing.T) {
	opts := Options{Labels: true, NamespaceLabels: true, MaxKeys: 1}
	p := RenderWith(UIPod(), RenderNamespace(map[string]string{"a": "1", "b": "2"}, opts), opts)
	ns := RenderNamespace(map[string]string{"team": "retail"}, opts)
	if p.HasNamespace(ns) || p.KeysCut() != 3 {
		t.Fatalf("has the new namespace labels already, or %d keys cut (want 3)", p.KeysCut())
	}
	q := p.WithNamespace(ns)
	if !q.HasNamespace(ns) || q.WithNamespace(ns) != q || q.KeysCut() != 2 {
		t.Fatalf("WithNamespace did not take, or %d keys cut (want 2)", q.KeysCut())
	}
	if got := jsonOf(decode(t, q.Extra())); got != `{"labels":{"app":"ui"},"namespace_labels":{"team":"retail"}}` {
		t.Fatalf("got %s", got)
	}
	if got := jsonOf(decode(t, p.Extra())); got != `{"labels":{"app":"ui"},"namespace_labels":{"a":"1"}}` {
		t.Fatalf("the original changed: %s", got)
	}
}
