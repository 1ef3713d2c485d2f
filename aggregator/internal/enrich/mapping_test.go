package enrich_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/aggregator/internal/sink"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

func TestMain(m *testing.M) { ostest.Main(m) }

type osClient struct {
	t   *testing.T
	url string
}

func (c osClient) do(method, path string, body []byte) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if strings.HasSuffix(path, "_bulk") || strings.Contains(path, "_bulk?") {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (c osClient) json(method, path string, v any) map[string]any {
	c.t.Helper()
	b, _ := json.Marshal(v)
	st, out := c.do(method, path, b)
	if st/100 != 2 {
		c.t.Fatalf("%s %s: %d %v", method, path, st, out)
	}
	return out
}

// bulk writes docs and returns how many OpenSearch rejected, and one reason.
func (c osClient) bulk(index string, docs [][]byte) (rejected int, reason string) {
	c.t.Helper()
	var body []byte
	for _, d := range docs {
		body = append(body, `{"create":{}}`+"\n"...)
		body = append(append(body, d...), '\n')
	}
	st, out := c.do(http.MethodPost, "/"+index+"/_bulk?refresh=true", body)
	if st != 200 {
		c.t.Fatalf("bulk: %d %v", st, out)
	}
	for _, it := range out["items"].([]any) {
		r := it.(map[string]any)["create"].(map[string]any)
		if e, ok := r["error"].(map[string]any); ok {
			rejected++
			reason = fmt.Sprint(e["type"], ": ", e["reason"])
		}
	}
	return rejected, reason
}

func (c osClient) count(index string, query map[string]any) int {
	c.t.Helper()
	out := c.json(http.MethodPost, "/"+index+"/_count", map[string]any{"query": query})
	return int(out["count"].(float64))
}

func podWith(name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ui", Name: name, UID: "uid-" + "x", Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "ui:1"}}},
	}
}

func render(p *enrich.Pod, msg string, meta document.Meta) []byte {
	meta.PodExtra = p.Extra()
	meta.ContainerExtra, meta.ImageExtra, _ = p.Container("c", 0)
	meta.DataFields = p.DataFields()
	return document.Append(nil, &meta, &document.Line{Time: time.Now(), Stream: "stdout", Message: []byte(msg)}, time.Now())
}

// TestKeyStyleAgainstOpenSearch picks the default key style. Both styles
// keep "app" beside "app.kubernetes.io/name" and stay filterable with the
// queries a dashboard filter makes (term, and query_string as DQL/Lucene
// filters compile to); only flat_object survives a cluster with more
// distinct label and annotation keys than the index's field limit, and
// keys dotted without either style break the mapping. So: flat_object.
func TestKeyStyleAgainstOpenSearch(t *testing.T) {
	c := osClient{t: t, url: ostest.URL(t)}
	base := ostest.Index(t)
	meta := document.Meta{PodName: "ui-1", Namespace: "ui", PodID: "uid-x", ContainerName: "c", Host: "node-1"}
	clash := []*corev1.Pod{
		podWith("a", map[string]string{"app": "ui"}, map[string]string{"prometheus.io/scrape": "true"}),
		podWith("b", map[string]string{"app.kubernetes.io/name": "ui", "app.kubernetes.io/part-of": "shop"}, map[string]string{"prometheus.io": "x"}),
	}
	type style struct {
		name    string
		keys    enrich.KeyStyle
		mapping sink.KeyMapping
		filter  string // the label app.kubernetes.io/name as a field path
	}
	// Many distinct keys: more than index.mapping.total_fields.limit. The
	// template sets 2000; the test lowers it to 100 (each new field is a
	// mapping update, slow by the thousand) and writes 150.
	const fieldLimit, distinct = 100, 150
	accepted := map[string]int{}
	for _, s := range []style{
		{"flat_object", enrich.KeysKept, sink.FlatObject, "kubernetes.labels.app.kubernetes.io/name"},
		{"underscore", enrich.KeysUnderscore, sink.KeywordFields, "kubernetes.labels.app_kubernetes_io/name"},
	} {
		t.Run(s.name, func(t *testing.T) {
			index := base + "-" + s.name
			tmpl := sink.IndexTemplateFor(index, s.mapping)
			tmpl["template"].(map[string]any)["settings"].(map[string]any)["index.mapping.total_fields.limit"] = fieldLimit
			c.json(http.MethodPut, "/_index_template/"+index, tmpl)
			t.Cleanup(func() { c.do(http.MethodDelete, "/_index_template/"+index, nil) })
			opts := enrich.Options{Labels: true, Annotations: true, Keys: s.keys}
			var docs [][]byte
			for _, p := range clash {
				docs = append(docs, render(enrich.Render(p, nil, opts), "hello", meta))
			}
			if n, reason := c.bulk(index, docs); n != 0 {
				t.Fatalf("%s: %d of %d documents rejected: %s", s.name, n, len(docs), reason)
			}
			// Filterable: term, and query_string.
			if n := c.count(index, map[string]any{"term": map[string]any{s.filter: "ui"}}); n != 1 {
				t.Errorf("term %s: %d documents, want 1", s.filter, n)
			}
			if n := c.count(index, map[string]any{"term": map[string]any{"kubernetes.labels.app": "ui"}}); n != 1 {
				t.Errorf("term labels.app: %d documents, want 1", n)
			}
			q := strings.ReplaceAll(s.filter, "/", `\/`)
			if n := c.count(index, map[string]any{"query_string": map[string]any{"query": q + `:ui AND kubernetes.namespace_name:ui`}}); n != 1 {
				t.Errorf("query_string on %s: %d documents, want 1", s.filter, n)
			}
			// Many distinct keys across pods (a cluster's worth of labels).
			docs = docs[:0]
			for i := range distinct {
				p := podWith("many", map[string]string{fmt.Sprintf("team%d.example.com/owner", i): "x"}, nil)
				docs = append(docs, render(enrich.Render(p, nil, opts), "hello", meta))
			}
			n, reason := c.bulk(index, docs)
			accepted[s.name] = distinct - n
			t.Logf("%s: %d of %d documents with distinct label keys accepted (%s)", s.name, distinct-n, distinct, reason)
		})
	}
	if accepted["flat_object"] != distinct {
		t.Errorf("flat_object rejected documents with many distinct keys")
	}
	if accepted["underscore"] == distinct {
		t.Errorf("underscore took %d distinct keys: the field limit no longer argues for flat_object; revisit the default", distinct)
	}
	if def, _ := enrich.ParseKeyStyle("flat_object"); def != enrich.KeysKept || enrich.KeyStyle(0) != enrich.KeysKept {
		t.Error("the default key style is not flat_object")
	}

	// The problem both styles solve: keys kept, mapped as objects.
	t.Run("dotted keys without either", func(t *testing.T) {
		index := base + "-plain"
		c.json(http.MethodPut, "/"+index, map[string]any{"mappings": map[string]any{"properties": map[string]any{}}})
		opts := enrich.Options{Labels: true}
		docs := [][]byte{render(enrich.Render(clash[0], nil, opts), "x", meta), render(enrich.Render(clash[1], nil, opts), "x", meta)}
		if n, reason := c.bulk(index, docs); n != 1 {
			t.Fatalf("%d rejected (%s); want the second document rejected for its mapping", n, reason)
		} else {
			t.Logf("dynamic mapping: %s", reason)
		}
	})
}

// TestDataMappingAgainstOpenSearch: JSON bodies of different apps under one
// data field never collide: a string here, an object there, arrays, nulls,
// numbers, deep nesting; and data stays searchable.
func TestDataMappingAgainstOpenSearch(t *testing.T) {
	c := osClient{t: t, url: ostest.URL(t)}
	index := ostest.Index(t)
	c.json(http.MethodPut, "/_index_template/"+index, sink.IndexTemplate(index))
	t.Cleanup(func() { c.do(http.MethodDelete, "/_index_template/"+index, nil) })
	meta := document.Meta{PodName: "p", Namespace: "ui", PodID: "u", ContainerName: "c", DataFields: 100}
	var docs [][]byte
	for _, msg := range []string{
		`{"user":"bob","level":"info"}`,
		`{"user":{"id":7,"name":"alice"},"level":"warn"}`,
		`{"user":[1,"two",{"three":3}],"level":null}`,
		`{"user":true,"ts":1699322710.616,"empty":{},"list":[]}`,
		`{"a":{"b":{"c":{"d":{"e":{"f":"deep"}}}}},"dotted.key":"v","":"empty key"}`,
		`not json {"user":"x"}`,
	} {
		docs = append(docs, document.Append(nil, &meta, &document.Line{Time: time.Now(), Stream: "stdout", Message: []byte(msg)}, time.Now()))
	}
	if n, reason := c.bulk(index, docs); n != 0 {
		t.Fatalf("%d documents rejected: %s", n, reason)
	}
	for q, want := range map[string]int{
		"data.user:bob": 1, "data.user.name:alice": 1, "data.level:warn": 1, "data.a.b.c.d.e.f:deep": 1, "_exists_:data": 5,
	} {
		if n := c.count(index, map[string]any{"query_string": map[string]any{"query": q}}); n != want {
			t.Errorf("%s: %d documents, want %d", q, n, want)
		}
	}
}
