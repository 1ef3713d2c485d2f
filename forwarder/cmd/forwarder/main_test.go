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
	_, err = parseConfig([]string{"--node-name=n1", "--batch-records=0", "--batch-linger=0s", "--max-message-bytes=1000"})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"--batch-records", "--batch-linger", "--max-message-bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
