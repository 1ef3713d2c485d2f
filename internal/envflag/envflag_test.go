package envflag

import (
	"flag"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	f := func(args []string, env map[string]string, wantURL string, wantN int) {
		t.Helper()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		url := fs.String("opensearch-url", "http://localhost:9200", "")
		n := fs.Int("max-inflight.bytes", 1, "")
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		if err := Parse(fs, args, lookup); err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if *url != wantURL || *n != wantN {
			t.Fatalf("got %q %d, want %q %d", *url, *n, wantURL, wantN)
		}
	}
	f(nil, nil, "http://localhost:9200", 1)
	f(nil, map[string]string{"PODLOGS_OPENSEARCH_URL": "http://os:9200", "PODLOGS_MAX_INFLIGHT_BYTES": "7"}, "http://os:9200", 7)
	f([]string{"--opensearch-url=http://cli:9200"}, map[string]string{"PODLOGS_OPENSEARCH_URL": "http://os:9200"}, "http://cli:9200", 1)
}

func TestParseBadEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("batch-records", 1, "")
	err := Parse(fs, nil, func(string) (string, bool) { return "many", true })
	if err == nil {
		t.Fatal("want an error for a non-numeric environment value")
	}
}
