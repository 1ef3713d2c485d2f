package cri

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// seedFiles returns the testdata files, to seed the fuzzers with real lines.
func seedFiles(f *testing.F) map[string][]byte {
	files := map[string][]byte{}
	for name := range goldenFiles {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		files[name] = b
	}
	return files
}

func FuzzFramer(f *testing.F) {
	for name, b := range seedFiles(f) {
		docker := goldenFiles[name] == FormatDocker
		f.Add(b[:min(len(b), 2000)], uint16(300), uint64(1), docker)
		f.Add(b[:min(len(b), 600)], uint16(60), uint64(2), docker)
	}
	f.Add([]byte(ts+" stdout P a\n"+ts+" stderr P b\ngarbage\n"+ts+" stdout F c\r\n"), uint16(50), uint64(3), false)
	f.Add([]byte(`{"log":"a","stream":"stdout","time":"x"}`+"\n"+`{"log":"b\\\n","stream":"stdout","time":"x"}`+"\n"), uint16(45), uint64(4), true)
	// Files that end in a partial sequence (a container killed mid-line).
	f.Add([]byte(ts+" stdout F a\n"+ts+" stdout P b\n"+ts+" stdout P c\n"+ts[:9]), uint16(200), uint64(5), false)
	f.Add([]byte(ts+" stdout P "+strings.Repeat("x", 90)+"\n"+ts+" stdout P "+strings.Repeat("y", 90)), uint16(80), uint64(6), false)
	f.Add([]byte(`{"log":"a","stream":"stdout","time":"x"}`+"\n"+`{"log":"b","stream":"stdout","time":"x"}`+"\n"), uint16(100), uint64(7), true)

	f.Fuzz(func(t *testing.T, input []byte, max16 uint16, seed uint64, docker bool) {
		format := FormatCRI
		if docker {
			format = FormatDocker
		}
		max := int(max16)%512 + 1
		const start = 12345

		wf := NewFramer(format, max, start)
		whole := feed(t, wf, max, input, 0)
		whole = append(whole, flush(t, wf, max)...)

		// The same input in random chunks must give the same records, and
		// the framer must hold no more than the limit allows between calls.
		rng := rand.New(rand.NewPCG(seed, seed>>32))
		fr := NewFramer(format, max, start)
		var chunked []rec
		for p := input; len(p) > 0; {
			n := min(len(p), 1+rng.IntN(2*max+10))
			fr.Write(p[:n])
			p = p[n:]
			for {
				r, ok := fr.Next()
				if !ok {
					break
				}
				chunked = append(chunked, toRec(r))
			}
			if b := fr.Buffered(); b > 2*max+criHeaderLen {
				t.Fatalf("Buffered() = %d with limit %d", b, max)
			}
		}
		// Flush, as when the file is gone, gives the same record however the
		// bytes came, and leaves only the unfinished last line.
		flushed := flush(t, fr, max)
		chunked = append(chunked, flushed...)
		if fmt.Sprint(whole) != fmt.Sprint(chunked) {
			t.Fatalf("chunked framing differs:\nwhole   %v\nchunked %v", whole, chunked)
		}
		if len(flushed) > 0 {
			done := bytes.LastIndexByte(input, '\n') + 1
			if fr.Offset() != start+uint64(done) || fr.Buffered() != len(input)-done {
				t.Fatalf("after Flush: Offset() = %d, Buffered() = %d; want %d, %d", fr.Offset(), fr.Buffered(), start+done, len(input)-done)
			}
		}

		// Ending the input with an empty (malformed) line ends every pending
		// record: all bytes must then belong to records that tile the input
		// exactly.
		end := []byte("\n")
		if len(input) > 0 && input[len(input)-1] != '\n' {
			end = []byte("\n\n")
		}
		fr.Write(end)
		for {
			r, ok := fr.Next()
			if !ok {
				break
			}
			chunked = append(chunked, toRec(r))
		}
		all := append(bytes.Clone(input), end...)
		checkOffsets(t, all, start, chunked)
		if fr.Offset() != start+uint64(len(all)) || fr.Buffered() != 0 {
			t.Fatalf("at the end: Offset() = %d, Buffered() = %d, want %d, 0", fr.Offset(), fr.Buffered(), start+len(all))
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	for name, b := range seedFiles(f) {
		docker := goldenFiles[name] == FormatDocker
		lines := bytes.SplitAfter(b, []byte("\n"))
		for i, l := range lines {
			if len(l) < 2000 {
				f.Add(bytes.TrimSuffix(l, []byte("\n")), docker)
			}
			if i+1 < len(lines) && len(l)+len(lines[i+1]) < 2000 {
				f.Add(bytes.TrimSuffix(append(bytes.Clone(l), lines[i+1]...), []byte("\n")), docker)
			}
		}
	}
	f.Add([]byte(`{"log":"\ud83d\ude80 \ud83d \u00e9\\\"\/\b\f\n","stream":"stdout","time":"2023-11-07T02:05:10+01:00"}`), true)
	f.Add([]byte("2023-11-07T02:05:10.000000001Z stdout F x\r"), false)

	f.Fuzz(func(t *testing.T, data []byte, docker bool) {
		format := FormatCRI
		if docker {
			format = FormatDocker
		}
		e, buf, err := ParseRecord(format, data, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || !bytes.Equal(e.Message, trimCR(data)) || !e.Time.IsZero() {
				t.Fatalf("malformed result: %+v, %v", e, err)
			}
		} else {
			if e.Time.Location() != time.UTC {
				t.Fatalf("time %v not in UTC", e.Time)
			}
			// Re-encode the entry as a single line and parse it again. A '\r'
			// is added because ParseRecord strips one.
			var line []byte
			if docker {
				if !utf8.Valid(e.Message) {
					return // json.Marshal would repair it
				}
				line, _ = json.Marshal(map[string]string{"log": string(e.Message) + "\r\n", "stream": e.Stream.String(), "time": string(e.RawTime)})
			} else {
				line = fmt.Appendf(nil, "%s %s F %s\r", e.RawTime, e.Stream, e.Message)
			}
			e2, _, err := ParseRecord(format, line, buf)
			if err != nil || !e2.Time.Equal(e.Time) || e2.Stream != e.Stream || !bytes.Equal(e2.Message, e.Message) {
				t.Fatalf("re-encoded %q parses to %+v, %v; want %+v", line, e2, err, e)
			}
		}

		// The hand-written decoders must agree with the standard library.
		if t1, ok := parseTimeUTC(data); ok {
			t2, err := time.Parse(time.RFC3339Nano, string(data))
			if err != nil || !t1.Equal(t2) {
				t.Fatalf("parseTimeUTC(%q) = %v, time.Parse = %v, %v", data, t1, t2, err)
			}
		}
		if l, ok := scanDocker(data); ok {
			got, ok := decodeJSONString(nil, l.log)
			var want string
			jerr := json.Unmarshal(append(append([]byte{'"'}, l.log...), '"'), &want)
			if utf8.Valid(l.log) && jerr == nil && (!ok || string(got) != want) {
				t.Fatalf("decodeJSONString(%q) = %q, %v; encoding/json: %q", l.log, got, ok, want)
			}
			if ok && utf8.Valid(l.log) && !bytes.ContainsFunc(l.log, func(r rune) bool { return r < 0x20 }) && jerr != nil {
				t.Fatalf("decodeJSONString(%q) accepted what encoding/json rejects: %v", l.log, jerr)
			}
		}
	})
}
