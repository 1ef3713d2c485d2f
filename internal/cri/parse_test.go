package cri

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	// f parses data and expects its time (RFC 3339), stream and message;
	// wantTime "" means malformed.
	f := func(format Format, data, wantTime string, wantStream Stream, wantMsg string) {
		t.Helper()
		buf := make([]byte, 0, 4)
		e, _, err := ParseRecord(format, []byte(data), buf)
		if wantTime == "" {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRecord(%q): err = %v, want ErrMalformed", data, err)
			}
			if !e.Time.IsZero() || e.Stream != StreamStdout || string(e.Message) != wantMsg || e.RawTime != nil {
				t.Fatalf("ParseRecord(%q) malformed: got %+v", data, e)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseRecord(%q): %v", data, err)
		}
		want, err := time.Parse(time.RFC3339Nano, wantTime)
		if err != nil {
			t.Fatal(err)
		}
		if !e.Time.Equal(want) || e.Time.Location() != time.UTC {
			t.Fatalf("ParseRecord(%q): time %v, want %v in UTC", data, e.Time, want)
		}
		if e.Stream != wantStream || string(e.Message) != wantMsg {
			t.Fatalf("ParseRecord(%q): got %v %q, want %v %q", data, e.Stream, e.Message, wantStream, wantMsg)
		}
	}
	const (
		outF = ts + " stdout F "
		outP = ts + " stdout P "
	)

	// CRI.
	f(FormatCRI, outF+"hello world", ts, StreamStdout, "hello world")
	f(FormatCRI, ts+" stderr F  two spaces ", ts, StreamStderr, " two spaces ")
	f(FormatCRI, outP+"a\n"+outP+"b\n"+outF+"c", ts, StreamStdout, "abc")
	f(FormatCRI, outP+"a\n"+outP+"b", ts, StreamStdout, "ab") // ended early (stream change)
	f(FormatCRI, outF, ts, StreamStdout, "")
	f(FormatCRI, ts+" stdout F", ts, StreamStdout, "")
	f(FormatCRI, ts+" stdout F\r", ts, StreamStdout, "")
	f(FormatCRI, outF+"crlf\r", ts, StreamStdout, "crlf")
	f(FormatCRI, outF+"two\r\r", ts, StreamStdout, "two\r")
	f(FormatCRI, outP+"a\r\n"+outF+"b\r", ts, StreamStdout, "a\rb")
	f(FormatCRI, ts+" stdout untagged message", ts, StreamStdout, "untagged message")
	f(FormatCRI, ts+" stdout", ts, StreamStdout, "")
	f(FormatCRI, outF+"caf\xe9 \xff", ts, StreamStdout, "caf\xe9 \xff")
	f(FormatCRI, "2023-11-07T02:05:10Z stdout F x", "2023-11-07T02:05:10Z", StreamStdout, "x")
	f(FormatCRI, "2023-11-07T03:05:10.5+01:00 stdout F x", "2023-11-07T02:05:10.5Z", StreamStdout, "x")
	f(FormatCRI, "2023-11-07T02:05:10.1234567891Z stdout F x", "2023-11-07T02:05:10.123456789Z", StreamStdout, "x")
	f(FormatCRI, "2024-02-29T23:59:59.999999999Z stdout F x", "2024-02-29T23:59:59.999999999Z", StreamStdout, "x")
	// Malformed: raw data back, minus a trailing '\r'.
	f(FormatCRI, "garbage\r", "", 0, "garbage")
	f(FormatCRI, "", "", 0, "")
	f(FormatCRI, "2023-02-29T02:05:10Z stdout F x", "", 0, "2023-02-29T02:05:10Z stdout F x")
	f(FormatCRI, "2023-11-07T24:05:10Z stdout F x", "", 0, "2023-11-07T24:05:10Z stdout F x")
	f(FormatCRI, "2023-11-07T02:05:10.Z stdout F x", "", 0, "2023-11-07T02:05:10.Z stdout F x")
	f(FormatCRI, outP+"a\ngarbage", "", 0, outP+"a\ngarbage")
	f(FormatUnknown, "anything", "", 0, "anything")

	// Docker.
	line := func(log, stream string) string {
		return `{"log":"` + log + `","stream":"` + stream + `","time":"` + ts + `"}`
	}
	f(FormatDocker, line(`hello\n`, "stdout"), ts, StreamStdout, "hello")
	f(FormatDocker, line(`no newline`, "stderr"), ts, StreamStderr, "no newline")
	f(FormatDocker, line(`a`, "stdout")+"\n"+line(`b`, "stdout")+"\n"+line(`c\n`, "stdout"), ts, StreamStdout, "abc")
	f(FormatDocker, line(`a\n\n`, "stdout"), ts, StreamStdout, "a\n")
	f(FormatDocker, line(`crlf\r\n`, "stdout"), ts, StreamStdout, "crlf")
	f(FormatDocker, line(`\n`, "stdout"), ts, StreamStdout, "")
	f(FormatDocker, line(``, "stdout"), ts, StreamStdout, "")
	f(FormatDocker, line(`q\"b\\s\/ \b\f\t\r x\n`, "stdout"), ts, StreamStdout, "q\"b\\s/ \b\f\t\r x")
	f(FormatDocker, line(`\u003cp\u003e \u00e9\u20AC caf\u00E9\n`, "stdout"), ts, StreamStdout, "<p> é€ café")
	f(FormatDocker, line(`\ud83d\ude80 \uD83D\uDE80\n`, "stdout"), ts, StreamStdout, "🚀 🚀")
	f(FormatDocker, line(`lone \ud83d x \ude80 y \ud83d\u0041\n`, "stdout"), ts, StreamStdout, "lone \uFFFD x \uFFFD y \uFFFDA")
	f(FormatDocker, line(`\u0000\u001b[0m\n`, "stdout"), ts, StreamStdout, "\x00\x1b[0m")
	f(FormatDocker, line("raw Grüße \xff\xfe\\n", "stdout"), ts, StreamStdout, "raw Grüße \xff\xfe")
	f(FormatDocker, `{"stream":"stderr","attrs":{"k":"v","n":[1,2,{"x":null}]},"log":"x\n","time":"`+ts+`"}`, ts, StreamStderr, "x")
	f(FormatDocker, ` { "log" : "x\n" , "stream" : "stdout" , "time" : "`+ts+`" } `+"\r", ts, StreamStdout, "x")
	f(FormatDocker, `{"n":-1.5e3,"b":true,"z":null,"a":[1,[2,"]"],{}],"s":"x\"y","log":"x\n","stream":"stdout","time":"`+ts+`","o":{"}":"{"}}`, ts, StreamStdout, "x")
	f(FormatDocker, `{"log":"first\n","log":"last\n","stream":"stdout","time":"`+ts+`"}`, ts, StreamStdout, "last") // as encoding/json
	// Malformed JSON and bad escapes.
	for _, bad := range []string{
		`{"a":[1,2,"log":"x\n","stream":"stdout","time":"` + ts + `"}`, `{"a":,"log":"x\n","stream":"stdout","time":"` + ts + `"}`,
		`{"a":"x,"log":"x\n","stream":"stdout","time":"` + ts + `"}`, `{"a":[1,"x]}`, `{"a":1`, `{"a":1}`, `{"a"`, `{"a":`, `{`,
		line(`\x\n`, "stdout"), line(`\u12\n`, "stdout"), line(`\u12G4`, "stdout"), line(`bad \`+`ud83d\u12`, "stdout"),
		`{"log":"x\n","stream":"stdout","time":"yesterday"}`, `{"log":"x\n","stream":"stdout"}`, `{"log":"x\n"`, `["log"]`, ``,
		line(`a`, "stdout") + "\n{",
		line(`a`, "stdout") + "\n" + line(`\q`, "stdout"),
	} {
		f(FormatDocker, bad, "", 0, bad)
	}
}

func TestParseRecordReusesBuffer(t *testing.T) {
	data := []byte(ts + " stdout P a\n" + ts + " stdout F b")
	buf := make([]byte, 0, 64)
	e, buf2, err := ParseRecord(FormatCRI, data, buf)
	if err != nil || string(e.Message) != "ab" || &buf2[:1][0] != &buf[:1][0] {
		t.Fatalf("got %q, %v; buffer reused: %v", e.Message, err, &buf2[:1][0] == &buf[:1][0])
	}
	// A single line needs no copy: Message aliases data.
	data = []byte(ts + " stdout F hello")
	e, _, _ = ParseRecord(FormatCRI, data, buf)
	if &e.Message[0] != &data[len(data)-5] {
		t.Fatal("single-line CRI message was copied")
	}
	data = []byte(`{"log":"hello\n","stream":"stdout","time":"` + ts + `"}`)
	e, _, _ = ParseRecord(FormatDocker, data, buf)
	if &e.Message[0] != &data[8] || string(e.Message) != "hello" {
		t.Fatal("docker message without escapes was copied")
	}
}

func TestParseRecordNoAllocs(t *testing.T) {
	records := [][]byte{
		[]byte(ts + " stdout F hello"),
		[]byte(ts + " stdout P a\n" + ts + " stdout F b"),
		[]byte(`{"log":"hello\n","stream":"stdout","time":"` + ts + `"}`),
		[]byte(`{"log":"\"q\" \u00e9 \ud83d\ude80\n","stream":"stdout","time":"` + ts + `"}`),
		[]byte("garbage"),
	}
	buf := make([]byte, 0, 1024)
	n := testing.AllocsPerRun(100, func() {
		for i, r := range records {
			format := FormatCRI
			if i >= 2 {
				format = FormatDocker
			}
			_, buf, _ = ParseRecord(format, r, buf)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}

func TestParseTime(t *testing.T) {
	// The fast path must agree with time.Parse.
	f := func(s string) {
		t.Helper()
		got, ok := parseTimeUTC([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok {
			t.Fatalf("parseTimeUTC(%q) failed (time.Parse: %v)", s, err)
		}
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("parseTimeUTC(%q) = %v, time.Parse = %v, %v", s, got, want, err)
		}
	}
	f("2023-11-07T02:05:10.616482913Z")
	f("2023-11-07T02:05:10.61648291Z")
	f("2023-11-07T02:05:10.6Z")
	f("2023-11-07T02:05:10Z")
	f("0000-01-01T00:00:00Z")
	f("2000-02-29T23:59:59.000000001Z")
	f("9999-12-31T23:59:59.999999999Z")
	for _, s := range []string{"2023-11-07T02:05:10+00:00", "2023-11-07T02:05:10.1234567890Z", "1900-02-29T00:00:00Z", strings.Repeat("9", 20)} {
		if _, ok := parseTimeUTC([]byte(s)); ok {
			t.Fatalf("parseTimeUTC(%q) accepted, want it left to time.Parse", s)
		}
	}
}
