package e2e

import (
	"encoding/json"
	"net/http"
	"sort"
	"testing"
)

// checkDashboardQueries runs the queries of the pod logs dashboard against
// the index and compares them with what was written: a date histogram split
// by stream, one split by namespace, and the newest lines of one namespace.
func (ps *podSet) checkDashboardQueries(t *testing.T, s search) {
	t.Helper()
	wantStream, wantNS := map[string]int{}, map[string]int{}
	var ui []written
	for _, w := range ps.lines {
		wantStream[w.stream]++
		wantNS[w.ns]++
		if w.ns == "ui" {
			ui = append(ui, w)
		}
	}
	type bucket struct {
		Key      string `json:"key"`
		DocCount int    `json:"doc_count"`
	}
	histogram := func(field string) map[string]int {
		q := map[string]any{
			"size":  0,
			"query": map[string]any{"range": map[string]any{"@timestamp": map[string]any{"gte": "now-15y", "lte": "now+15y"}}},
			"aggs": map[string]any{"over_time": map[string]any{
				"date_histogram": map[string]any{"field": "@timestamp", "fixed_interval": "1s", "min_doc_count": 1},
				"aggs":           map[string]any{"split": map[string]any{"terms": map[string]any{"field": field, "size": 20}}},
			}},
		}
		var r struct {
			Aggregations struct {
				OverTime struct {
					Buckets []struct {
						Split struct {
							Buckets []bucket `json:"buckets"`
						} `json:"split"`
					} `json:"buckets"`
				} `json:"over_time"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(s.do(t, http.MethodPost, "/"+s.index+"/_search", q), &r); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, b := range r.Aggregations.OverTime.Buckets {
			for _, sb := range b.Split.Buckets {
				got[sb.Key] += sb.DocCount
			}
		}
		return got
	}
	sameCounts := func(what string, got, want map[string]int) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: buckets %v, want %v", what, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: buckets %v, want %v", what, got, want)
			}
		}
	}
	sameCounts("histogram split by stream", histogram("stream"), wantStream)
	sameCounts("histogram split by namespace", histogram("kubernetes.namespace_name"), wantNS)

	// Newest first, filtered to namespace ui, with the table's columns.
	sort.Slice(ui, func(i, j int) bool { return ui[i].t.After(ui[j].t) })
	q := map[string]any{
		"size":    5,
		"query":   map[string]any{"bool": map[string]any{"filter": []any{map[string]any{"term": map[string]any{"kubernetes.namespace_name": "ui"}}}}},
		"sort":    []any{map[string]any{"@timestamp": "desc"}, map[string]any{"time": "desc"}},
		"_source": []string{"@timestamp", "time", "stream", "log", "kubernetes.pod_name"},
	}
	var r struct {
		Hits struct {
			Hits []struct {
				Source doc `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(s.do(t, http.MethodPost, "/"+s.index+"/_search", q), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Hits.Hits) != 5 {
		t.Fatalf("newest ui lines: %d hits, want 5", len(r.Hits.Hits))
	}
	for i, h := range r.Hits.Hits {
		if h.Source.Log != ui[i].msg || h.Source.Kubernetes.PodName != ui[i].pod || h.Source.Stream != ui[i].stream {
			t.Fatalf("newest ui line %d: got %s %s %.80q, want %s %s %.80q", i,
				h.Source.Kubernetes.PodName, h.Source.Stream, h.Source.Log, ui[i].pod, ui[i].stream, ui[i].msg)
		}
	}
}
