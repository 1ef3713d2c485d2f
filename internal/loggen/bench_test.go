package loggen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func BenchmarkWriteLine(b *testing.B) {
	spring := "2023-11-07T02:05:10.616Z  INFO 1 --- [nio-8080-exec-3] c.a.s.u.web.CatalogController            : GET /catalog?tag=watch&page=1 -> 8 products in 14 ms"
	inputs := []struct{ name, msg string }{
		{"short", spring},
		{"escapes", `{"level":"info","msg":"item added","product":"Café Crème ☕ <Mug> & \"東京\"","path":"C:\\tmp"}` + "\t\x01"},
		{"long40KiB", strings.Repeat(spring, 40*1024/len(spring))},
	}
	for _, format := range []Format{FormatCRI, FormatDocker} {
		for _, in := range inputs {
			b.Run(format.String()+"/"+in.name, func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "0.log")
				w, err := OpenFile(path, format, FileOptions{})
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				b.SetBytes(int64(len(in.msg)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := w.WriteLine(t0, "stdout", in.msg); err != nil {
						b.Fatal(err)
					}
					if w.size > 64<<20 { // keep the temp file small
						b.StopTimer()
						if err := os.Truncate(path, 0); err != nil {
							b.Fatal(err)
						}
						w.size = 0
						b.StartTimer()
					}
				}
			})
		}
	}
}
