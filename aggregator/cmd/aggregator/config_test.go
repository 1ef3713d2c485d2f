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

func TestParseConfigEnrichment(t *testing.T) {
	c, err := parseConfig([]string{"--id=a1", "--kubeconfig=/k", "--enrich-key-style=underscore", "--parse-json"})
	if err != nil {
		t.Fatal(err)
	}
	if o := c.enrichOptions(); !o.Labels || !o.Annotations || o.NamespaceLabels || o.Keys.String() != "underscore" || !o.ParseJSON || c.dataFields() != 200 {
		t.Fatalf("options %+v", o)
	}
	_, err = parseConfig([]string{"--id=a1", "--enrichment=maybe", "--enrich-key-style=dots", "--enrich-get-burst=0", "--enrich-tombstone-ttl=0s", "--max-data-fields=0"})
	for _, want := range []string{"--enrichment", "--enrich-key-style", "--enrich-get-burst", "--enrich-tombstone-ttl", "--max-data-fields"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
