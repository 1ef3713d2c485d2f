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

func TestParseConfigIndexNaming(t *testing.T) {
	f := func(args []string, wantErrs ...string) config {
		t.Helper()
		c, err := parseConfig(append([]string{"--id=a1"}, args...))
		if len(wantErrs) == 0 && err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range wantErrs {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: error %v does not name %s", args, err, want)
			}
		}
		return c
	}
	c := f(nil)
	if c.Index != "eks-pod-logs" || c.indexMode().String() != "index" || c.ismPolicy().Enabled() {
		t.Errorf("defaults %+v", c)
	}
	c = f([]string{"--index=eks-pod-logs-%Y.%m.%d", "--ism-delete-after=30"})
	if c.DeadLetterIndex != "eks-pod-logs-dlq" || c.ismPolicy().DeleteAfterDays != 30 {
		t.Errorf("daily: dead-letter index %q, policy %+v", c.DeadLetterIndex, c.ismPolicy())
	}
	c = f([]string{"--index-mode=data-stream", "--ism-rollover-size=50gb", "--ism-rollover-age=1d", "--ism-delete-after=7"})
	if c.indexMode().String() != "data-stream" || c.ismPolicy().RolloverSize != "50gb" || c.DeadLetterIndex != "eks-pod-logs-dlq" {
		t.Errorf("data stream: %+v", c)
	}
	f([]string{"--index=logs-%Q"}, "--index", "%Q")
	f([]string{"--index=Logs"}, "--index", "upper-case")
	f([]string{"--index-mode=alias"}, "--index-mode")
	f([]string{"--index-mode=data-stream", "--index=logs-%Y.%m.%d"}, "--index-mode=data-stream takes a plain name")
	f([]string{"--ism-delete-after=30"}, "--ism-*", "deleted whole")
	f([]string{"--index=logs-%Y", "--ism-rollover-age=1d"}, "--ism-*", "rollover needs a data stream")
	f([]string{"--index-mode=data-stream", "--ism-rollover-size=big"}, "--ism-*", "rollover size")
	f([]string{"--dead-letter-index=dlq-%Y"}, "--dead-letter-index")
}
