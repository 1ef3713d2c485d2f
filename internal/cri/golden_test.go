package cri

import (
	"bytes"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var goldenFiles = map[string]Format{
	"containerd-springboot.log": FormatCRI,
	"crio-partial.log":          FormatCRI,
	"crio-untagged.log":         FormatCRI,
	"crlf-invalid-utf8.log":     FormatCRI,
	"docker-json.log":           FormatDocker,
}

// describe frames and parses a file and renders one line per record.
func describe(t *testing.T, format Format, input []byte, chunk int) (string, []Entry) {
	t.Helper()
	fr := NewFramer(format, 64<<10, 0)
	var sb strings.Builder
	var entries []Entry
	var buf []byte
	for p := input; len(p) > 0; {
		n := min(len(p), chunk)
		fr.Write(p[:n])
		p = p[n:]
		for {
			r, ok := fr.Next()
			if !ok {
				break
			}
			e, b, err := ParseRecord(format, r.Data, buf)
			buf = b
			fmt.Fprintf(&sb, "%d-%d lines=%d", r.Offset, r.NextOffset, r.Lines)
			if r.Truncated {
				sb.WriteString(" truncated")
			}
			if err != nil {
				fmt.Fprintf(&sb, " MALFORMED %s\n", quote(e.Message))
			} else {
				fmt.Fprintf(&sb, " %s %s %s\n", e.Stream, e.RawTime, quote(e.Message))
			}
			e.Message = bytes.Clone(e.Message)
			e.RawTime = bytes.Clone(e.RawTime)
			entries = append(entries, e)
		}
	}
	if fr.Offset() != uint64(len(input)) {
		t.Fatalf("Offset() = %d at the end of a %d-byte file", fr.Offset(), len(input))
	}
	return sb.String(), entries
}

// quote keeps golden files readable: long messages are summarized.
func quote(b []byte) string {
	if len(b) <= 300 {
		return strconv.Quote(string(b))
	}
	return fmt.Sprintf("len=%d crc32=%08x %q...%q", len(b), crc32.ChecksumIEEE(b), b[:80], b[len(b)-40:])
}

func TestGolden(t *testing.T) {
	for name, format := range goldenFiles {
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := describe(t, format, input, len(input))
			for _, chunk := range []int{1, 7, 4096} {
				if g, _ := describe(t, format, input, chunk); g != got {
					t.Fatalf("chunks of %d give different records", chunk)
				}
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("output differs from %s (go test -run TestGolden -update to accept):\n%s", golden, got)
			}
		})
	}
}

// TestGoldenMessages spot-checks messages written by hand, so that the golden
// files are not the only statement of what is right.
func TestGoldenMessages(t *testing.T) {
	read := func(name string) []Entry {
		t.Helper()
		input, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		_, entries := describe(t, goldenFiles[name], input, 4096)
		return entries
	}
	f := func(entries []Entry, i int, stream Stream, rawTime, msg string) {
		t.Helper()
		e := entries[i]
		if e.Stream != stream || (rawTime != "" && string(e.RawTime) != rawTime) || string(e.Message) != msg {
			t.Fatalf("entry %d: got %v %s %q\nwant %v %s %q", i, e.Stream, e.RawTime, e.Message, stream, rawTime, msg)
		}
	}

	sb := read("containerd-springboot.log")
	if len(sb) != 25 {
		t.Fatalf("springboot: %d records, want 25", len(sb))
	}
	f(sb, 0, StreamStdout, "2023-11-07T02:05:04.676076679Z", "")
	f(sb, 2, StreamStdout, "", ` /\\ / ___'_ __ _ _(_)_ __  __ _ \ \ \ \`)
	f(sb, 7, StreamStdout, "", " :: Spring Boot ::                (v3.1.5)")
	f(sb, 14, StreamStderr, "", "java.net.ConnectException: Connection refused")
	f(sb, 15, StreamStderr, "", "\tat java.base/sun.nio.ch.Net.pollConnect(Native Method)")
	f(sb, 23, StreamStdout, "", "2023-11-07T02:05:10.616Z  INFO 1 --- [           main] c.a.s.u.UiApplication                    : Started UiApplication in 5.917 seconds (process running for 7.541)")
	f(sb, 24, StreamStdout, "", "2023-11-07T02:05:11.020Z  INFO 1 --- [reactor-http-epoll-2] c.a.s.u.web.HomeController               : GET / 200 in 12ms user-agent=Mozilla/5.0 (X11; Linux x86_64)")
	// The configuration dump was split in three at 16 KiB.
	if m := string(sb[12].Message); !strings.HasPrefix(m, "2023-11-07T02:05:06.001Z DEBUG 1 --- [           main] c.a.s.u.config.EndpointProperties        : Resolved configuration properties: retail.ui.endpoints.service-0000.url=") ||
		!strings.HasSuffix(m, ".default.svc:8080; ") || len(m) < 40000 || strings.Count(m, "retail.ui.endpoints.service-") != strings.Count(m, ".url=http://service-") {
		t.Fatalf("joined configuration dump is wrong: %d bytes", len(m))
	}

	d := read("docker-json.log")
	if len(d) != 8 {
		t.Fatalf("docker: %d records, want 8", len(d))
	}
	f(d, 1, StreamStdout, "", `{"level":"info","ts":"2023-11-07T02:05:11.002Z","msg":"request served","method":"GET","path":"/catalog?tags=<new>&page=2","status":200,"duration_ms":3.2}`)
	f(d, 2, StreamStderr, "", "warning: config \"cache.size\" is deprecated\tuse \"cache.bytes\"")
	f(d, 3, StreamStdout, "", "Grüße aus Zürich — café ☕ 🚀")
	f(d, 4, StreamStdout, "", "bell\a nul\x00 escape\x1b[31mred\x1b[0m")
	f(d, 6, StreamStdout, "", "")
	f(d, 7, StreamStderr, "", "panic: runtime error: index out of range [3] with length 3")
	if m := string(d[5].Message); !strings.HasPrefix(m, `{"level":"debug","msg":"payload","body":"item-00000,item-00001,`) || !strings.HasSuffix(m, `,"}`) || len(m) <= 2*16384 {
		t.Fatalf("joined docker line is wrong: %d bytes", len(m))
	}

	c := read("crio-partial.log")
	f(c, 1, StreamStdout, "", `level=info msg="processing batch" ids=[1001 1002 1003 1004 1005 1006 1007 1008 1009 1010 1011 1012]`)
	f(c, 2, StreamStdout, "", "")
	f(c, 3, StreamStdout, "", "")
	f(c, 4, StreamStdout, "", `level=info msg="exporting report" rows=`) // cut short by the stderr line
	f(c, 5, StreamStderr, "", "warning: slow disk")
	f(c, 6, StreamStdout, "", "48213 took=2.31s")
	f(c, 7, StreamStderr, "", `level=error msg="batch failed" err="context deadline exceeded" retry=3`)

	u := read("crio-untagged.log")
	f(u, 0, StreamStdout, "", "starting nginx 1.25.3")
	f(u, 2, StreamStdout, "", "Fine, thanks")
	f(u, 3, StreamStdout, "", "")

	x := read("crlf-invalid-utf8.log")
	f(x, 0, StreamStdout, "", "Windows-style line")
	f(x, 1, StreamStdout, "", "latin-1 caf\xe9 cr\xe8me")
	f(x, 2, StreamStdout, "", "price: 12 €")
	f(x, 3, StreamStdout, "", "\x00\x01\x02 binary garbage \xff\xfe") // malformed, kept raw
	f(x, 4, StreamStderr, "", "truncated sequence \xe2\x82 and overlong \xc0\xaf")
	f(x, 5, StreamStdout, "", "")
	f(x, 6, StreamStdout, "", "ok")
}
