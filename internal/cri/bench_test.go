package cri

import (
	"strings"
	"testing"
)

// benchInput repeats lines up to about 1 MiB.
func benchInput(lines ...string) []byte {
	one := strings.Join(lines, "\n") + "\n"
	return []byte(strings.Repeat(one, (1<<20)/len(one)+1))
}

const benchMsg = "2023-11-07T02:05:10.616Z  INFO 1 --- [           main] c.a.s.u.UiApplication                    : Started UiApplication in 5.917 seconds (process running for 7.541)"

func BenchmarkFramer(b *testing.B) {
	part := strings.Repeat("x", 200)
	for _, bc := range []struct {
		name   string
		format Format
		input  []byte
	}{
		{"cri", FormatCRI, benchInput(ts + " stdout F " + benchMsg)},
		{"docker", FormatDocker, benchInput(`{"log":"` + benchMsg + `\n","stream":"stdout","time":"` + ts + `"}`)},
		{"cri-partial", FormatCRI, benchInput(ts+" stdout P "+part, ts+" stdout P "+part, ts+" stdout F "+benchMsg)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const chunk = 64 << 10 // what the tailer reads at a time
			fr := NewFramer(bc.format, 1<<20, 0)
			b.SetBytes(int64(len(bc.input)))
			b.ReportAllocs()
			for b.Loop() {
				fr.Reset(0)
				for p := bc.input; len(p) > 0; {
					n := min(chunk, len(p))
					fr.Write(p[:n])
					p = p[n:]
					for {
						if _, ok := fr.Next(); !ok {
							break
						}
					}
				}
			}
		})
	}
}

func BenchmarkParseRecord(b *testing.B) {
	for _, bc := range []struct {
		name   string
		format Format
		data   []byte
	}{
		{"cri", FormatCRI, []byte(ts + " stdout F " + benchMsg)},
		{"docker", FormatDocker, []byte(`{"log":"` + strings.ReplaceAll(benchMsg, "main", `\"main\"`) + `\n","stream":"stdout","time":"` + ts + `"}`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if _, buf, err = ParseRecord(bc.format, bc.data, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
