package document

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var meta = Meta{
	PodName: "ui-5dcbd7c4b8-x2vqz", Namespace: "ui", PodID: "3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10",
	ContainerName: "ui", Host: "ip-10-42-11-23.us-west-2.compute.internal",
}

func TestAppend(t *testing.T) {
	ts := time.Date(2023, 11, 7, 2, 5, 10, 616482913, time.UTC)
	f := func(l Line, want map[string]any) {
		t.Helper()
		b := Append(nil, &meta, &l, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %s: %v", b, err)
		}
		for k, v := range want {
			if g := lookup(got, k); g != v {
				t.Errorf("%s = %#v, want %#v (doc %s)", k, g, v, b)
			}
		}
	}
	f(Line{Time: ts, Stream: "stdout", Message: []byte("Started UiApplication in 5.917 seconds"), Offset: 42}, map[string]any{
		"@timestamp": "2023-11-07T02:05:10.616Z", "time": "2023-11-07T02:05:10.616482913Z", "stream": "stdout",
		"log": "Started UiApplication in 5.917 seconds", "kubernetes.pod_name": "ui-5dcbd7c4b8-x2vqz",
		"kubernetes.namespace_name": "ui", "kubernetes.pod_id": "3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10",
		"kubernetes.container_name": "ui", "kubernetes.host": "ip-10-42-11-23.us-west-2.compute.internal",
		"podlogs.offset": float64(42), "podlogs.malformed": nil,
	})
	// Escapes, control characters, unicode, invalid UTF-8 (repaired), U+2028.
	f(Line{Time: ts, Stream: "stderr", Message: []byte("a\"b\\c\td\x01é日本🙂\xff\xfeend\u2028")}, map[string]any{
		"log": "a\"b\\c\td\x01é日本🙂\ufffd\ufffdend\u2028", "stream": "stderr",
	})
	// A time in another zone is written in UTC.
	f(Line{Time: ts.In(time.FixedZone("x", 3600)), Stream: "stdout"}, map[string]any{
		"@timestamp": "2023-11-07T02:05:10.616Z", "log": "",
	})
	// Malformed: the time of arrival stands in, and the flags say so.
	f(Line{Stream: "stdout", Message: []byte("garbage"), Malformed: true, Truncated: true}, map[string]any{
		"@timestamp": "2030-01-01T00:00:00.000Z", "podlogs.malformed": true, "podlogs.truncated": true,
	})
}

func lookup(m map[string]any, path string) any {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok := mm[k]; ok {
			cur = v
			continue
		}
		// "@timestamp" has no dots; a missing key is nil.
		return nil
	}
	return cur
}

func TestAppendID(t *testing.T) {
	id := func(dir string, fp, off uint64) string { return string(AppendID(nil, dir, fp, off)) }
	a := id("ui_ui-1_u/ui", 1, 0)
	if len(a) != IDLen || strings.ContainsAny(a, "+/=") {
		t.Fatalf("id %q: want %d url-safe characters", a, IDLen)
	}
	if a != id("ui_ui-1_u/ui", 1, 0) {
		t.Fatal("id is not deterministic")
	}
	seen := map[string]bool{}
	for _, other := range []string{a, id("ui_ui-1_u/ui", 1, 1), id("ui_ui-1_u/ui", 2, 0), id("ui_ui-1_u/ui2", 1, 0), id("ui_ui-2_u/ui", 1, 0)} {
		if seen[other] {
			t.Fatalf("two sources share id %s", other)
		}
		seen[other] = true
	}
}

func FuzzAppend(f *testing.F) {
	f.Add([]byte("Started UiApplication"), "stdout", "ui-1")
	f.Add([]byte("\xff\xfe\x00\"\\\u2028日本"), "stderr", "p\x01")
	f.Fuzz(func(t *testing.T, msg []byte, stream, pod string) {
		m := meta
		m.PodName = pod
		b := Append(nil, &m, &Line{Time: time.Unix(1, 2), Stream: stream, Message: msg}, time.Unix(0, 0))
		var got struct {
			Log        string `json:"log"`
			Kubernetes struct {
				PodName string `json:"pod_name"`
			} `json:"kubernetes"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON for %q: %v\n%s", msg, err, b)
		}
		if utf8.Valid(msg) && got.Log != string(msg) {
			t.Fatalf("log = %q, want %q", got.Log, msg)
		}
		if utf8.ValidString(pod) && got.Kubernetes.PodName != pod {
			t.Fatalf("pod_name = %q, want %q", got.Kubernetes.PodName, pod)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	b.Run("text", func(b *testing.B) { benchAppend(b, meta, springLine) })
	enriched := meta
	enriched.PodExtra = []byte(`,"labels":{"app.kubernetes.io/name":"ui","pod-template-hash":"5dcbd7c4b8"},"annotations":{"prometheus.io/scrape":"true"}`)
	enriched.ContainerExtra = []byte(`,"docker_id":"9c1e5f0a7b3d","container_hash":"public.ecr.aws/aws-containers/retail-store-sample-ui@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","container_image":"public.ecr.aws/aws-containers/retail-store-sample-ui:0.4.0"`)
	b.Run("enriched", func(b *testing.B) { benchAppend(b, enriched, springLine) })
	enriched.DataFields = 100
	b.Run("json", func(b *testing.B) {
		benchAppend(b, enriched, `{"@timestamp":"2023-11-07T02:05:10.616Z","level":"INFO","logger":"c.a.s.u.UiApplication","thread":"main","message":"Started UiApplication in 5.917 seconds","context":{"pid":1,"app":"ui"}}`)
	})
}

const springLine = `2023-11-07T02:05:10.616Z  INFO 1 --- [           main] c.a.s.u.UiApplication : Started UiApplication in 5.917 seconds (process running for 7.541)`

func benchAppend(b *testing.B, meta Meta, msg string) {
	l := Line{
		Time: time.Date(2023, 11, 7, 2, 5, 10, 616482913, time.UTC), Stream: "stdout",
		Message: []byte(msg),
	}
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(l.Message)))
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], &meta, &l, time.Time{})
		buf = AppendID(buf, "ui_ui-5dcbd7c4b8-x2vqz_3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10/ui", 77, 12345)
	}
}
