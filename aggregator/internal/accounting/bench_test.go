package accounting

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkAddDocument is the sink's cost per document: the pod read from
// the document, then counted. The scan runs backwards from the end, so it
// costs what follows the pod name (the "kubernetes" object), not the line.
func BenchmarkAddDocument(b *testing.B) {
	labels := `,"labels":{"app.kubernetes.io/name":"ui","app.kubernetes.io/instance":"ui","pod-template-hash":"5dcbd7c4b8"}`
	annotations := `,"annotations":{"prometheus.io/scrape":"true","prometheus.io/port":"8080","kubectl.kubernetes.io/restartedAt":"2026-11-25T08:00:00Z"}`
	for _, c := range []struct {
		name  string
		extra string
		line  string
	}{
		{"plain", "", "2026-11-25T08:00:00.000Z  INFO 1 --- [main] c.a.s.u.UiApplication : Started UiApplication in 5.917 seconds"},
		{"enriched", labels + annotations, "2026-11-25T08:00:00.000Z  INFO 1 --- [main] c.a.s.u.UiApplication : Started UiApplication in 5.917 seconds"},
		{"long_line", labels + annotations, strings.Repeat("0123456789abcdef", 100<<10/16)},
		{"big_annotations", labels + `,"annotations":{"big":"` + strings.Repeat("x", 16<<10) + `"}`, "short"},
	} {
		d := doc("ui", "ui-5dcbd7c4b8-x2vqz", []byte(c.extra), c.line)
		b.Run(c.name, func(b *testing.B) {
			l := New(Config{}, prometheus.NewRegistry())
			b.SetBytes(int64(len(d)))
			b.ReportAllocs()
			for b.Loop() {
				l.AddDocument("podlogs.docs.ui", d, Indexed)
			}
		})
	}
}
