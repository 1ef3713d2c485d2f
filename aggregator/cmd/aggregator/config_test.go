package main

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]string{"--id=a1", "--index=logs"})
	if err != nil {
		t.Fatal(err)
	}
	if c.DeadLetterIndex != "logs-dlq" || c.OpenSearchURL != "http://localhost:9200" || c.ListenAddr != ":7370" {
		t.Fatalf("config %+v", c)
	}
	_, err = parseConfig([]string{"--id=a1", "--opensearch-url=localhost:9200", "--bulk-workers=20", "--nats-ack-wait=1s"})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"--opensearch-url", "--nats-max-ack-pending", "--nats-ack-wait"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
