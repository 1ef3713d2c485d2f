package loggen

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2023, 11, 7, 2, 5, 10, 616482913, time.UTC)

func TestFormatString(t *testing.T) {
	for _, f := range []Format{FormatCRI, FormatDocker} {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
	}
	if _, err := ParseFormat("json"); err == nil {
		t.Error("ParseFormat(json): want error")
	}
	if got := Format(7).String(); got != "Format(7)" {
		t.Errorf("Format(7).String() = %q", got)
	}
}

// writeFile writes lines with a new FileWriter and returns the file.
func writeFile(t *testing.T, format Format, split int, write func(w *FileWriter)) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ns_pod_uid", "c", "0.log")
	w, err := OpenFile(path, format, FileOptions{SplitBytes: split})
	if err != nil {
		t.Fatal(err)
	}
	write(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != w.Size() {
		t.Errorf("Size() = %d, file has %d bytes", w.Size(), len(b))
	}
	return b
}

func TestWriteLineBytes(t *testing.T) {
	f := func(format Format, split int, tm time.Time, stream, msg, want string) {
		t.Helper()
		var n int
		got := writeFile(t, format, split, func(w *FileWriter) {
			var err error
			if n, err = w.WriteLine(tm, stream, msg); err != nil {
				t.Fatal(err)
			}
		})
		if string(got) != want {
			t.Errorf("%v %q:\ngot  %q\nwant %q", format, msg, got, want)
		}
		if n != len(want) {
			t.Errorf("WriteLine returned %d, want %d", n, len(want))
		}
	}
	est := time.FixedZone("EST", -5*3600)
	whole := time.Date(2023, 11, 7, 2, 5, 10, 0, time.UTC)

	// CRI.
	f(FormatCRI, 0, t0, "stdout", "hello", "2023-11-07T02:05:10.616482913Z stdout F hello\n")
	f(FormatCRI, 0, t0.In(est), "stderr", "warn", "2023-11-07T02:05:10.616482913Z stderr F warn\n")
	f(FormatCRI, 0, whole, "stdout", "x", "2023-11-07T02:05:10.000000000Z stdout F x\n")
	f(FormatCRI, 0, t0, "stdout", "", "2023-11-07T02:05:10.616482913Z stdout F \n")
	f(FormatCRI, 0, t0, "stdout", "\tat a.b(C.java:1) <&> \"q\" \\ \r", "2023-11-07T02:05:10.616482913Z stdout F \tat a.b(C.java:1) <&> \"q\" \\ \r\n")
	f(FormatCRI, 4, t0, "stdout", "abcd", "2023-11-07T02:05:10.616482913Z stdout F abcd\n")
	f(FormatCRI, 4, t0, "stdout", "abcdefghij",
		"2023-11-07T02:05:10.616482913Z stdout P abcd\n"+
			"2023-11-07T02:05:10.616482913Z stdout P efgh\n"+
			"2023-11-07T02:05:10.616482913Z stdout F ij\n")
	// CRI cuts on bytes, even inside a UTF-8 sequence.
	f(FormatCRI, 2, t0, "stdout", "a日", "2023-11-07T02:05:10.616482913Z stdout P a\xe6\n2023-11-07T02:05:10.616482913Z stdout F \x97\xa5\n")

	// Docker json-file.
	f(FormatDocker, 0, t0, "stdout", "hello", `{"log":"hello\n","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n")
	f(FormatDocker, 0, t0.In(est), "stderr", "warn", `{"log":"warn\n","stream":"stderr","time":"2023-11-07T02:05:10.616482913Z"}`+"\n")
	f(FormatDocker, 0, whole, "stdout", "x", `{"log":"x\n","stream":"stdout","time":"2023-11-07T02:05:10Z"}`+"\n")
	f(FormatDocker, 0, t0, "stdout", "", `{"log":"\n","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n")
	f(FormatDocker, 0, t0, "stdout", "\tat <a> & \"q\" \\ \r\x01\x7f é 日 🚀 \u2028",
		`{"log":"\tat <a> & \"q\" \\ \r\u0001`+"\x7f"+` é 日 🚀 \u2028\n","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n")
	f(FormatDocker, 4, t0, "stdout", "abcdefghij",
		`{"log":"abcd","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n"+
			`{"log":"efgh","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n"+
			`{"log":"ij\n","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n")
	// Docker parts end on a UTF-8 boundary.
	f(FormatDocker, 4, t0, "stdout", "ab日c",
		`{"log":"ab","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n"+
			`{"log":"日c\n","stream":"stdout","time":"2023-11-07T02:05:10.616482913Z"}`+"\n")
}

// record is one logical line read back from a file.
type record struct {
	stream string
	time   time.Time
	msg    string
	parts  []string
}

// parseLog reads a CRI or json-file log back into logical lines, joining
// partial lines, as a log shipper would.
func parseLog(t *testing.T, format Format, b []byte) []record {
	t.Helper()
	var out []record
	var cur *record
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.Fatalf("unterminated line %q", b)
		}
		line := string(b[:i])
		b = b[i+1:]
		var (
			stream, ts, part string
			last             bool
		)
		switch format {
		case FormatCRI:
			fields := strings.SplitN(line, " ", 4)
			if len(fields) != 4 || (fields[2] != "P" && fields[2] != "F") {
				t.Fatalf("bad CRI line %q", line)
			}
			ts, stream, last, part = fields[0], fields[1], fields[2] == "F", fields[3]
			if len(ts) != len("2023-11-07T02:05:10.616482913Z") {
				t.Fatalf("CRI time %q has not 9 fractional digits", ts)
			}
		case FormatDocker:
			var v struct{ Log, Stream, Time string }
			dec := json.NewDecoder(strings.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("bad json-file line %q: %v", line, err)
			}
			ts, stream, part = v.Time, v.Stream, v.Log
			if last = strings.HasSuffix(part, "\n"); last {
				part = part[:len(part)-1]
			}
		}
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("bad time in %q: %v", line, err)
		}
		if cur == nil {
			cur = &record{stream: stream, time: tm}
		} else if cur.stream != stream {
			t.Fatalf("partial line continued on another stream: %q", line)
		}
		cur.parts = append(cur.parts, part)
		cur.msg += part
		if last {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("log ends with a partial line: %q", cur.msg)
	}
	return out
}

func TestWriteLineSplitRoundTrip(t *testing.T) {
	unicode := strings.Repeat("Café Crème ☕ 東京 ラーメン 🚀 naïve — ", 900) // ~40 KiB, mixed widths
	ascii := strings.Repeat("0123456789abcdef", 2560)                 // 40 KiB
	f := func(format Format, split int, msg string, wantParts int) {
		t.Helper()
		var n int
		b := writeFile(t, format, split, func(w *FileWriter) {
			var err error
			if n, err = w.WriteLine(t0, "stderr", msg); err != nil {
				t.Fatal(err)
			}
		})
		if n != len(b) {
			t.Errorf("WriteLine returned %d, wrote %d", n, len(b))
		}
		recs := parseLog(t, format, b)
		if len(recs) != 1 {
			t.Fatalf("%v split %d: got %d logical lines, want 1", format, split, len(recs))
		}
		r := recs[0]
		if r.msg != msg {
			t.Errorf("%v split %d: parts do not concatenate to the message (len %d, want %d)", format, split, len(r.msg), len(msg))
		}
		if r.stream != "stderr" || !r.time.Equal(t0) {
			t.Errorf("%v: stream %q time %v", format, r.stream, r.time)
		}
		if wantParts > 0 && len(r.parts) != wantParts {
			t.Errorf("%v split %d len %d: %d parts, want %d", format, split, len(msg), len(r.parts), wantParts)
		}
		if split == 0 {
			split = DefaultSplitBytes
		}
		for i, p := range r.parts {
			if len(p) > split || (len(p) == 0 && len(msg) > 0) {
				t.Errorf("%v: part %d has %d bytes, split %d", format, i, len(p), split)
			}
			if format == FormatDocker && !utf8.ValidString(p) {
				t.Errorf("docker part %d is not valid UTF-8", i)
			}
		}
	}
	for _, format := range []Format{FormatCRI, FormatDocker} {
		f(format, 0, ascii, 3) // 16384 + 16384 + 8192
		f(format, 0, ascii[:DefaultSplitBytes], 1)
		f(format, 0, ascii[:DefaultSplitBytes+1], 2)
		f(format, 0, "", 1)
		f(format, 0, unicode, 0)
		f(format, 100, strings.ToValidUTF8(unicode[:5000], ""), 0)
		f(format, 4, "日本語のログ🚀", 0)
	}
	f(FormatCRI, 1, "日本語🚀", 13) // one byte per part, UTF-8 cut everywhere
	f(FormatCRI, 0, unicode, (len(unicode)+DefaultSplitBytes-1)/DefaultSplitBytes)
}

func TestWriteLineErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w, err := OpenFile(path, FormatCRI, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteLine(t0, "stdin", "x"); !errors.Is(err, ErrStream) {
		t.Errorf("bad stream: got %v, want ErrStream", err)
	}
	if _, err := w.WriteLine(t0, "stdout", "a\nb"); !errors.Is(err, ErrNewline) {
		t.Errorf("newline: got %v, want ErrNewline", err)
	}
	if w.Size() != 0 {
		t.Errorf("rejected lines wrote %d bytes", w.Size())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := w.WriteLine(t0, "stdout", "x"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("after Close: got %v, want os.ErrClosed", err)
	}
	if _, err := w.Rotate(t0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Rotate after Close: got %v, want os.ErrClosed", err)
	}
	if _, err := OpenFile(path, Format(9), FileOptions{}); err == nil {
		t.Error("OpenFile with an unknown format: want error")
	}
}

// encodingJSON is what appendJSONString must produce.
func encodingJSON(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quoted" \back\slash`, "<a href='x'>&amp;</a>",
		"\b\f\n\r\t\x00\x01\x1f\x7f", "é 日本 🚀 \u2028 \u2029 \ufeff",
		"bad \xff utf8 \xe6\x97", "\xed\xa0\x80 surrogate",
	} {
		if got, want := string(appendJSONString(nil, s)), encodingJSON(s); got != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "<>&", "\x00\x1f\x7f", "é日🚀\u2028", "\xff\xe6\x97"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(appendJSONString(nil, s)), encodingJSON(s); got != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

func FuzzWriteLineRoundTrip(f *testing.F) {
	f.Add("hello", 4, false)
	f.Add("日本語🚀 café", 5, true)
	f.Add("", 1, true)
	f.Fuzz(func(t *testing.T, msg string, split int, docker bool) {
		if strings.Contains(msg, "\n") || split < 1 || split > 64 {
			t.Skip()
		}
		format := FormatCRI
		if docker {
			// Docker's JSON cannot carry invalid UTF-8, nor parts cut
			// inside a character when split is below utf8.UTFMax.
			if !utf8.ValidString(msg) || split < utf8.UTFMax {
				t.Skip()
			}
			format = FormatDocker
		}
		b := writeFile(t, format, split, func(w *FileWriter) {
			if _, err := w.WriteLine(t0, "stdout", msg); err != nil {
				t.Fatal(err)
			}
		})
		recs := parseLog(t, format, b)
		if len(recs) != 1 || recs[0].msg != msg {
			t.Fatalf("round trip of %q: %+v", msg, recs)
		}
	})
}
