package document

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAppendLimited(t *testing.T) {
	ts := time.Date(2023, 11, 7, 2, 5, 10, 616482913, time.UTC)
	enriched := meta
	enriched.PodExtra = []byte(`,"labels":{"app":"ui"},"annotations":{"big":"` + strings.Repeat("a", 40<<10) + `"}`)
	enriched.DataFields = 10
	f := func(name string, m Meta, msg []byte, limit int, wantCut, wantMetaCut bool) {
		t.Helper()
		l := Line{Time: ts, Stream: "stdout", Message: msg, Offset: 7, OriginalBytes: uint64(len(msg) + 40)}
		b, cut := AppendLimited([]byte("prefix"), &m, &l, ts, limit)
		b = b[len("prefix"):]
		if cut != wantCut {
			t.Fatalf("%s: cut = %v, want %v", name, cut, wantCut)
		}
		if limit > 0 && len(b) > limit {
			t.Fatalf("%s: %d bytes, limit %d", name, len(b), limit)
		}
		var got struct {
			Log     string          `json:"log"`
			Data    json.RawMessage `json:"data"`
			Podlogs struct {
				Truncated         bool   `json:"truncated"`
				OriginalBytes     uint64 `json:"original_bytes"`
				MetadataTruncated bool   `json:"metadata_truncated"`
			} `json:"podlogs"`
			Kubernetes map[string]any `json:"kubernetes"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: invalid JSON: %v", name, err)
		}
		if !cut {
			if want := Append(nil, &m, &l, ts); !bytes.Equal(b, want) {
				t.Fatalf("%s: uncut document differs from Append's", name)
			}
			return
		}
		if !got.Podlogs.Truncated || got.Podlogs.OriginalBytes != l.OriginalBytes || got.Data != nil {
			t.Fatalf("%s: flags %+v, data %s", name, got.Podlogs, got.Data)
		}
		if hasAnnotations := got.Kubernetes["annotations"] != nil; got.Podlogs.MetadataTruncated != wantMetaCut || hasAnnotations != (m.PodExtra != nil && !wantMetaCut) {
			t.Fatalf("%s: metadata_truncated %v, annotations present %v", name, got.Podlogs.MetadataTruncated, got.Kubernetes["annotations"] != nil)
		}
		if utf8.Valid(msg) && !strings.HasPrefix(string(msg), got.Log) {
			t.Fatalf("%s: log is not a prefix of the line", name)
		}
		// What was kept fills the limit: one more character would not fit.
		if len(b)+6 < limit && len(got.Log) < len(msg) {
			t.Fatalf("%s: %d bytes of %d kept in %d of %d", name, len(got.Log), len(msg), len(b), limit)
		}
	}
	f("short line", meta, []byte("hello"), 64<<10, false, false)
	f("no limit", meta, bytes.Repeat([]byte("x"), 1<<20), 0, false, false)
	f("ascii over the limit", meta, bytes.Repeat([]byte("x"), 100<<10), 64<<10, true, false)
	f("control characters, six bytes each", meta, bytes.Repeat([]byte{1}, 20<<10), 64<<10, true, false)
	f("quotes, two bytes each", meta, bytes.Repeat([]byte(`"`), 40<<10), 64<<10, true, false)
	f("multibyte characters are not split", meta, []byte(strings.Repeat("日本🙂", 10<<10)), 64<<10, true, false)
	f("invalid UTF-8", meta, bytes.Repeat([]byte{0xff}, 20<<10), 64<<10, true, false)
	f("JSON object loses its data", enriched, []byte(`{"k":"`+strings.Repeat("v", 100<<10)+`"}`), 64<<10, true, false)
	f("huge metadata", enriched, []byte("line"), MinLimit, true, true)
}

// FuzzAppendLimited: whatever the bytes of a line, its document fits the
// limit and is valid JSON; a document under the limit is Append's.
func FuzzAppendLimited(f *testing.F) {
	f.Add([]byte("Started UiApplication"), uint16(0))
	f.Add([]byte("\xff\xfe\x00\"\\\u2028日本"), uint16(3))
	f.Add(bytes.Repeat([]byte{0}, 3000), uint16(100))
	f.Fuzz(func(t *testing.T, msg []byte, repeat uint16) {
		// Repeat the input to reach past the limit without huge corpora.
		line := bytes.Repeat(msg, int(repeat%512)+1)
		m := meta
		m.DataFields = 5
		l := Line{Time: time.Unix(1, 2), Stream: "stdout", Message: line, OriginalBytes: uint64(len(line))}
		const limit = MinLimit
		b, cut := AppendLimited(nil, &m, &l, time.Unix(0, 0), limit)
		if len(b) > limit {
			t.Fatalf("%d bytes, limit %d", len(b), limit)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %q", b)
		}
		if !cut && !bytes.Equal(b, Append(nil, &m, &l, time.Unix(0, 0))) {
			t.Fatal("an uncut document differs from Append's")
		}
	})
}

// The largest document of a record of n arbitrary bytes is six times n and
// the metadata: AppendLimited is what keeps it within a message.
func TestAppendLimitedRandomBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	line := make([]byte, 1<<20)
	for i := range line {
		line[i] = byte(r.UintN(256))
	}
	l := Line{Time: time.Unix(1, 2), Stream: "stdout", Message: line, Truncated: true, OriginalBytes: 20 << 20}
	if full := Append(nil, &meta, &l, time.Unix(0, 0)); len(full) < 3*len(line) {
		t.Fatalf("random bytes grew to only %d bytes", len(full))
	}
	const limit = 1020 << 10
	b, cut := AppendLimited(nil, &meta, &l, time.Unix(0, 0), limit)
	if !cut || len(b) > limit || len(b) < limit-8 || !json.Valid(b) {
		t.Fatalf("cut %v, %d bytes (limit %d), valid %v", cut, len(b), limit, json.Valid(b))
	}
}
