package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
)

// The report sums the rows of every replica it is given, counts a replica
// listed twice once, and passes --namespace on. OpenSearch's side is tested
// in aggregator/internal/accounting (TestReconcile).
func TestReportSumsReplicas(t *testing.T) {
	var addrs []string
	for i, l := range []*accounting.Ledger{
		accounting.New(accounting.Config{Replica: "a"}, prometheus.NewRegistry()),
		accounting.New(accounting.Config{Replica: "b"}, prometheus.NewRegistry()),
	} {
		l.Add("ui", "ui-1", accounting.Received, 10*(i+1))
		l.Add("ui", "ui-1", accounting.Published, 10*(i+1))
		l.Add("carts", "carts-1", accounting.Received, 1)
		mux := http.NewServeMux()
		mux.Handle("GET "+accounting.HandlerPath, l.Handler())
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		addrs = append(addrs, srv.URL)
	}
	addrs = append(addrs, addrs[0]+"/") // the same replica again
	var out bytes.Buffer
	err := runReport(context.Background(), []string{"--aggregators=" + strings.Join(addrs, ","), "--index=", "--namespace=ui", "--json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var rep accounting.Reconciliation
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Replicas) != 2 || len(rep.Rows) != 1 {
		t.Fatalf("report %s", out.String())
	}
	if r := rep.Rows[0]; r.Pod != "ui-1" || r.Received != 30 || r.Published != 30 || r.Pending != 30 || r.InOpenSearch != -1 {
		t.Fatalf("row %+v", r)
	}

	out.Reset()
	if err := runReport(context.Background(), []string{"--aggregators=" + addrs[0], "--index="}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"replica a (", "carts-1", "ui-1", "TOTAL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReportRefusesUnreachableReplica(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	err := runReport(context.Background(), []string{"--aggregators=" + srv.URL, "--index="}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("err = %v, want one naming the replica", err)
	}
}
