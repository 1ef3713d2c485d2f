package cri

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

const ts = "2023-11-07T02:05:10.616482913Z"

// rec is a Record with its Data as a string, comparable with ==.
type rec struct {
	off, next uint64
	data      string
	lines     int
	trunc     bool
	flushed   bool // returned by Flush
}

func toRec(r Record) rec {
	return rec{r.Offset, r.NextOffset, string(r.Data), r.Lines, r.Truncated, false}
}

func (r rec) String() string {
	s := fmt.Sprintf("{%d-%d lines=%d trunc=%v %q}", r.off, r.next, r.lines, r.trunc, r.data)
	if r.flushed {
		s += "(flushed)"
	}
	return s
}

// frameChunks frames input written in chunks of size chunk (0: all at once),
// draining Next after each Write, as the forwarder does.
func frameChunks(t testing.TB, format Format, max int, start uint64, input []byte, chunk int) []rec {
	return feed(t, NewFramer(format, max, start), max, input, chunk)
}

// feed is frameChunks with a framer of the caller's.
func feed(t testing.TB, fr *Framer, max int, input []byte, chunk int) []rec {
	var out []rec
	if chunk <= 0 {
		chunk = len(input) + 1
	}
	for p := input; len(p) > 0; {
		n := min(chunk, len(p))
		fr.Write(p[:n])
		p = p[n:]
		for {
			r, ok := fr.Next()
			if !ok {
				break
			}
			if len(r.Data) > max {
				t.Fatalf("record of %d bytes over the limit %d", len(r.Data), max)
			}
			out = append(out, toRec(r))
			if fr.Offset() != r.NextOffset {
				t.Fatalf("Offset() = %d, want the last NextOffset %d", fr.Offset(), r.NextOffset)
			}
		}
	}
	return out
}

// flush returns what Flush gives, as zero or one record, checking it.
func flush(t testing.TB, fr *Framer, max int) []rec {
	t.Helper()
	r, ok := fr.Flush()
	if !ok {
		return nil
	}
	if !r.Truncated || len(r.Data) > max || fr.Offset() != r.NextOffset {
		t.Fatalf("Flush() = %+v: want Truncated, at most %d bytes, Offset() = NextOffset (got %d)", r, max, fr.Offset())
	}
	if _, ok := fr.Flush(); ok {
		t.Fatal("a second Flush returned a record")
	}
	got := toRec(r)
	got.flushed = true
	return []rec{got}
}

// checkOffsets verifies the records against the input they came from: they
// tile it from start, each ends just past a newline, untruncated Data is
// exactly the record's bytes and truncated Data a prefix of them (a proper
// one, except for a flushed record: it is truncated for lack of an end).
func checkOffsets(t testing.TB, input []byte, start uint64, recs []rec) {
	t.Helper()
	at := start
	for i, r := range recs {
		if r.off != at {
			t.Fatalf("record %d %v: starts at %d, want %d", i, r, r.off, at)
		}
		if r.next <= r.off || r.next-start > uint64(len(input)) || input[r.next-start-1] != '\n' {
			t.Fatalf("record %d %v: NextOffset is not just past a newline", i, r)
		}
		raw := input[r.off-start : r.next-start-1]
		if r.trunc {
			if !bytes.HasPrefix(raw, []byte(r.data)) || (len(r.data) >= len(raw) && !r.flushed) {
				t.Fatalf("record %d %v: truncated Data is not a proper prefix of %q", i, r, raw)
			}
		} else if string(raw) != r.data {
			t.Fatalf("record %d %v: Data differs from input %q", i, r, raw)
		}
		if n := bytes.Count(raw, []byte("\n")) + 1; r.lines != n {
			t.Fatalf("record %d %v: Lines = %d, want %d", i, r, r.lines, n)
		}
		at = r.next
	}
}

func TestFramer(t *testing.T) {
	// f frames input in every chunk size and expects the records' Data,
	// Lines and Truncated to be want (offsets are checked against input).
	f := func(format Format, max int, input string, want ...rec) {
		t.Helper()
		const start = 1000
		for chunk := 0; chunk <= len(input); chunk++ {
			got := frameChunks(t, format, max, start, []byte(input), chunk)
			checkOffsets(t, []byte(input), start, got)
			for i := range got {
				got[i].off, got[i].next = 0, 0
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("chunk %d:\ngot  %v\nwant %v", chunk, got, want)
			}
		}
	}
	r := func(data string, lines int) rec { return rec{data: data, lines: lines} }
	tr := func(data string, lines int) rec { return rec{data: data, lines: lines, trunc: true} }
	const (
		outF = ts + " stdout F "
		outP = ts + " stdout P "
		errF = ts + " stderr F "
		errP = ts + " stderr P "
	)

	// Plain full lines.
	f(FormatCRI, 1<<10, outF+"a\n"+errF+"b\n", r(outF+"a", 1), r(errF+"b", 1))
	// P/P/F is one record.
	f(FormatCRI, 1<<10, outP+"a\n"+outP+"b\n"+outF+"c\n"+outF+"d\n",
		r(outP+"a\n"+outP+"b\n"+outF+"c", 3), r(outF+"d", 1))
	// Empty messages, with and without the trailing space.
	f(FormatCRI, 1<<10, outF+"\n"+ts+" stdout F\n"+ts+" stdout P\n"+outF+"x\n",
		r(outF, 1), r(ts+" stdout F", 1), r(ts+" stdout P\n"+outF+"x", 2))
	// Empty lines are malformed and records of their own.
	f(FormatCRI, 1<<10, "\n\n"+outF+"a\n", r("", 1), r("", 1), r(outF+"a", 1))
	// CRLF: '\r' stays in Data.
	f(FormatCRI, 1<<10, outF+"a\r\n"+outP+"b\r\n"+outF+"c\r\n", r(outF+"a\r", 1), r(outP+"b\r\n"+outF+"c\r", 2))
	// Malformed lines between good ones, and inside a partial sequence.
	f(FormatCRI, 1<<10, outF+"a\ngarbage\n"+outP+"b\nnot cri\n"+outF+"c\n",
		r(outF+"a", 1), r("garbage", 1), r(outP+"b", 1), r("not cri", 1), r(outF+"c", 1))
	f(FormatCRI, 1<<10, "2023-11-07T02:05:10Z stdin F x\n2023-11-07 02:05:10Z stdout F x\n",
		r("2023-11-07T02:05:10Z stdin F x", 1), r("2023-11-07 02:05:10Z stdout F x", 1))
	// A stream change ends a partial sequence.
	f(FormatCRI, 1<<10, outP+"a\n"+errF+"x\n"+outF+"b\n", r(outP+"a", 1), r(errF+"x", 1), r(outF+"b", 1))
	f(FormatCRI, 1<<10, outP+"a\n"+errP+"x\n"+errF+"y\n", r(outP+"a", 1), r(errP+"x\n"+errF+"y", 2))
	// Untagged (old CRI-O) lines are final; "P"/"F" only count as a whole field.
	f(FormatCRI, 1<<10, ts+" stdout hello\n"+ts+" stdout Pa\n"+ts+" stdout\n"+ts+" stdout F\r\n",
		r(ts+" stdout hello", 1), r(ts+" stdout Pa", 1), r(ts+" stdout", 1), r(ts+" stdout F\r", 1))
	// Incomplete input: a line without newline and a trailing partial are held.
	f(FormatCRI, 1<<10, outF+"a\n"+outF+"b", r(outF+"a", 1))
	f(FormatCRI, 1<<10, outF+"a\n"+outP+"b\n", r(outF+"a", 1))

	// Truncation. The limit fits two short lines but not three.
	short := outP + "1" // 42 bytes
	f(FormatCRI, 2*len(short)+1, short+"\n"+short+"\n"+short+"\n"+outF+"end\n"+outF+"next\n",
		tr(short+"\n"+short, 4), r(outF+"next", 1))
	// A first line over the limit keeps its first max bytes; its partial
	// sequence is skipped to the end.
	long := outP + strings.Repeat("x", 100)
	f(FormatCRI, 80, long+"\n"+outP+"y\n"+outF+"z\n"+outF+"next\n", tr(long[:80], 3), r(outF+"next", 1))
	// An over-long line in another stream ends the partial sequence first.
	f(FormatCRI, 80, outP+"a\n"+errF+strings.Repeat("e", 100)+"\n"+outF+"b\n",
		r(outP+"a", 1), tr((errF + strings.Repeat("e", 100))[:80], 1), r(outF+"b", 1))
	// An over-long continuation: nothing more of it is kept.
	f(FormatCRI, 80, outP+"a\n"+outF+strings.Repeat("x", 100)+"\n"+outF+"b\n", tr(outP+"a", 2), r(outF+"b", 1))
	// An over-long malformed line.
	f(FormatCRI, 10, strings.Repeat("g", 70)+"\n"+strings.Repeat("h", 20)+"\n", tr("gggggggggg", 1), tr("hhhhhhhhhh", 1))
	// A limit below the CRI header still works.
	f(FormatCRI, 5, outF+"a\n", tr(outF[:5], 1))

	// Unknown format: one record per line.
	f(FormatUnknown, 4, "ab\ncdefgh\n", r("ab", 1), tr("cdef", 1))
}

func TestFramerDocker(t *testing.T) {
	f := func(max int, input string, want ...rec) {
		t.Helper()
		for chunk := 0; chunk <= len(input); chunk++ {
			got := frameChunks(t, FormatDocker, max, 0, []byte(input), chunk)
			checkOffsets(t, []byte(input), 0, got)
			for i := range got {
				got[i].off, got[i].next = 0, 0
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("chunk %d:\ngot  %v\nwant %v", chunk, got, want)
			}
		}
	}
	r := func(data string, lines int) rec { return rec{data: data, lines: lines} }
	tr := func(data string, lines int) rec { return rec{data: data, lines: lines, trunc: true} }
	line := func(log, stream string) string {
		return `{"log":"` + log + `","stream":"` + stream + `","time":"` + ts + `"}`
	}

	f(1<<10, line(`a\n`, "stdout")+"\n"+line(`b\n`, "stderr")+"\n", r(line(`a\n`, "stdout"), 1), r(line(`b\n`, "stderr"), 1))
	// Split lines: parts without the final \n are joined.
	f(1<<10, line("a", "stdout")+"\n"+line("b", "stdout")+"\n"+line(`c\n`, "stdout")+"\n",
		r(line("a", "stdout")+"\n"+line("b", "stdout")+"\n"+line(`c\n`, "stdout"), 3))
	// An escaped backslash before 'n' is not a newline: `\\n` is partial, `\\\n` final.
	f(1<<10, line(`a\\n`, "stdout")+"\n"+line(`b\\\n`, "stdout")+"\n",
		r(line(`a\\n`, "stdout")+"\n"+line(`b\\\n`, "stdout"), 2))
	// Field order and extra fields don't matter; CRLF is white space.
	other := `{"time":"` + ts + `", "attrs":{"a":[1,"}"]},"stream":"stderr" , "log":"x\n"}` + "\r"
	f(1<<10, other+"\n", r(other, 1))
	// Stream change and malformed lines end a split line.
	f(1<<10, line("a", "stdout")+"\n"+line(`b\n`, "stderr")+"\n"+line("c", "stdout")+"\n{bad\n"+line(`d\n`, "stdout")+"\n",
		r(line("a", "stdout"), 1), r(line(`b\n`, "stderr"), 1), r(line("c", "stdout"), 1), r("{bad", 1), r(line(`d\n`, "stdout"), 1))
	// Missing fields or bad stream are malformed.
	for _, bad := range []string{`{"log":"a\n","stream":"stdout"}`, `{"log":"a\n","stream":"stdin","time":"x"}`,
		`{"log":1,"stream":"stdout","time":"x"}`, `{"log":"a\n","stream":"stdout","time":"x"} x`, `{}`, `{"log":"a\n" "stream":"stdout","time":"x"}`} {
		f(1<<10, line("a", "stdout")+"\n"+bad+"\n", r(line("a", "stdout"), 1), r(bad, 1))
	}
	// Truncation: parts are kept while they fit.
	p := line(strings.Repeat("x", 20), "stdout")
	f(2*len(p)+1, p+"\n"+p+"\n"+p+"\n"+line(`y\n`, "stdout")+"\n"+line(`z\n`, "stdout")+"\n",
		tr(p+"\n"+p, 4), r(line(`z\n`, "stdout"), 1))
	// An over-long physical docker line is a record of its own.
	long := line(strings.Repeat("x", 100), "stdout")
	f(90, line("a", "stdout")+"\n"+long+"\n"+line(`b\n`, "stdout")+"\n",
		r(line("a", "stdout"), 1), tr(long[:90], 1), r(line(`b\n`, "stdout"), 1))
}

// TestFramerFlush: a file that ends for good in a partial sequence gives its
// record up, flagged truncated, if all its lines are complete.
func TestFramerFlush(t *testing.T) {
	// f frames input in every chunk size, then flushes; want is every record,
	// the flushed one last; pending is what the framer must still hold (an
	// unfinished line, or the kept bytes of an unfinished over-long one).
	f := func(format Format, max int, input string, pending int, want ...rec) {
		t.Helper()
		const start = 1000
		for chunk := 0; chunk <= len(input); chunk++ {
			fr := NewFramer(format, max, start)
			got := feed(t, fr, max, []byte(input), chunk)
			got = append(got, flush(t, fr, max)...)
			if fr.Buffered() != pending {
				t.Fatalf("chunk %d: Buffered() = %d after Flush, want %d", chunk, fr.Buffered(), pending)
			}
			// The framer goes on after a flush: empty lines end what is
			// left, and all the records tile the input.
			n := len(got)
			got = append(got, feed(t, fr, max, []byte("\n\n"), 0)...)
			checkOffsets(t, []byte(input+"\n\n"), start, got)
			got = got[:n]
			for i := range got {
				got[i].off, got[i].next = 0, 0
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("chunk %d:\ngot  %v\nwant %v", chunk, got, want)
			}
		}
	}
	r := func(data string, lines int) rec { return rec{data: data, lines: lines} }
	fl := func(data string, lines int) rec { return rec{data: data, lines: lines, trunc: true, flushed: true} }
	const (
		outP = ts + " stdout P "
		errP = ts + " stderr P "
	)

	// Partial lines without their final part.
	f(FormatCRI, 1<<10, outP+"a\n"+outP+"b\n", 0, fl(outP+"a\n"+outP+"b", 2))
	// ... followed by an unfinished line, which stays.
	f(FormatCRI, 1<<10, outF+"a\n"+outP+"b\n"+outP[:10], 10, r(outF+"a", 1), fl(outP+"b", 1))
	// Nothing open: nothing to flush.
	f(FormatCRI, 1<<10, outF+"a\n", 0, r(outF+"a", 1))
	f(FormatCRI, 1<<10, outP+"a", len(outP+"a"))
	f(FormatCRI, 1<<10, "", 0)
	// A stream change ended the first sequence; the second is open.
	f(FormatCRI, 1<<10, outP+"a\n"+errP+"b\n", 0, r(outP+"a", 1), fl(errP+"b", 1))
	// Already cut to the limit: the kept lines.
	short := outP + "1"
	f(FormatCRI, 2*len(short)+1, short+"\n"+short+"\n"+short+"\n", 0, fl(short+"\n"+short, 3))
	// An over-long partial line: flushed once it is complete, not before.
	long := outP + strings.Repeat("x", 100)
	f(FormatCRI, 80, long+"\n", 0, fl(long[:80], 1))
	f(FormatCRI, 80, long, 80)
	f(FormatCRI, 80, outP+"a\n"+long, len(outP+"a"))
	// Docker: a part without its final "\n".
	part := `{"log":"a","stream":"stdout","time":"` + ts + `"}`
	f(FormatDocker, 1<<10, part+"\n"+part+"\n", 0, fl(part+"\n"+part, 2))
	// Unknown format: every line is a whole record.
	f(FormatUnknown, 1<<10, "ab\n", 0, r("ab", 1))
}

// TestFramerHuge feeds a 5 MiB line with a 1 MiB limit, as one physical line
// and as docker-style 16 KiB parts, checking that memory stays near the limit.
func TestFramerHuge(t *testing.T) {
	const max, size, chunk = 1 << 20, 5 << 20, 64 << 10
	tail := []byte(outF + "after\n")
	f := func(format Format, input []byte, wantRecs int, wantLines int) {
		t.Helper()
		fr := NewFramer(format, max, 0)
		var recs []rec
		for p := input; len(p) > 0; {
			n := min(chunk, len(p))
			fr.Write(p[:n])
			p = p[n:]
			for {
				r, ok := fr.Next()
				if !ok {
					break
				}
				recs = append(recs, toRec(r))
			}
			if b := fr.Buffered(); b > 2*max+chunk {
				t.Fatalf("Buffered() = %d, want bounded by the limit", b)
			}
			if c := cap(fr.in) + cap(fr.trunc); c > 4*max+4*chunk {
				t.Fatalf("buffers hold %d bytes, want bounded by the limit", c)
			}
		}
		checkOffsets(t, input, 0, recs)
		if len(recs) != wantRecs {
			t.Fatalf("got %d records, want %d", len(recs), wantRecs)
		}
		if r := recs[0]; !r.trunc || len(r.data) > max || len(r.data) < max-16<<10-100 || r.lines != wantLines {
			t.Fatalf("first record: trunc=%v len=%d lines=%d, want truncated to ~%d bytes, %d lines", r.trunc, len(r.data), r.lines, max, wantLines)
		}
		if fr.Offset() != uint64(len(input)) {
			t.Fatalf("Offset() = %d, want %d", fr.Offset(), len(input))
		}
		// Once the long record is gone, so are its buffers.
		fr.Write(tail)
		fr.Next()
		if c := cap(fr.in) + cap(fr.trunc); c > keepBufCap {
			t.Fatalf("buffers still hold %d bytes after the long record", c)
		}
	}
	one := append([]byte(ts+" stdout F "), bytes.Repeat([]byte("x"), size)...)
	one = append(append(one, '\n'), tail...)
	f(FormatCRI, one, 2, 1)

	var parts []byte
	for i := 0; i < size/16384; i++ {
		tag := " stdout P "
		if i == size/16384-1 {
			tag = " stdout F "
		}
		parts = append(append(append(parts, ts+tag...), bytes.Repeat([]byte("y"), 16384)...), '\n')
	}
	f(FormatCRI, append(parts, tail...), 2, size/16384)

	var dparts []byte
	for i := 0; i < size/16384; i++ {
		end := ""
		if i == size/16384-1 {
			end = `\n`
		}
		dparts = append(dparts, `{"log":"`+strings.Repeat("z", 16384)+end+`","stream":"stdout","time":"`+ts+`"}`+"\n"...)
	}
	f(FormatDocker, append(dparts, `{"log":"after\n","stream":"stdout","time":"`+ts+`"}`+"\n"...), 2, size/16384)
}

const outF = ts + " stdout F "

func TestFramerOffsetAndReset(t *testing.T) {
	fr := NewFramer(FormatCRI, 1<<10, 500)
	if fr.Offset() != 500 || fr.Buffered() != 0 {
		t.Fatalf("new framer: Offset %d Buffered %d", fr.Offset(), fr.Buffered())
	}
	a := outF + "a\n"
	fr.Write([]byte(a + ts + " stdout P b\n" + outF[:10]))
	r, ok := fr.Next()
	if !ok || r.Offset != 500 || r.NextOffset != 500+uint64(len(a)) || r.Lines != 1 {
		t.Fatalf("got %+v %v", r, ok)
	}
	if _, ok := fr.Next(); ok {
		t.Fatal("record from a pending partial line")
	}
	if want := uint64(500 + len(a)); fr.Offset() != want {
		t.Fatalf("Offset() = %d, want %d", fr.Offset(), want)
	}
	if want := len(ts+" stdout P b\n") + 10; fr.Buffered() != want {
		t.Fatalf("Buffered() = %d, want %d", fr.Buffered(), want)
	}
	fr.Reset(7)
	if fr.Offset() != 7 || fr.Buffered() != 0 {
		t.Fatalf("after Reset: Offset %d Buffered %d", fr.Offset(), fr.Buffered())
	}
	fr.Write([]byte(a))
	if r, ok := fr.Next(); !ok || r.Offset != 7 || string(r.Data) != outF+"a" {
		t.Fatalf("after Reset got %+v %v", r, ok)
	}
}

func TestFramerNoAllocs(t *testing.T) {
	input := []byte(strings.Repeat(outF+"hello world\n"+ts+" stdout P part\n"+outF+"end\n", 100))
	fr := NewFramer(FormatCRI, 1<<20, 0)
	run := func() {
		fr.Reset(0)
		for p := input; len(p) > 0; p = p[min(len(p), 1000):] {
			fr.Write(p[:min(len(p), 1000)])
			for {
				if _, ok := fr.Next(); !ok {
					break
				}
			}
		}
	}
	run()
	if n := testing.AllocsPerRun(10, run); n != 0 {
		t.Fatalf("%v allocations per run, want 0", n)
	}
}

func TestFormat(t *testing.T) {
	for _, f := range []Format{FormatCRI, FormatDocker} {
		if g, err := ParseFormat(f.String()); err != nil || g != f {
			t.Fatalf("ParseFormat(%q) = %v, %v", f.String(), g, err)
		}
	}
	if _, err := ParseFormat("json"); err == nil {
		t.Fatal("ParseFormat(json) succeeded")
	}
	if FormatUnknown.String() != "unknown" || StreamStderr.String() != "stderr" || StreamStdout.String() != "stdout" {
		t.Fatal("String()")
	}
	f := func(first string, want Format) {
		t.Helper()
		if got := DetectFormat([]byte(first)); got != want {
			t.Fatalf("DetectFormat(%q) = %v, want %v", first, got, want)
		}
	}
	f(`{"log":"a\n","stream":"stdout","time":"`+ts+`"}`+"\n", FormatDocker)
	f(`{"lo`, FormatDocker)
	f(outF+"a\n", FormatCRI)
	f(ts+" std", FormatCRI)
	f(ts, FormatUnknown) // too short to tell
	f("", FormatUnknown)
	f("hello world\n{", FormatUnknown)
}

func TestFramerTrim(t *testing.T) {
	fr := NewFramer(FormatCRI, 1<<20, 100)
	line := ts + " stdout F hello\n"
	fr.Write([]byte(line + line[:10]))
	if _, ok := fr.Next(); !ok {
		t.Fatal("no record")
	}
	if _, ok := fr.Next(); ok {
		t.Fatal("a partial line became a record")
	}
	fr.Trim() // a partial line is pending: keep it
	fr.Write([]byte(line[10:]))
	rec, ok := fr.Next()
	if !ok || string(rec.Data) != line[:len(line)-1] || rec.Offset != 100+uint64(len(line)) {
		t.Fatalf("record %q at %d after Trim with a pending line", rec.Data, rec.Offset)
	}
	fr.Trim()
	if fr.in != nil || fr.Buffered() != 0 {
		t.Fatalf("Trim kept %d bytes of buffer", cap(fr.in))
	}
	fr.Write([]byte(line))
	rec, ok = fr.Next()
	if !ok || rec.Offset != 100+2*uint64(len(line)) || rec.NextOffset != 100+3*uint64(len(line)) || fr.Offset() != rec.NextOffset {
		t.Fatalf("after Trim: record at %d..%d, framer offset %d", rec.Offset, rec.NextOffset, fr.Offset())
	}
}
