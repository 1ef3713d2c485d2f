package ingest

import (
	"context"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/aggregator/internal/metacache"
	"github.com/podlogs/podlogs/internal/podpath"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// fakeEnricher answers from rendered pods by uid and counts lookups.
type fakeEnricher struct {
	mu      sync.Mutex
	pods    map[string]*enrich.Pod
	lookups int
}

func (f *fakeEnricher) Lookup(_ context.Context, ref *podpath.Ref) metacache.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	p := f.pods[ref.PodUID]
	if p == nil {
		return metacache.Result{}
	}
	id, image, _ := p.Container(ref.Container, ref.Restart)
	return metacache.Result{Source: metacache.Live, Pod: p, ContainerExtra: id, ImageExtra: image}
}

func testPod(uid string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ui", Name: "p-" + uid, UID: types.UID("u" + uid),
			Labels: map[string]string{"app.kubernetes.io/name": "ui"}, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "ui:1"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "c", ContainerID: "containerd://abc" + uid, ImageID: "ui@sha256:1"}}},
	}
}

func TestStreamEnriches(t *testing.T) {
	opts := enrich.Options{Labels: true, Annotations: true, MaxDataFields: 10}
	fe := &fakeEnricher{pods: map[string]*enrich.Pod{}}
	for _, p := range []*corev1.Pod{
		testPod("1", nil),
		testPod("2", map[string]string{enrich.AnnotationExclude: "true"}),
		testPod("3", map[string]string{enrich.AnnotationParser: "json"}),
	} {
		fe.pods[string(p.UID)] = enrich.Render(p, nil, opts)
	}
	e := setupWith(t, 4<<20, fe, 0)
	s := open(t, e)
	s.Send(hello())
	s.Recv()
	b := &podlogsv1.Batch{Sequence: 1}
	for _, uid := range []string{"1", "2", "3", "9"} { // 9: unknown to the cache
		b.Sources = append(b.Sources, &podlogsv1.Source{
			Path: "ui_p-" + uid + "_u" + uid + "/c/0.log", Identity: &podlogsv1.FileIdentity{Fingerprint: 1}, Format: podlogsv1.Format_FORMAT_CRI,
		})
	}
	line := `2023-11-07T02:05:10.616482913Z stdout F {"level":"info","n":1}`
	for i := range 12 {
		b.Records = append(b.Records, &podlogsv1.Record{SourceIndex: uint32(i % 4), Offset: uint64(i * 100), NextOffset: uint64(i*100 + 60), Data: []byte(line)})
	}
	s.Send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Batch{Batch: b}})
	if resp, err := s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 1 {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	if fe.lookups != 4 {
		t.Fatalf("%d lookups for 4 sources and 12 records, want one per source", fe.lookups)
	}
	docs := e.stored(t)
	if len(docs) != 9 {
		t.Fatalf("stream holds %d documents, want 9 (3 lines of the excluded pod dropped)", len(docs))
	}
	if got := testutilCounter(t, e, "podlogs_aggregator_records_excluded_total"); got != 3 {
		t.Fatalf("excluded counter %v, want 3", got)
	}
	byPod := map[string]map[string]any{}
	for _, d := range docs {
		byPod[d.doc["kubernetes"].(map[string]any)["pod_name"].(string)] = d.doc
	}
	k1 := byPod["p-1"]["kubernetes"].(map[string]any)
	if k1["docker_id"] != "abc1" || k1["container_image"] != "ui:1" || k1["labels"].(map[string]any)["app.kubernetes.io/name"] != "ui" || byPod["p-1"]["data"] != nil {
		t.Fatalf("pod 1: %v", byPod["p-1"])
	}
	if byPod["p-3"]["data"].(map[string]any)["level"] != "info" || byPod["p-3"]["log"] != `{"level":"info","n":1}` {
		t.Fatalf("pod 3 (json): %v", byPod["p-3"])
	}
	if k9 := byPod["p-9"]["kubernetes"].(map[string]any); k9["labels"] != nil || k9["pod_id"] != "u9" {
		t.Fatalf("pod 9 (miss): %v", byPod["p-9"])
	}
	if _, ok := byPod["p-2"]; ok {
		t.Fatal("excluded pod's line stored")
	}
}

func testutilCounter(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
