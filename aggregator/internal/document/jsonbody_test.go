package document

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAppendObject(t *testing.T) {
	f := func(in string, maxFields int, want string, wantTruncated bool) {
		t.Helper()
		out, ok, truncated := appendObject([]byte("x"), []byte(in), maxFields)
		if want == "" {
			if ok || string(out) != "x" {
				t.Errorf("%q: got %q ok=%v, want it left as text", in, out, ok)
			}
			return
		}
		if !ok || string(out) != "x"+want || truncated != wantTruncated {
			t.Errorf("%q: got %q ok=%v truncated=%v, want %q truncated=%v", in, out, ok, truncated, want, wantTruncated)
		}
	}
	f(`{"level":"info","msg":"started","n":1}`, 100, `{"level":"info","msg":"started","n":1}`, false)
	f(`  {"a" : [1, -2.5e3, true, false, null, {"b":{}}, []] }  `, 100, `{"a":[1,-2.5e3,true,false,null,{"b":{}},[]]}`, false)
	f(`{}`, 100, `{}`, false)
	// Escapes are kept as written; invalid UTF-8 is repaired; U+2028 escaped.
	f(`{"m":"a\"b\\c\n\u00e9\/`+"日本\xff\u2028"+`"}`, 100, `{"m":"a\"b\\c\n\u00e9\/日本\ufffd\u2028"}`, false)
	// The cap counts values at every depth, in order.
	f(`{"a":1,"b":{"c":2,"d":3},"e":4}`, 3, `{"a":1,"b":{"c":2}}`, true)
	f(`{"a":[1,2,3],"b":2}`, 2, `{"a":[1]}`, true)
	f(`{"a":1}`, 1, `{"a":1}`, false)
	// Not one object: stays text.
	for _, in := range []string{
		``, `   `, `[1,2]`, `"s"`, `42`, `{`, `{"a":}`, `{"a":1,}`, `{"a":1}{}`, `{"a":1} x`, `{a:1}`,
		`{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, "{\"a\":\"\x01\"}", `{"a":"\x"}`,
		`{"a":"\u12G4"}`, `{"a":"unterminated}`, `{"a" 1}`, `{"a":[1 2]}`, `{"a":[1,]}`,
		`{"a":` + string(bytes.Repeat([]byte("["), MaxDataDepth)) + string(bytes.Repeat([]byte("]"), MaxDataDepth)) + `}`,
		`INFO Started {"a":1}`,
	} {
		f(in, 100, "", false)
	}
}

func TestAppendData(t *testing.T) {
	m := meta
	m.DataFields = 100
	m.PodExtra = []byte(`,"labels":{"app":"ui"}`)
	m.ContainerExtra = []byte(`,"docker_id":"abc"`)
	ts := time.Date(2023, 11, 7, 2, 5, 10, 616482913, time.UTC)
	f := func(l Line, wantData any, wantFlag bool) {
		t.Helper()
		b := Append(nil, &m, &l, ts)
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %s: %v", b, err)
		}
		if g, _ := json.Marshal(got["data"]); string(g) != mustJSON(wantData) {
			t.Errorf("data = %s, want %s (doc %s)", g, mustJSON(wantData), b)
		}
		if got["log"] != string(l.Message) {
			t.Errorf("log = %v, want the line as written", got["log"])
		}
		if lookup(got, "kubernetes.labels.app") != "ui" {
			t.Errorf("extra members missing: %s", b)
		}
		if (lookup(got, "podlogs.data_truncated") == true) != wantFlag {
			t.Errorf("data_truncated = %v, want %v", lookup(got, "podlogs.data_truncated"), wantFlag)
		}
	}
	f(Line{Time: ts, Stream: "stdout", Message: []byte(`{"level":"info","user":{"id":7}}`)}, map[string]any{"level": "info", "user": map[string]any{"id": 7}}, false)
	f(Line{Time: ts, Stream: "stdout", Message: []byte(`plain text`)}, nil, false)
	f(Line{Time: ts, Stream: "stdout", Message: []byte(`{"cut":"in the mid`), Truncated: true}, nil, false)
	m.DataFields = 1
	f(Line{Time: ts, Stream: "stdout", Message: []byte(`{"a":1,"b":2}`)}, map[string]any{"a": 1}, true)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// FuzzAppendObject checks that whatever the line, the document is valid
// JSON, and that a valid object keeps its content when nothing is cut.
func FuzzAppendObject(f *testing.F) {
	for _, s := range []string{
		`{"level":"info","msg":"Started UiApplication","ts":1699322710.616}`,
		`{"a":[1,{"b":null}],"c":"\u00e9\n"}`,
		`{"log":"nested {\"json\": true}"}`, "{\"bad\":\"\xff\"}", `{"a":1e400}`, `{`, `[]`,
	} {
		f.Add([]byte(s), 10)
	}
	f.Fuzz(func(t *testing.T, msg []byte, maxFields int) {
		m := meta
		m.DataFields = max(1, maxFields%64)
		b := Append(nil, &m, &Line{Time: time.Unix(1, 2), Stream: "stdout", Message: msg}, time.Unix(0, 0))
		var got struct {
			Data    json.RawMessage `json:"data"`
			Podlogs struct {
				DataTruncated bool `json:"data_truncated"`
			} `json:"podlogs"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON for %q: %v\n%s", msg, err, b)
		}
		var in map[string]any
		isObject := decode(msg, &in) == nil && in != nil
		if got.Data != nil && !utf8.Valid(got.Data) {
			t.Fatalf("data is not valid UTF-8: %q", got.Data)
		}
		if got.Data != nil && !isObject && utf8.Valid(msg) {
			t.Fatalf("data %s from a line that is not a JSON object: %q", got.Data, msg)
		}
		if got.Data != nil && !got.Podlogs.DataTruncated && utf8.Valid(msg) {
			var out map[string]any
			if err := decode(got.Data, &out); err != nil || mustJSON(out) != mustJSON(in) {
				t.Fatalf("data %s differs from the line %q", got.Data, msg)
			}
		}
	})
}

// decode is json.Unmarshal keeping numbers as written (1e400 is valid JSON).
func decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}
