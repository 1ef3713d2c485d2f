package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
)

func TestValidateIndex(t *testing.T) {
	f := func(index, wantErr string) {
		t.Helper()
		err := ValidateIndex(index)
		if (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("ValidateIndex(%q) = %v, want error containing %q", index, err, wantErr)
		}
	}
	f("eks-pod-logs", "")
	f("eks-pod-logs-%Y.%m.%d", "")
	f("logs-%Y.%m.%d.%H", "")
	f("%Y-logs", "starts with a date code")
	f("", "empty")
	f("logs-%F", "%F is not a date code")
	f("logs-%", "lone %")
	f("Logs", "upper-case")
	f("logs*", "holds a character")
	f("logs %Y", "holds a character")
	f("-logs", "starts with")
	f(strings.Repeat("a", 256), "longer than 255")
}

func TestTemplatePattern(t *testing.T) {
	f := func(index, want string) {
		t.Helper()
		if got := TemplatePattern(index); got != want {
			t.Errorf("TemplatePattern(%q) = %q, want %q", index, got, want)
		}
	}
	f("eks-pod-logs", "eks-pod-logs")
	f("eks-pod-logs-%Y.%m.%d", "eks-pod-logs-*")
	f("logs-%Y.%m-app", "logs-*-app")
	f("%Y.%m.%d", "*")
}

func TestIndexNamer(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	f := func(pattern, doc, want string) {
		t.Helper()
		n := newIndexNamer(pattern)
		n.now = func() time.Time { return now }
		// Twice: the second answer comes from the cache.
		for range 2 {
			if got := string(n.quoted([]byte(doc))); got != `"`+want+`"` {
				t.Errorf("%q of %s = %s, want %q", pattern, doc, got, want)
			}
		}
	}
	const doc = `{"@timestamp":"2026-11-25T08:00:00.000Z","time":"2026-11-25T08:00:00.000000001Z"}`
	f("eks-pod-logs", doc, "eks-pod-logs")
	f("eks-pod-logs-%Y.%m.%d", doc, "eks-pod-logs-2026.11.25")
	f("logs-%Y%m%d%H", doc, "logs-2026112508")
	f("logs-%Y.%m", `{"stream":"stdout","@timestamp":"2026-12-31T23:59:59.999Z"}`, "logs-2026.12") // not first: found anyway
	f("logs-%Y.%m.%d", `{"log":"no timestamp"}`, "logs-2030.01.02")                                // now
	f("logs-%Y.%m.%d", `{"@timestamp":"yesterday"}`, "logs-2030.01.02")

	// Documents of changing days, in one namer.
	n := newIndexNamer("l-%Y.%m.%d")
	for _, c := range []struct{ ts, want string }{
		{"2026-11-24T23:59:59.999Z", "l-2026.11.24"},
		{"2026-11-25T00:00:00.000Z", "l-2026.11.25"},
		{"2026-11-25T13:00:00.000Z", "l-2026.11.25"},
		{"2026-11-24T23:59:59.999Z", "l-2026.11.24"},
	} {
		if got := n.name([]byte(`{"@timestamp":"` + c.ts + `"}`)); got != c.want {
			t.Errorf("name of %s = %q, want %q", c.ts, got, c.want)
		}
	}
}

func TestISMPolicy(t *testing.T) {
	f := func(p ISMPolicy, mode IndexMode, index, wantErr, wantBody string) {
		t.Helper()
		err := p.Validate(mode, index)
		if (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%+v %v %s: error %v, want %q", p, mode, index, err, wantErr)
		}
		if wantBody == "" {
			return
		}
		b, _ := json.Marshal(ISMPolicyBody(p, TemplatePattern(index)))
		if string(b) != wantBody {
			t.Errorf("%+v %v %s: policy\n%s\nwant\n%s", p, mode, index, b, wantBody)
		}
	}
	f(ISMPolicy{DeleteAfterDays: 30}, PlainIndex, "logs-%Y.%m.%d", "",
		`{"policy":{"default_state":"hot","description":"podlogs: pod log indices logs-*","ism_template":[{"index_patterns":["logs-*"],"priority":100}],`+
			`"states":[{"actions":[],"name":"hot","transitions":[{"conditions":{"min_index_age":"30d"},"state_name":"delete"}]},`+
			`{"actions":[{"delete":{}}],"name":"delete","transitions":[]}]}}`)
	f(ISMPolicy{DeleteAfterDays: 7, RolloverSize: "50gb", RolloverAge: "1d"}, DataStream, "logs", "",
		`{"policy":{"default_state":"hot","description":"podlogs: pod log indices logs","ism_template":[{"index_patterns":["logs"],"priority":100}],`+
			`"states":[{"actions":[{"rollover":{"min_index_age":"1d","min_primary_shard_size":"50gb"}}],"name":"hot","transitions":[{"conditions":{"min_index_age":"7d"},"state_name":"delete"}]},`+
			`{"actions":[{"delete":{}}],"name":"delete","transitions":[]}]}}`)
	f(ISMPolicy{RolloverAge: "12h"}, DataStream, "logs", "",
		`{"policy":{"default_state":"hot","description":"podlogs: pod log indices logs","ism_template":[{"index_patterns":["logs"],"priority":100}],`+
			`"states":[{"actions":[{"rollover":{"min_index_age":"12h"}}],"name":"hot","transitions":[]}]}}`)
	f(ISMPolicy{DeleteAfterDays: 30}, PlainIndex, "logs", "deleted whole", "")
	f(ISMPolicy{DeleteAfterDays: 30}, DataStream, "logs", "needs a rollover condition", "")
	f(ISMPolicy{RolloverSize: "50gb"}, PlainIndex, "logs-%Y.%m.%d", "rollover needs a data stream", "")
	f(ISMPolicy{RolloverSize: "50 GB", RolloverAge: "1w"}, DataStream, "logs", "rollover size", "")
	f(ISMPolicy{RolloverAge: "1w"}, DataStream, "logs", "rollover age", "")
	f(ISMPolicy{DeleteAfterDays: -1}, PlainIndex, "logs-%Y", "negative", "")
	if (ISMPolicy{}).Enabled() || !(ISMPolicy{RolloverAge: "1d"}).Enabled() {
		t.Error("Enabled")
	}
}

func TestISMErr(t *testing.T) {
	f := func(err error, wantNoISM bool) {
		t.Helper()
		if got := errors.Is(ismErr(err), ErrNoISM); got != wantNoISM {
			t.Errorf("ismErr(%v) is ErrNoISM: %v, want %v", err, got, wantNoISM)
		}
	}
	f(&osrequest.StatusError{Status: 400, Body: `{"error":"no handler found for uri [/_plugins/_ism/policies/x] and method [GET]"}`}, true)
	f(&osrequest.StatusError{Status: 405, Body: `{"error":"Incorrect HTTP method for uri [/_plugins/_ism/policies] and method [GET], allowed: [POST]"}`}, true)
	f(&osrequest.StatusError{Status: 404, Body: `{"error":{"type":"status_exception","reason":"Policy not found"}}`}, false)
	f(&osrequest.StatusError{Status: 400, Body: `{"error":{"type":"illegal_argument_exception"}}`}, false)
	f(errors.New("connection refused"), false)
}

// Against the node the tests run (the integ-test distribution, without
// the ISM plugin): the plugin's absence is detected, and a sink asked for
// a policy does not start writing.
func TestISMMissingIsDetected(t *testing.T) {
	osURL := ostest.URL(t)
	client, err := opensearch.NewClient(opensearch.Config{Addresses: []string{osURL}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	err = CheckISM(context.Background(), client)
	if err == nil {
		t.Skip("this OpenSearch has the ISM plugin")
	}
	if !errors.Is(err, ErrNoISM) {
		t.Fatalf("CheckISM = %v, want ErrNoISM", err)
	}
	err = PutISMPolicy(context.Background(), client, "podlogs-x", ISMPolicyBody(ISMPolicy{DeleteAfterDays: 1}, "x-*"))
	if !errors.Is(err, ErrNoISM) {
		t.Fatalf("PutISMPolicy = %v, want ErrNoISM", err)
	}
}

// docAt is a document of the shape the document package writes,
// @timestamp first.
func docAt(i int, ts string) string {
	return fmt.Sprintf(`{"@timestamp":%q,"time":%q,"stream":"stdout","log":"line %d","kubernetes":{"pod_name":"ui-1","namespace_name":"ui"},"podlogs":{"offset":%d}}`,
		ts, ts, i, i)
}

// getJSON decodes the answer to GET path into v and returns the status.
func getJSON(t *testing.T, osURL, path string, v any) int {
	t.Helper()
	resp, err := http.Get(osURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

// deadLetterIsIndexedByItsTemplate checks that the dead-letter index has
// the dead-letter mapping (dynamic false), not the pod logs one.
func deadLetterIsIndexedByItsTemplate(t *testing.T, osURL, dlq string) {
	t.Helper()
	var m map[string]struct {
		Mappings struct {
			Dynamic string `json:"dynamic"`
		} `json:"mappings"`
	}
	getJSON(t, osURL, "/"+dlq+"/_mapping", &m)
	if m[dlq].Mappings.Dynamic != "false" {
		t.Fatalf("dead-letter index %s mapping %+v: not the dead-letter template's", dlq, m)
	}
}

func TestDailyIndicesFromTheDocumentsTimestamp(t *testing.T) {
	osURL := ostest.URL(t)
	r := start(t, osURL, time.Minute, func(c *Config) { c.Index += "-%Y.%m.%d" })
	for i := range 30 {
		ts := "2026-11-24T23:59:59.999Z"
		if i%3 == 0 {
			ts = "2026-11-25T00:00:00.000Z"
		}
		if i == 7 {
			r.publish(t, "bad", doc(i, map[string]any{"an": "object where a number belongs"}))
			continue
		}
		r.publish(t, fmt.Sprintf("id-%03d", i), docAt(i, ts))
	}
	r.settled(t, 30)
	if n := count(t, osURL, r.index+"-2026.11.24"); n != 19 {
		t.Errorf("%s-2026.11.24 holds %d documents, want 19", r.index, n)
	}
	if n := count(t, osURL, r.index+"-2026.11.25"); n != 10 {
		t.Errorf("%s-2026.11.25 holds %d documents, want 10", r.index, n)
	}
	// The daily indices have the pod logs mapping.
	var m map[string]struct {
		Mappings struct {
			Properties map[string]struct {
				Type string `json:"type"`
			} `json:"properties"`
		} `json:"mappings"`
	}
	getJSON(t, osURL, "/"+r.index+"-2026.11.24/_mapping", &m)
	if typ := m[r.index+"-2026.11.24"].Mappings.Properties["time"].Type; typ != "date_nanos" {
		t.Errorf("time is mapped %q in the daily index, want date_nanos", typ)
	}
	// The dead-letter index matches the daily pattern <index>-* too, and
	// still gets its own template.
	if n := count(t, osURL, r.index+"-dlq"); n != 1 {
		t.Fatalf("dead-letter index holds %d documents, want 1", n)
	}
	deadLetterIsIndexedByItsTemplate(t, osURL, r.index+"-dlq")
	var dl struct {
		Source struct {
			Index string `json:"index"`
		} `json:"_source"`
	}
	getJSON(t, osURL, "/"+r.index+"-dlq/_doc/bad", &dl)
	if dl.Source.Index != r.index+"-2026.11.25" {
		t.Errorf("dead letter names index %q, want %s-2026.11.25", dl.Source.Index, r.index)
	}
}

func TestDataStream(t *testing.T) {
	osURL := ostest.URL(t)
	r := start(t, osURL, 100*time.Millisecond, func(c *Config) { c.Mode = DataStream })
	t.Cleanup(func() { // before ostest deletes the indices, which a data stream's are not
		req, _ := http.NewRequest(http.MethodDelete, osURL+"/_data_stream/"+r.index, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	for i := range 20 {
		if i == 7 {
			r.publish(t, "bad", doc(i, map[string]any{"an": "object where a number belongs"}))
			continue
		}
		r.publish(t, fmt.Sprintf("id-%03d", i), docAt(i, "2026-11-25T08:00:00.000Z"))
	}
	r.settled(t, 20)
	time.Sleep(200 * time.Millisecond) // past the duplicate window: sent again, answered 409
	for i := range 5 {
		r.publish(t, fmt.Sprintf("id-%03d", i), docAt(i, "2026-11-25T08:00:00.000Z"))
	}
	r.settled(t, 25)

	var ds struct {
		DataStreams []struct {
			Name    string `json:"name"`
			Indices []struct {
				Name string `json:"index_name"`
			} `json:"indices"`
		} `json:"data_streams"`
	}
	if st := getJSON(t, osURL, "/_data_stream/"+r.index, &ds); st != http.StatusOK || len(ds.DataStreams) != 1 ||
		len(ds.DataStreams[0].Indices) != 1 || !strings.HasPrefix(ds.DataStreams[0].Indices[0].Name, ".ds-"+r.index) {
		t.Fatalf("data stream %s: %d %+v", r.index, st, ds)
	}
	http.Post(osURL+"/"+r.index+"/_refresh", "application/json", nil)
	var res struct {
		Hits struct {
			Total struct{ Value int } `json:"total"`
			Hits  []struct {
				ID string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	getJSON(t, osURL, "/"+r.index+"/_search?q=log:%22line%203%22", &res)
	if res.Hits.Total.Value != 1 || res.Hits.Hits[0].ID != "id-003" {
		t.Fatalf("search in the data stream: %+v", res.Hits)
	}
	if n := count(t, osURL, r.index); n != 19 {
		t.Fatalf("data stream holds %d documents, want 19", n)
	}
	if d := testutilCount(r, "duplicate"); d != 5 {
		t.Fatalf("duplicate = %v, want 5", d)
	}
	if n := count(t, osURL, r.index+"-dlq"); n != 1 {
		t.Fatalf("dead-letter index holds %d documents, want 1", n)
	}
	deadLetterIsIndexedByItsTemplate(t, osURL, r.index+"-dlq")
}

func testutilCount(r *rig, outcome string) float64 {
	return testutil.ToFloat64(r.sink.metrics.docs.WithLabelValues(outcome))
}

// A pod with hundreds of labels and annotations (dotted keys, "app" beside
// "app.kubernetes.io/name") and a deeply nested JSON body cannot break the
// mapping: each is one flat_object field.
func TestManyLabelsDoNotBreakTheMapping(t *testing.T) {
	osURL := ostest.URL(t)
	r := start(t, osURL, time.Minute)
	labels, annotations := map[string]string{"app": "ui"}, map[string]string{}
	for i := range 1500 {
		labels[fmt.Sprintf("app.kubernetes.io/k%d", i)] = "v"
		annotations[fmt.Sprintf("example.com/a%d.b", i)] = strings.Repeat("x", i%50)
	}
	var data any = "leaf"
	for range 30 {
		data = map[string]any{"n": data}
	}
	b, _ := json.Marshal(map[string]any{
		"@timestamp": "2026-11-25T08:00:00.000Z", "time": "2026-11-25T08:00:00.000000001Z", "stream": "stdout", "log": "many labels",
		"kubernetes": map[string]any{"pod_name": "ui-1", "namespace_name": "ui", "labels": labels, "annotations": annotations},
		"data":       data,
	})
	r.publish(t, "many", string(b))
	r.settled(t, 1)
	if n := count(t, osURL, r.index); n != 1 {
		t.Fatalf("index holds %d documents, want 1 (dead-letter index: %d)", n, count(t, osURL, r.index+"-dlq"))
	}
}

// The cheap path of indexNamer relies on the layout the document package
// writes: @timestamp first, in UTC.
func TestIndexNamerReadsTheDocumentPackagesLayout(t *testing.T) {
	ts := time.Date(2026, 11, 25, 23, 30, 0, 0, time.FixedZone("UTC-2", -2*3600)) // 2026-11-26T01:30Z
	doc := document.Append(nil, &document.Meta{PodName: "p", Namespace: "n"}, &document.Line{Time: ts, Stream: "stdout", Message: []byte("x")}, time.Now())
	if !bytes.HasPrefix(doc, tsFirst) {
		t.Fatalf("document does not start with %s: %s", tsFirst, doc)
	}
	if got := newIndexNamer("l-%Y.%m.%d.%H").name(doc); got != "l-2026.11.26.01" {
		t.Fatalf("index of %s = %q, want l-2026.11.26.01", doc, got)
	}
}
