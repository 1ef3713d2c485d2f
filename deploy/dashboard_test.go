package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/testkit/binaries"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

func TestMain(m *testing.M) { ostest.Main(m) }

type savedObject struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Attributes map[string]any `json:"attributes"`
	References []struct {
		Name string `json:"name"`
		Type string `json:"type"`
		ID   string `json:"id"`
	} `json:"references"`
}

func loadDashboard(t *testing.T) map[string]savedObject {
	t.Helper()
	f, err := os.Open("dashboards/pod-logs.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs := map[string]savedObject{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		var o savedObject
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if _, dup := objs[o.ID]; dup || o.ID == "" || o.Type == "" {
			t.Fatalf("line %d: id %q type %q (duplicate or empty)", n, o.ID, o.Type)
		}
		objs[o.ID] = o
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return objs
}

// attrJSON decodes an attribute that Dashboards stores as a JSON string.
func attrJSON(t *testing.T, o savedObject, keys ...string) any {
	t.Helper()
	var v any = o.Attributes
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: no %v", o.ID, keys)
		}
		v = m[k]
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s: %v is not a JSON string", o.ID, keys)
	}
	var out any
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("%s: %v: %v", o.ID, keys, err)
	}
	return out
}

type visualization struct {
	Title string `json:"title"`
	Type  string `json:"type"`
	Aggs  []struct {
		ID     string         `json:"id"`
		Type   string         `json:"type"`
		Schema string         `json:"schema"`
		Params map[string]any `json:"params"`
	} `json:"aggs"`
}

func visState(t *testing.T, o savedObject) visualization {
	t.Helper()
	b, _ := json.Marshal(attrJSON(t, o, "visState"))
	var v visualization
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// The ndjson parses, every reference points to an object of the file with the right type,
// and the objects are what the pod logs dashboard needs.
func TestDashboardObjects(t *testing.T) {
	objs := loadDashboard(t)
	for _, o := range objs {
		for _, r := range o.References {
			target, ok := objs[r.ID]
			if !ok || target.Type != r.Type {
				t.Errorf("%s refers to %s %s, which the file does not hold", o.ID, r.Type, r.ID)
			}
		}
		if _, ok := o.Attributes["kibanaSavedObjectMeta"]; ok {
			src := attrJSON(t, o, "kibanaSavedObjectMeta", "searchSourceJSON").(map[string]any)
			if ref, ok := src["indexRefName"].(string); ok {
				found := false
				for _, r := range o.References {
					found = found || (r.Name == ref && r.Type == "index-pattern")
				}
				if !found {
					t.Errorf("%s: indexRefName %q has no reference", o.ID, ref)
				}
			}
		}
	}

	ip := objs["podlogs-eks-pod-logs"]
	if ip.Type != "index-pattern" || ip.Attributes["timeFieldName"] != "@timestamp" {
		t.Fatalf("index pattern %+v", ip)
	}
	if ok, _ := path.Match(ip.Attributes["title"].(string), "eks-pod-logs"); !ok {
		t.Errorf("index pattern %v does not match the default index eks-pod-logs", ip.Attributes["title"])
	}

	for id, field := range map[string]string{"podlogs-messages-by-stream": "stream", "podlogs-messages-by-namespace": "kubernetes.namespace_name"} {
		v := visState(t, objs[id])
		if v.Type != "histogram" || len(v.Aggs) != 3 || v.Aggs[1].Type != "date_histogram" || v.Aggs[1].Params["field"] != "@timestamp" ||
			v.Aggs[2].Type != "terms" || v.Aggs[2].Schema != "group" || v.Aggs[2].Params["field"] != field {
			t.Errorf("%s: %+v, want a date histogram of @timestamp split by %s", id, v, field)
		}
	}

	s := objs["podlogs-newest-messages"]
	if s.Type != "search" || !slices.Equal(toStrings(s.Attributes["columns"]), []string{"stream", "kubernetes.pod_name", "kubernetes.namespace_name", "log"}) ||
		fmt.Sprint(s.Attributes["sort"]) != "[[@timestamp desc]]" {
		t.Errorf("saved search %+v", s.Attributes)
	}

	d, ok := objs["podlogs-pod-logs"]
	if !ok || d.Type != "dashboard" {
		t.Fatal("no dashboard with the fixed id podlogs-pod-logs")
	}
	if d.Attributes["timeRestore"] != true || d.Attributes["timeFrom"] != "now-15m" || d.Attributes["timeTo"] != "now" {
		t.Errorf("dashboard time: %v %v %v, want last 15 minutes", d.Attributes["timeRestore"], d.Attributes["timeFrom"], d.Attributes["timeTo"])
	}
	var panels []string
	for _, p := range attrJSON(t, d, "panelsJSON").([]any) {
		ref := p.(map[string]any)["panelRefName"].(string)
		for _, r := range d.References {
			if r.Name == ref {
				panels = append(panels, r.ID)
			}
		}
	}
	slices.Sort(panels)
	if want := []string{"podlogs-messages-by-namespace", "podlogs-messages-by-stream", "podlogs-newest-messages"}; !slices.Equal(panels, want) {
		t.Errorf("dashboard panels %v, want %v", panels, want)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

type testDoc struct {
	ts        time.Time
	stream    string
	namespace string
	pod       string
	log       string
}

// The visualizations' and the saved search's queries, built from the saved objects as
// Dashboards builds them, return the expected buckets and rows from a real OpenSearch with
// the aggregator's index template.
func TestDashboardQueries(t *testing.T) {
	url, index := ostest.URL(t), ostest.Index(t)
	objs := loadDashboard(t)
	installTemplate(t, url, index)

	now := time.Now().UTC().Truncate(time.Millisecond)
	var docs []testDoc
	add := func(ago time.Duration, stream, ns, pod, log string) {
		docs = append(docs, testDoc{now.Add(-ago), stream, ns, pod, log})
	}
	for i := range 6 {
		add(time.Duration(10*i)*time.Second, "stdout", "ui", "ui-5dcbd7c4b8-x2vqz", fmt.Sprintf("ui line %d", i))
	}
	add(5*time.Second, "stderr", "ui", "ui-5dcbd7c4b8-x2vqz", "Picked up JAVA_TOOL_OPTIONS")
	for i := range 4 {
		add(time.Duration(7*i)*time.Second, "stdout", "carts", "carts-7d9f-abcde", fmt.Sprintf("carts line %d", i))
	}
	add(3*time.Second, "stderr", "orders", "orders-1-zzz", "orders failed")
	add(30*time.Minute, "stdout", "ui", "ui-old", "outside the last 15 minutes")

	var bulk bytes.Buffer
	for i, d := range docs {
		fmt.Fprintf(&bulk, `{"create":{"_index":%q,"_id":"doc-%d"}}`+"\n", index, i)
		b, _ := json.Marshal(map[string]any{
			"@timestamp": d.ts.Format(time.RFC3339Nano),
			"time":       d.ts.Format(time.RFC3339Nano),
			"stream":     d.stream,
			"log":        d.log,
			"kubernetes": map[string]any{
				"pod_name": d.pod, "namespace_name": d.namespace, "host": "ip-10-42-11-23.us-west-2.compute.internal",
				"container_name": d.namespace, "labels": map[string]any{"app": d.namespace, "app.kubernetes.io/name": d.namespace},
			},
		})
		bulk.Write(b)
		bulk.WriteByte('\n')
	}
	var br struct {
		Errors bool `json:"errors"`
	}
	json.Unmarshal(request(t, url, http.MethodPost, "/_bulk?refresh=true", bulk.Bytes()), &br)
	if br.Errors {
		t.Fatal("bulk indexing reported errors")
	}

	// The dashboard's default time range.
	timeRange := map[string]any{"range": map[string]any{"@timestamp": map[string]any{"gte": "now-15m", "lte": "now", "format": "strict_date_optional_time"}}}
	recent := func(keep func(testDoc) bool) []testDoc {
		var out []testDoc
		for _, d := range docs {
			if now.Sub(d.ts) <= 15*time.Minute && keep(d) {
				out = append(out, d)
			}
		}
		return out
	}

	for id, field := range map[string]func(testDoc) string{
		"podlogs-messages-by-stream":    func(d testDoc) string { return d.stream },
		"podlogs-messages-by-namespace": func(d testDoc) string { return d.namespace },
	} {
		v := visState(t, objs[id])
		dh, terms := v.Aggs[1].Params, v.Aggs[2].Params
		q := map[string]any{
			"size":  0,
			"query": map[string]any{"bool": map[string]any{"filter": []any{timeRange}}},
			"aggs": map[string]any{"2": map[string]any{
				"date_histogram": map[string]any{"field": dh["field"], "fixed_interval": "30s", "min_doc_count": dh["min_doc_count"], "time_zone": "UTC"},
				"aggs": map[string]any{"3": map[string]any{"terms": map[string]any{
					"field": terms["field"], "size": terms["size"], "order": map[string]any{"_count": terms["order"]},
				}}},
			}},
		}
		var r struct {
			Aggregations map[string]struct {
				Buckets []struct {
					Sub struct {
						Buckets []struct {
							Key      string `json:"key"`
							DocCount int    `json:"doc_count"`
						} `json:"buckets"`
					} `json:"3"`
				} `json:"buckets"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(request(t, url, http.MethodPost, "/"+index+"/_search", q), &r); err != nil {
			t.Fatal(err)
		}
		got, want := map[string]int{}, map[string]int{}
		for _, b := range r.Aggregations["2"].Buckets {
			for _, sb := range b.Sub.Buckets {
				got[sb.Key] += sb.DocCount
			}
		}
		for _, d := range recent(func(testDoc) bool { return true }) {
			want[field(d)]++
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: buckets %v, want %v", id, got, want)
		}
		if len(got) < 2 {
			t.Errorf("%s: %v has fewer than two series", id, got)
		}
	}

	// The saved search filtered to namespace ui in the query bar (kuery
	// kubernetes.namespace_name:ui becomes a match_phrase), newest first.
	s := objs["podlogs-newest-messages"]
	columns := toStrings(s.Attributes["columns"])
	sortField := s.Attributes["sort"].([]any)[0].([]any)
	q := map[string]any{
		"size": 50,
		"query": map[string]any{"bool": map[string]any{"filter": []any{timeRange,
			map[string]any{"match_phrase": map[string]any{"kubernetes.namespace_name": "ui"}}}}},
		"sort":    []any{map[string]any{sortField[0].(string): map[string]any{"order": sortField[1], "unmapped_type": "boolean"}}},
		"_source": columns,
	}
	var r struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Stream     string `json:"stream"`
					Log        string `json:"log"`
					Kubernetes struct {
						PodName       string `json:"pod_name"`
						NamespaceName string `json:"namespace_name"`
					} `json:"kubernetes"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(request(t, url, http.MethodPost, "/"+index+"/_search", q), &r); err != nil {
		t.Fatal(err)
	}
	want := recent(func(d testDoc) bool { return d.namespace == "ui" })
	slices.SortFunc(want, func(a, b testDoc) int { return b.ts.Compare(a.ts) })
	if len(r.Hits.Hits) != len(want) {
		t.Fatalf("newest ui messages: %d rows, want %d", len(r.Hits.Hits), len(want))
	}
	for i, h := range r.Hits.Hits {
		w := want[i]
		if h.Source.Log != w.log || h.Source.Stream != w.stream || h.Source.Kubernetes.PodName != w.pod || h.Source.Kubernetes.NamespaceName != "ui" {
			t.Errorf("row %d: %+v, want %+v", i, h.Source, w)
		}
	}
}

// installTemplate runs the aggregator against the node until it has installed its index
// template for index (it does on start-up), so the documents get the production mapping.
func installTemplate(t *testing.T, url, index string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(binaries.Commands(t, binaries.Fast, binaries.Aggregator), "aggregator")
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--opensearch-url", url, "--index", index, "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log.format", "text")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt) // a graceful stop; the context kills it if that hangs
		stop := time.AfterFunc(30*time.Second, cancel)
		cmd.Wait()
		stop.Stop()
		cancel()
	}()
	t.Cleanup(func() {
		var names struct {
			IndexTemplates []struct {
				Name string `json:"name"`
			} `json:"index_templates"`
		}
		json.Unmarshal(request(t, url, http.MethodGet, "/_index_template/podlogs-"+index+"*", nil), &names)
		for _, n := range names.IndexTemplates {
			request(t, url, http.MethodDelete, "/_index_template/"+n.Name, nil)
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(url + "/_index_template/podlogs-" + index)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the aggregator installed no index template podlogs-%s within 60s; its output:\n%s", index, logs.String())
		}
	}
}

func request(t *testing.T, url, method, p string, body any) []byte {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url+p, rd)
	if err != nil {
		t.Fatal(err)
	}
	ct := "application/json"
	if strings.HasPrefix(p, "/_bulk") {
		ct = "application/x-ndjson"
	}
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %s", method, p, resp.Status, out)
	}
	return out
}
