package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/sink"
	"github.com/podlogs/podlogs/internal/envflag"
)

// reportConfig is what `aggregator report` takes. The OpenSearch flags are
// the aggregator's own, by the same names, so that in an aggregator pod the
// command finds OpenSearch through the same PODLOGS_* variables.
type reportConfig struct {
	Aggregators string
	Namespace   string
	JSON        bool
	Timeout     time.Duration
	os          config // OpenSearch connection and --index only
}

func parseReportConfig(args []string) (reportConfig, error) {
	var r reportConfig
	c := &r.os
	fs := flag.NewFlagSet("aggregator report", flag.ContinueOnError)
	fs.StringVar(&r.Aggregators, "aggregators", "podlogs-aggregator:9370",
		"admin addresses of the aggregator replicas, comma-separated (host:port or URL); a name resolving to several addresses (a headless Service) means every one")
	fs.StringVar(&r.Namespace, "namespace", "", "only this namespace")
	fs.BoolVar(&r.JSON, "json", false, "print JSON instead of a table")
	fs.DurationVar(&r.Timeout, "timeout", time.Minute, "for the whole report")
	fs.StringVar(&c.Index, "index", "eks-pod-logs", "index (or date pattern, or data stream) the aggregators write; empty: leave OpenSearch out")
	fs.StringVar(&c.DeadLetterIndex, "dead-letter-index", "", "dead-letter index, left out of the count (default <index>-dlq)")
	c.openSearchFlags(fs)
	envflag.Usage(fs)
	if err := envflag.Parse(fs, args, nil); err != nil {
		return r, err
	}
	if err := c.settleOpenSearch(); err != nil {
		return r, err
	}
	if strings.TrimSpace(r.Aggregators) == "" {
		return r, errors.New("--aggregators is empty")
	}
	if r.Timeout <= 0 {
		return r, fmt.Errorf("--timeout must be positive, got %s", r.Timeout)
	}
	return r, nil
}

// runReport sums /debug/accounting over every replica, joins OpenSearch's
// per-pod counts and prints the table (accounting.Reconciliation).
func runReport(ctx context.Context, args []string, out io.Writer) error {
	rc, err := parseReportConfig(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, rc.Timeout)
	defer cancel()
	urls, err := accounting.ReplicaURLs(ctx, rc.Aggregators)
	if err != nil {
		return err
	}
	rep, err := accounting.Collect(ctx, http.DefaultClient, urls, rc.Namespace)
	if err != nil {
		return err
	}
	if rc.os.Index != "" {
		client, err := sink.NewClient(ctx, rc.os.openSearchClient())
		if err != nil {
			return err
		}
		rep.Index = accounting.IndexExpression(rc.os.Index, rc.os.DeadLetterIndex)
		counts, err := accounting.PodCounts(ctx, client, rep.Index, rc.Namespace)
		if err != nil {
			return err
		}
		rep.Join(counts)
	}
	if rc.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", " ")
		return enc.Encode(rep)
	}
	return rep.Print(out)
}
