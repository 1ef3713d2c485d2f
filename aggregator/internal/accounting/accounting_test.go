package accounting

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlogs/podlogs/aggregator/internal/document"
)

// doc writes a document the way ingest does.
func doc(ns, pod string, extra []byte, line string) []byte {
	m := &document.Meta{PodName: pod, Namespace: ns, PodID: "uid", ContainerName: "c", Host: "node", PodExtra: extra, DataFields: 10}
	return document.Append(nil, m, &document.Line{Time: time.Unix(1, 0), Stream: "stdout", Message: []byte(line)}, time.Unix(1, 0))
}

func TestPodOf(t *testing.T) {
	f := func(doc []byte, want string, wantOK bool) {
		t.Helper()
		got, ok := PodOf(doc)
		if string(got) != want || ok != wantOK {
			t.Fatalf("PodOf(%s) = %q, %v; want %q, %v", doc, got, ok, want, wantOK)
		}
	}
	f(doc("ui", "ui-5dcbd7c4b8-x2vqz", nil, "hello"), "ui-5dcbd7c4b8-x2vqz", true)
	f(doc("kube-system", "etcd-ip-10-0-0-1.ec2.internal", nil, "x"), "etcd-ip-10-0-0-1.ec2.internal", true)
	// A JSON body (under "data") that imitates the layout comes before the
	// real "kubernetes" object, and a label named pod_name after it.
	f(doc("ui", "ui-1", []byte(`,"labels":{"pod_name":"label-value","kubernetes":"x"}`),
		`{"kubernetes":{"pod_name":"forged"}}`), "ui-1", true)
	f(doc("ui", "we\"ird", nil, "x"), "we\"ird", true)
	f([]byte(`{"kubernetes":{"namespace_name":"ui","pod_name":"ui-1"}}`), "", false)
	f([]byte(`{"kubernetes":{"pod_name":"cut`), "", false)
}

func TestCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := New(Config{Replica: "agg-0", MaxNamespaces: 2}, reg)
	l.Add("ui", "ui-1", Received, 10)
	l.Add("ui", "ui-1", Excluded, 0) // nothing: no row change
	l.Add("ui", "ui-1", Published, 10)
	l.Add("ui", "ui-2", Received, 3)
	l.Add("carts", "carts-1", Received, 1)
	l.Add("orders", "orders-1", Received, 7) // third namespace: label _other
	for range 4 {
		l.AddDocument("podlogs.docs.ui", doc("ui", "ui-1", nil, "x"), Indexed)
	}
	l.AddDocument("podlogs.docs.ui", doc("ui", "ui-1", nil, "x"), Duplicate)
	l.AddDocument("podlogs.docs.ui", doc("ui", "ui-2", nil, "x"), DeadLettered)
	l.AddDocument("podlogs.docs.ui", []byte(`{"log":"not ours"}`), Indexed)
	var nilLedger *Ledger
	nilLedger.Add("ui", "ui-1", Received, 1) // counts nothing, does not panic
	nilLedger.AddDocument("a.ui", nil, Indexed)

	rep := l.Snapshot("")
	got := map[string]Counts{}
	var order []string
	for _, r := range rep.Rows {
		got[r.Namespace+"/"+r.Pod] = r.Counts
		order = append(order, r.Namespace+"/"+r.Pod)
	}
	want := map[string]Counts{
		"ui/ui-1":          {Received: 10, Published: 10, Indexed: 4, Duplicate: 1},
		"ui/ui-2":          {Received: 3, DeadLettered: 1},
		"ui/" + UnknownPod: {Indexed: 1},
		"carts/carts-1":    {Received: 1},
		"orders/orders-1":  {Received: 7},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %+v, want %+v", k, got[k], w)
		}
	}
	if strings.Join(order, " ") != "carts/carts-1 orders/orders-1 ui/_unknown ui/ui-1 ui/ui-2" {
		t.Errorf("rows not sorted: %v", order)
	}
	if rep.Replica != "agg-0" || rep.Pods != 5 {
		t.Errorf("report header %+v", rep)
	}
	if n := len(l.Snapshot("carts").Rows); n != 1 {
		t.Errorf("namespace filter kept %d rows", n)
	}
	for _, c := range []struct {
		ns, stage string
		want      float64
	}{
		{"ui", "received", 13}, {"ui", "indexed", 5}, {"ui", "dead_lettered", 1}, {"carts", "received", 1},
		{OtherNamespace, "received", 7},
	} {
		if v := testutil.ToFloat64(l.lines.WithLabelValues(c.ns, c.stage)); v != c.want {
			t.Errorf("namespace_lines_total{%s,%s} = %v, want %v", c.ns, c.stage, v, c.want)
		}
	}
	if n := testutil.CollectAndCount(l.lines); n != 3*int(numStages) {
		t.Errorf("%d series, want %d (two namespaces and _other)", n, 3*numStages)
	}
}

// Rows idle past the retention are dropped; rows in use stay.
func TestIdleRowsExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Retention: time.Hour}, prometheus.NewRegistry())
		l.Add("ui", "old", Received, 1)
		l.Add("ui", "busy", Received, 1)
		for range 5 {
			time.Sleep(20 * time.Minute)
			l.Add("ui", "busy", Received, 1)
		}
		rep := l.Snapshot("")
		if len(rep.Rows) != 1 || rep.Rows[0].Pod != "busy" || rep.Rows[0].Received != 6 || rep.Pods != 1 {
			t.Fatalf("rows after 100 min: %+v", rep.Rows)
		}
		if rep.Rows[0].FirstSeen.After(rep.Rows[0].LastSeen) || rep.Now.Sub(rep.Rows[0].FirstSeen) != 100*time.Minute {
			t.Fatalf("first/last seen %+v", rep.Rows[0])
		}
		if v := testutil.ToFloat64(l.expired); v != 1 {
			t.Fatalf("expired = %v", v)
		}
		time.Sleep(61 * time.Minute)
		if rep := l.Snapshot(""); len(rep.Rows) != 0 || rep.Pods != 0 || len(l.namespaces) != 0 {
			t.Fatalf("rows after idling: %+v", rep.Rows)
		}
		// A pod seen again starts a new row.
		l.Add("ui", "old", Received, 2)
		if rep := l.Snapshot(""); len(rep.Rows) != 1 || rep.Rows[0].Received != 2 {
			t.Fatalf("rows: %+v", rep.Rows)
		}
	})
}

// Past the cap, a namespace's new pods share its overflow row; expiry makes
// room again.
func TestRowCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Config{Retention: time.Hour, MaxPods: 3}, prometheus.NewRegistry())
		for i := range 5 {
			l.Add("ui", fmt.Sprintf("ui-%d", i), Received, 1)
		}
		l.AddDocument("p.carts", doc("carts", "carts-1", nil, "x"), Indexed)
		rep := l.Snapshot("")
		var pods []string
		for _, r := range rep.Rows {
			pods = append(pods, fmt.Sprintf("%s/%s=%d+%d", r.Namespace, r.Pod, r.Received, r.Indexed))
		}
		if got := strings.Join(pods, " "); got != "carts/_overflow=0+1 ui/_overflow=2+0 ui/ui-0=1+0 ui/ui-1=1+0 ui/ui-2=1+0" || rep.Pods != 3 {
			t.Fatalf("rows %s (pods %d)", got, rep.Pods)
		}
		// Known pods keep counting in their own row.
		l.Add("ui", "ui-1", Received, 1)
		time.Sleep(30 * time.Minute)
		l.Add("ui", "ui-1", Received, 1)
		time.Sleep(31 * time.Minute)
		// ui-0 and ui-2 are idle past the retention: the new pod gets a row.
		l.Add("ui", "ui-9", Received, 1)
		rep = l.Snapshot("ui")
		pods = pods[:0]
		for _, r := range rep.Rows {
			pods = append(pods, fmt.Sprintf("%s=%d", r.Pod, r.Received))
		}
		if got := strings.Join(pods, " "); got != "ui-1=3 ui-9=1" {
			t.Fatalf("rows after expiry: %s", got)
		}
	})
}

func TestHandler(t *testing.T) {
	l := New(Config{Replica: "agg-1"}, prometheus.NewRegistry())
	l.Add("ui", "ui-1", Received, 2)
	l.Add("carts", "carts-1", Received, 1)
	rec := httptest.NewRecorder()
	l.Handler().ServeHTTP(rec, httptest.NewRequest("GET", HandlerPath+"?namespace=ui", nil))
	var rep Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if rep.Replica != "agg-1" || len(rep.Rows) != 1 || rep.Rows[0].Pod != "ui-1" || rep.Rows[0].Received != 2 ||
		rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("answer %s", rec.Body)
	}
}

// The hot path does not allocate once a pod has its row.
func TestNoAllocationsForKnownPods(t *testing.T) {
	l := New(Config{}, prometheus.NewRegistry())
	d := doc("ui", "ui-5dcbd7c4b8-x2vqz", nil, "hello")
	l.Add("ui", "ui-5dcbd7c4b8-x2vqz", Received, 1)
	if n := testing.AllocsPerRun(100, func() {
		l.Add("ui", "ui-5dcbd7c4b8-x2vqz", Received, 3)
		l.AddDocument("podlogs.docs.ui", d, Indexed)
	}); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}

func TestIndexExpression(t *testing.T) {
	f := func(index, dlq, want string) {
		t.Helper()
		if got := IndexExpression(index, dlq); got != want {
			t.Fatalf("IndexExpression(%q, %q) = %q, want %q", index, dlq, got, want)
		}
	}
	f("eks-pod-logs", "eks-pod-logs-dlq", "eks-pod-logs")
	f("eks-pod-logs-%Y.%m.%d", "eks-pod-logs-dlq", "eks-pod-logs-*.*.*,-eks-pod-logs-dlq")
	f("logs*", "logs-dlq-%Y", "logs*,-logs-dlq-*")
	f("logs*", "", "logs*")
}

func TestReplicaURLs(t *testing.T) {
	got, err := ReplicaURLs(t.Context(), " 127.0.0.1:9370, http://10.0.0.7:19370/ ,[::1],127.0.0.1:9370,https://10.0.0.8/base/")
	if err != nil {
		t.Fatal(err)
	}
	want := "http://127.0.0.1:9370 http://10.0.0.7:19370 http://[::1]:9370 https://10.0.0.8:9370/base"
	if strings.Join(got, " ") != want {
		t.Fatalf("ReplicaURLs = %v, want %s", got, want)
	}
	if _, err := ReplicaURLs(t.Context(), "http://"); err == nil {
		t.Fatal("no error for an empty host")
	}
}
