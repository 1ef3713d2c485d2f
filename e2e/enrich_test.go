package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/kubetest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// kubePod creates a pod as kubelet would have it running: scheduled on node,
// with container statuses (a bare API server has neither scheduler nor
// kubelet).
func kubePod(t *testing.T, c kubernetes.Interface, ns, name, node string, labels, annotations map[string]string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + name + ":1.0"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "app", Image: "registry.example/" + name + ":1.0", ImageID: "registry.example/" + name + "@sha256:" + strings.Repeat("ab", 32),
		ContainerID: "containerd://" + strings.Repeat("c", 8) + string(p.UID[:8]), Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}
	p.Status.Phase = corev1.PodRunning
	if p, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

type podFile struct {
	fw *loggen.FileWriter
	n  int
	t  time.Time
}

func openPodFile(t *testing.T, root string, p *corev1.Pod) *podFile {
	t.Helper()
	fw, err := loggen.OpenFile(filepath.Join(root, p.Namespace+"_"+p.Name+"_"+string(p.UID), "app", "0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	return &podFile{fw: fw, t: time.Now().UTC()}
}

func (f *podFile) write(t *testing.T, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		f.t = f.t.Add(time.Millisecond)
		if _, err := f.fw.WriteLine(f.t, "stdout", m); err != nil {
			t.Fatal(err)
		}
		f.n++
	}
}

// source is the document fields these tests look at.
func (s search) sources(t *testing.T, query map[string]any) []map[string]any {
	t.Helper()
	s.do(t, http.MethodPost, "/"+s.index+"/_refresh", nil)
	var r struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	json.Unmarshal(s.do(t, http.MethodPost, "/"+s.index+"/_search", map[string]any{"size": 1000, "query": query}), &r)
	var out []map[string]any
	for _, h := range r.Hits.Hits {
		out = append(out, h.Source)
	}
	return out
}

func logIs(msg string) map[string]any {
	return map[string]any{"match_phrase": map[string]any{"log": msg}}
}

func kube(doc map[string]any) map[string]any { k, _ := doc["kubernetes"].(map[string]any); return k }

// metric sums a metric's samples (with labels containing match) on an admin
// /metrics page.
func metric(t *testing.T, url, name string, match ...string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return sumMetric(bufio.NewScanner(resp.Body), name, match...)
}

func sumMetric(sc *bufio.Scanner, name string, match ...string) float64 {
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sum := 0.0
lines:
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		for _, m := range match {
			if !strings.Contains(l, m) {
				continue lines
			}
		}
		v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		sum += v
	}
	return sum
}

// TestE2EEnrichmentFromKubernetes runs the built binaries against a real
// kube-apiserver (envtest) and OpenSearch: documents carry their pod's
// metadata; new labels reach new lines; lines written before a pod's
// deletion but read after it keep its metadata (tombstones); a pod annotated
// podlogs.io/exclude is dropped and one annotated podlogs.io/parser: json
// gets data.
func TestE2EEnrichmentFromKubernetes(t *testing.T) {
	kc := kubetest.Kubeconfig(t)
	client := kubernetes.NewForConfigOrDie(kubetest.Config(t))
	ns := kubetest.Namespace(t, client, map[string]string{"team": "shop"})
	s := search{url: ostest.URL(t), index: ostest.Index(t)}
	root := proctest.TempDir(t, "pods")

	web := kubePod(t, client, ns, "web-1", "node-e2e", map[string]string{"app": "web", "app.kubernetes.io/name": "web", "version": "1"},
		map[string]string{"prometheus.io/scrape": "true"})
	api := kubePod(t, client, ns, "api-1", "node-e2e", map[string]string{"app.kubernetes.io/name": "api"},
		map[string]string{"podlogs.io/parser": "json"})
	quiet := kubePod(t, client, ns, "quiet-1", "node-e2e", nil, map[string]string{"podlogs.io/exclude": "true"})
	webF, apiF, quietF := openPodFile(t, root, web), openPodFile(t, root, api), openPodFile(t, root, quiet)

	agg := startAggregator(t, "aggregator-0", proctest.TempDir(t, "agg"), s.url, s.index, proctest.FreeAddr(t),
		"--kubeconfig="+kc, "--enrich-namespace-labels", "--enrich-tombstone-ttl=10m")
	fwdData := proctest.TempDir(t, "fwd")
	fwd := startForwarder(t, "forwarder-0", root, fwdData, agg.listen)

	webF.write(t, "web line 1", "web line 2")
	apiF.write(t, `{"level":"info","msg":"api started","port":8080}`)
	quietF.write(t, "secret line")
	s.waitCount(t, 3, 60*time.Second)

	docs := s.sources(t, logIs("web line 1"))
	if len(docs) != 1 {
		t.Fatalf("%d documents for web line 1", len(docs))
	}
	k := kube(docs[0])
	want := map[string]any{
		"pod_name": "web-1", "namespace_name": ns, "pod_id": string(web.UID), "host": "node-e2e", "container_name": "app",
		"docker_id": strings.Repeat("c", 8) + string(web.UID[:8]), "container_image": "registry.example/web-1:1.0",
		"container_hash": "registry.example/web-1@sha256:" + strings.Repeat("ab", 32),
	}
	for f, v := range want {
		if k[f] != v {
			t.Errorf("kubernetes.%s = %v, want %v", f, k[f], v)
		}
	}
	if l := k["labels"].(map[string]any); l["app"] != "web" || l["app.kubernetes.io/name"] != "web" || l["version"] != "1" {
		t.Errorf("labels %v", l)
	}
	if a := k["annotations"].(map[string]any); a["prometheus.io/scrape"] != "true" {
		t.Errorf("annotations %v", a)
	}
	if nl := k["namespace_labels"].(map[string]any); nl["team"] != "shop" {
		t.Errorf("namespace_labels %v", nl)
	}
	apiDocs := s.sources(t, map[string]any{"term": map[string]any{"kubernetes.pod_name": "api-1"}})
	if len(apiDocs) != 1 || apiDocs[0]["data"].(map[string]any)["msg"] != "api started" || apiDocs[0]["log"] != `{"level":"info","msg":"api started","port":8080}` {
		t.Fatalf("api document: %v", apiDocs)
	}
	// Labels stay filterable (flat_object): a term on a dotted key.
	if n := len(s.sources(t, map[string]any{"term": map[string]any{"kubernetes.labels.app.kubernetes.io/name": "web"}})); n != 2 {
		t.Errorf("filter on kubernetes.labels.app.kubernetes.io/name: %d documents, want 2", n)
	}
	if excluded := metric(t, "http://"+agg.admin+"/metrics", "podlogs_aggregator_records_excluded_total"); excluded != 1 {
		t.Errorf("excluded counter %v, want 1", excluded)
	}

	// New labels: new lines carry them.
	cur, _ := client.CoreV1().Pods(ns).Get(context.Background(), "web-1", metav1.GetOptions{})
	cur.Labels["version"] = "2"
	if _, err := client.CoreV1().Pods(ns).Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the watch delivers in milliseconds; room for a loaded machine
	webF.write(t, "web line 3 after relabel")
	s.waitCount(t, 4, 60*time.Second)
	if d := s.sources(t, logIs("web line 3 after relabel")); len(d) != 1 || kube(d[0])["labels"].(map[string]any)["version"] != "2" {
		t.Fatalf("after relabel: %v", d)
	}

	// Deleted pod: the forwarder is down while the last lines are written
	// and the pod is deleted; it reads them afterwards.
	fwd.StopClean(t)
	webF.write(t, "web line 4 before delete", "web line 5 before delete")
	if err := client.CoreV1().Pods(ns).Delete(context.Background(), "web-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, "http://"+agg.admin+"/metrics", "podlogs_aggregator_metacache_tombstones") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the aggregator never saw the deletion")
		}
		time.Sleep(100 * time.Millisecond)
	}
	startForwarder(t, "forwarder-1", root, fwdData, agg.listen)
	s.waitCount(t, 6, 60*time.Second)
	for _, msg := range []string{"web line 4 before delete", "web line 5 before delete"} {
		d := s.sources(t, logIs(msg))
		if len(d) != 1 || kube(d[0])["labels"].(map[string]any)["version"] != "2" || kube(d[0])["docker_id"] == nil {
			t.Fatalf("%s: %v", msg, d)
		}
	}
	if hits := metric(t, "http://"+agg.admin+"/metrics", "podlogs_aggregator_metacache_lookups_total", `result="tombstone"`); hits < 1 {
		t.Errorf("tombstone lookups %v, want at least 1", hits)
	}
	if gets := metric(t, "http://"+agg.admin+"/metrics", "podlogs_aggregator_metacache_gets_total"); gets != 0 {
		t.Errorf("%v direct GETs, want none: every pod was in the cache", gets)
	}
}

// TestE2EAPILoad: 3 aggregator replicas and 50 forwarder streams make
// exactly 3 pod watches on the API server (its own metrics say so), and
// GETs only for pods the cache does not have.
func TestE2EAPILoad(t *testing.T) {
	kc := kubetest.Kubeconfig(t)
	client := kubernetes.NewForConfigOrDie(kubetest.Config(t))
	ns := kubetest.Namespace(t, client, nil)
	s := search{url: ostest.URL(t), index: ostest.Index(t)}
	const nodes, missing = 50, 4
	var pods []*corev1.Pod
	for i := range nodes {
		pods = append(pods, kubePod(t, client, ns, fmt.Sprintf("app-%02d", i), fmt.Sprintf("node-%02d", i), map[string]string{"app": "load"}, nil))
	}
	podWatches := func(m string) float64 {
		return sumMetric(bufio.NewScanner(strings.NewReader(m)), "apiserver_longrunning_requests", `resource="pods"`, `verb="WATCH"`)
	}
	before := kubetest.Metrics(t)
	getsBefore := sumMetric(bufio.NewScanner(strings.NewReader(before)), "apiserver_request_total", `resource="pods"`, `verb="GET"`)
	// The API server's own loopback informers hold a pod watch too (1 on
	// kube-apiserver 1.35): the aggregators' are counted above that baseline.
	baseline := podWatches(before)

	var aggs []*aggregator
	for i := range 3 {
		aggs = append(aggs, startAggregator(t, fmt.Sprintf("aggregator-%d", i), proctest.TempDir(t, fmt.Sprintf("agg%d", i)), s.url, s.index, proctest.FreeAddr(t),
			"--kubeconfig="+kc, "--enrich-miss-wait=200ms"))
	}
	if w := podWatches(kubetest.Metrics(t)) - baseline; w != 3 {
		t.Errorf("3 replicas started, no stream yet: %v pod watches, want 3", w)
	}
	// 50 streams, one per node, spread over the replicas; each sends its
	// pod's lines, and a few send lines of pods the API server never had.
	lines := 0
	for i := range nodes {
		conn, err := grpc.NewClient(aggs[i%3].listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := podlogsv1.NewIngestServiceClient(conn).Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.Send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Hello{Hello: &podlogsv1.Hello{ProtocolVersion: 1, NodeName: fmt.Sprintf("node-%02d", i)}}})
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		p := pods[i]
		b := &podlogsv1.Batch{Sequence: 1, Sources: []*podlogsv1.Source{{
			Path: ns + "_" + p.Name + "_" + string(p.UID) + "/app/0.log", Identity: &podlogsv1.FileIdentity{Fingerprint: uint64(i + 1)}, Format: podlogsv1.Format_FORMAT_CRI,
		}}}
		if i < missing {
			b.Sources = append(b.Sources, &podlogsv1.Source{
				Path: fmt.Sprintf("%s_gone-%d_00000000-0000-0000-0000-%012d/app/0.log", ns, i, i), Identity: &podlogsv1.FileIdentity{Fingerprint: 99}, Format: podlogsv1.Format_FORMAT_CRI,
			})
		}
		for j := range 10 {
			line := fmt.Sprintf("2026-11-25T08:00:00.%09dZ stdout F node %d line %d", j, i, j)
			b.Records = append(b.Records, &podlogsv1.Record{SourceIndex: uint32(j % len(b.Sources)), Offset: uint64(j * 100), NextOffset: uint64(j*100 + 80), Data: []byte(line)})
			lines++
		}
		st.Send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Batch{Batch: b}})
		if resp, err := st.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 1 {
			t.Fatalf("stream %d: %v %v", i, resp, err)
		}
		defer st.CloseSend()
	}
	s.waitCount(t, lines, 60*time.Second)

	m := kubetest.Metrics(t)
	watches := podWatches(m) - baseline
	if watches != 3 {
		t.Errorf("with 50 streams open the API server holds %v pod watches (beyond its own %v), want 3: one per replica", watches, baseline)
	}
	getsAPI := sumMetric(bufio.NewScanner(strings.NewReader(m)), "apiserver_request_total", `resource="pods"`, `verb="GET"`) - getsBefore
	var getsAgg, hits float64
	for _, a := range aggs {
		getsAgg += metric(t, "http://"+a.admin+"/metrics", "podlogs_aggregator_metacache_gets_total") -
			metric(t, "http://"+a.admin+"/metrics", "podlogs_aggregator_metacache_gets_total", `result="throttled"`)
		hits += metric(t, "http://"+a.admin+"/metrics", "podlogs_aggregator_metacache_lookups_total", `result="hit"`)
	}
	t.Logf("API server: %v pod watches, %v pod GETs (aggregators report %v); %v cache hits", watches, getsAPI, getsAgg, hits)
	if getsAPI != getsAgg || getsAPI < 1 || getsAPI > missing {
		t.Errorf("API server saw %v pod GETs, aggregators sent %v; want the same, one per pod the cache lacks (1..%d)", getsAPI, getsAgg, missing)
	}
	if hits != nodes {
		t.Errorf("%v cache hits, want %d (one per stream's known pod)", hits, nodes)
	}
}
