package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
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
	fs.StringVar(&c.OpenSearchURL, "opensearch-url", "http://localhost:9200", "OpenSearch URL")
	fs.StringVar(&c.OpenSearchUser, "opensearch-user", "", "OpenSearch basic auth user")
	fs.StringVar(&c.OpenSearchPassword, "opensearch-password", "", "OpenSearch basic auth password (prefer $PODLOGS_OPENSEARCH_PASSWORD or --opensearch-password-file)")
	fs.StringVar(&c.OpenSearchPassFile, "opensearch-password-file", "", "file holding the OpenSearch basic auth password")
	fs.StringVar(&c.OpenSearchCA, "opensearch-ca", "", "PEM bundle of the CAs that sign OpenSearch's certificate (default: the system's)")
	fs.StringVar(&c.OpenSearchCert, "opensearch-cert", "", "client certificate (PEM) for OpenSearch, with --opensearch-key")
	fs.StringVar(&c.OpenSearchKey, "opensearch-key", "", "client certificate key (PEM) for OpenSearch")
	fs.BoolVar(&c.OpenSearchInsecure, "opensearch-insecure", false, "do not verify OpenSearch's certificate")
	fs.StringVar(&c.AWSRegion, "aws-region", "", "AWS region of an Amazon OpenSearch Service domain: sign requests with SigV4")
	fs.BoolVar(&c.AWSAuth, "opensearch-aws-auth", false, "sign requests with AWS SigV4 (region from $AWS_REGION)")
	fs.StringVar(&c.AWSService, "opensearch-aws-service", "es", "SigV4 service name: es or aoss")
	envflag.Usage(fs)
	if err := envflag.Parse(fs, args, nil); err != nil {
		return r, err
	}
	if c.DeadLetterIndex == "" && c.Index != "" {
		// As the aggregator names it: the fixed part of a date pattern.
		c.DeadLetterIndex = strings.TrimRight(strings.Split(c.Index, "%")[0], "-._") + "-dlq"
	}
	if c.AWSRegion != "" {
		c.AWSAuth = true
	}
	if c.AWSAuth && c.AWSRegion == "" {
		c.AWSRegion = os.Getenv("AWS_REGION")
	}
	if c.OpenSearchPassFile != "" && c.OpenSearchPassword == "" {
		b, err := os.ReadFile(c.OpenSearchPassFile)
		if err != nil {
			return r, fmt.Errorf("--opensearch-password-file: %w", err)
		}
		c.OpenSearchPassword = strings.TrimRight(string(b), "\r\n")
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
