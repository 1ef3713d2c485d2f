package main

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	rs := parse([]string{
		"goos: linux",
		"BenchmarkE2E/half-rate-2        	       1	11557242409 ns/op	         0.2419 agg-cores	      1977 p99-ms	 3851648 B/op	   17666 allocs/op",
		"BenchmarkLineCounter-2   	       8	 143734294 ns/op	1389.91 MB/s	    504070 lines/op",
		"--- BENCH: BenchmarkE2E/half-rate-2",
		"    e2e_test.go:209: dataset: stage=e2e",
	})
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2: %+v", len(rs), rs)
	}
	if rs[0].name != "BenchmarkE2E/half-rate" || rs[0].n != 1 || rs[0].values["p99-ms"] != 1977 || rs[0].values["allocs/op"] != 17666 {
		t.Fatalf("first result %+v", rs[0])
	}
	if got := strings.Join(rs[0].units, ","); got != "ns/op,agg-cores,p99-ms,B/op,allocs/op" {
		t.Fatalf("units %s", got)
	}
	// lines/s is derived from lines/op and ns/op.
	if v := rs[1].values["lines/s"]; v < 3.5e6 || v > 3.51e6 {
		t.Fatalf("lines/s = %v", v)
	}
}

func TestKeptNotes(t *testing.T) {
	old := "# x\n" + notesBegin + "\nwhat was done\n" + notesEnd + "\n"
	if got := keptNotes(old); got != "what was done" {
		t.Fatalf("notes %q", got)
	}
	if got := keptNotes("# no notes"); got != "" {
		t.Fatalf("notes %q", got)
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.0851: "0.0851", 3.5: "3.50", 1977: "1,977", 12107797: "12,107,797"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}
