package main

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]string{"--pods-root=/tmp/pods", "--node-name=n1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.PodsRoot != "/tmp/pods" || c.Aggregator != "dns:///podlogs-aggregator:7370" {
		t.Fatalf("config %+v", c)
	}
	c, err = parseConfig([]string{"--node-name=n1", "--exclude=kube-system,*/*/istio-proxy", "--exclude=ops", "--include=shop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Exclude) != 3 || len(c.Include) != 1 {
		t.Fatalf("include %q exclude %q", c.Include, c.Exclude)
	}
	_, err = parseConfig([]string{"--node-name=n1", "--batch-records=0", "--batch-linger=0s", "--max-message-bytes=1000",
		"--initial-read=middle", "--exclude=a/b/c/d"})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"--batch-records", "--batch-linger", "--max-message-bytes", "--initial-read", "exclude pattern"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
