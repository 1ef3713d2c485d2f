package accounting

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
)

// This file is the report side: the rows of every replica summed per pod
// and set beside what OpenSearch holds of each pod.

// PodRow is one pod summed over every replica, beside what OpenSearch
// holds of it.
type PodRow struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Counts
	// Pending is published − indexed − duplicate − dead_lettered: waiting
	// in the stream, or resends JetStream dropped as duplicates.
	Pending int64 `json:"pending"`
	// InOpenSearch is the pod's documents in the index; -1 when unknown.
	InOpenSearch int64 `json:"in_opensearch"`
	// Difference is InOpenSearch − Indexed: 0 when every document a
	// replica counted as created is there and no other is.
	Difference int64 `json:"difference"`
}

// Reconciliation is the report: every replica's rows summed per pod.
type Reconciliation struct {
	Replicas []ReplicaInfo `json:"replicas"`
	Index    string        `json:"index,omitempty"`
	Rows     []PodRow      `json:"rows"`
	// OnlyInOpenSearch counts pods OpenSearch holds and no replica has a
	// row for: older than the replicas' counts, or idle past their retention.
	OnlyInOpenSearch int `json:"only_in_opensearch"`
}

// ReplicaInfo says which replicas a Reconciliation sums.
type ReplicaInfo struct {
	URL     string    `json:"url"`
	Replica string    `json:"replica"`
	Started time.Time `json:"started"`
	Pods    int       `json:"pods"`
}

// ReplicaURLs turns a comma-separated list of admin addresses (host:port or
// URLs) into one base URL per replica: a host name is resolved, and each of
// its addresses is a replica (a headless Service).
func ReplicaURLs(ctx context.Context, list string) ([]string, error) {
	var urls []string
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !strings.Contains(e, "://") {
			e = "http://" + e
		}
		u, err := url.Parse(e)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("aggregator address %q is not host:port or a URL", e)
		}
		port := cmp.Or(u.Port(), "9370")
		addrs := []string{u.Hostname()}
		if net.ParseIP(u.Hostname()) == nil {
			addrs, err = net.DefaultResolver.LookupHost(ctx, u.Hostname())
			if err != nil {
				return nil, fmt.Errorf("resolve aggregator %s: %w", u.Hostname(), err)
			}
		}
		for _, a := range addrs {
			v := *u
			v.Host = net.JoinHostPort(a, port)
			v.Path = strings.TrimRight(v.Path, "/")
			if s := v.String(); !slices.Contains(urls, s) {
				urls = append(urls, s)
			}
		}
	}
	return urls, nil
}

// Collect sums the replicas' rows per pod. A replica met twice (a name
// resolving to both its IPv4 and IPv6 address) is counted once.
func Collect(ctx context.Context, hc *http.Client, urls []string, namespace string) (*Reconciliation, error) {
	rep := &Reconciliation{Rows: []PodRow{}}
	sums := map[PodKey]Counts{}
	seen := map[string]bool{}
	for _, base := range urls {
		u := base + HandlerPath
		if namespace != "" {
			u += "?namespace=" + url.QueryEscape(namespace)
		}
		var r Report
		if err := getJSON(ctx, hc, u, &r); err != nil {
			return nil, fmt.Errorf("accounting of aggregator %s: %w", base, err)
		}
		id := r.Replica + "@" + r.Started.String()
		if seen[id] {
			continue
		}
		seen[id] = true
		rep.Replicas = append(rep.Replicas, ReplicaInfo{URL: base, Replica: r.Replica, Started: r.Started, Pods: r.Pods})
		for _, row := range r.Rows {
			k := PodKey{Namespace: row.Namespace, Pod: row.Pod}
			sums[k] = sums[k].Plus(row.Counts)
		}
	}
	for k, c := range sums {
		rep.Rows = append(rep.Rows, PodRow{Namespace: k.Namespace, Pod: k.Pod, Counts: c, InOpenSearch: -1,
			Pending: int64(c.Published) - int64(c.Indexed) - int64(c.Duplicate) - int64(c.DeadLettered)})
	}
	slices.SortFunc(rep.Rows, func(a, b PodRow) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	return rep, nil
}

func getJSON(ctx context.Context, hc *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// PodKey names a pod.
type PodKey struct{ Namespace, Pod string }

// Join fills in OpenSearch's counts; pods it holds that no replica counted
// are only counted.
func (r *Reconciliation) Join(counts map[PodKey]int64) {
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Pod == OverflowPod || row.Pod == UnknownPod {
			continue // no such pod in OpenSearch
		}
		k := PodKey{Namespace: row.Namespace, Pod: row.Pod}
		row.InOpenSearch = counts[k]
		row.Difference = row.InOpenSearch - int64(row.Indexed)
		delete(counts, k)
	}
	r.OnlyInOpenSearch = len(counts)
}

// Print writes r as a table, a TOTAL row last.
func (r *Reconciliation) Print(w io.Writer) error {
	for _, rp := range r.Replicas {
		fmt.Fprintf(w, "replica %s (%s): counting since %s, %d pods\n", rp.Replica, rp.URL, rp.Started.Format(time.RFC3339), rp.Pods)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tRECEIVED\tEXCLUDED\tPUBLISHED\tINDEXED\tDUPLICATE\tDEAD_LETTERED\tPENDING\tIN_OPENSEARCH\tDIFFERENCE\t")
	var total PodRow
	osKnown := false
	for _, row := range r.Rows {
		osCol, diffCol := "-", "-"
		if row.InOpenSearch >= 0 {
			osCol, diffCol = strconv.FormatInt(row.InOpenSearch, 10), strconv.FormatInt(row.Difference, 10)
			total.InOpenSearch += row.InOpenSearch
			total.Difference += row.Difference
			osKnown = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", row.Namespace, row.Pod, row.Received, row.Excluded,
			row.Published, row.Indexed, row.Duplicate, row.DeadLettered, row.Pending, osCol, diffCol)
		total.Counts = total.Counts.Plus(row.Counts)
		total.Pending += row.Pending
	}
	osCol, diffCol := "-", "-"
	if osKnown {
		osCol, diffCol = strconv.FormatInt(total.InOpenSearch, 10), strconv.FormatInt(total.Difference, 10)
	}
	fmt.Fprintf(tw, "TOTAL\t%d pods\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", len(r.Rows), total.Received, total.Excluded,
		total.Published, total.Indexed, total.Duplicate, total.DeadLettered, total.Pending, osCol, diffCol)
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Index != "" {
		fmt.Fprintf(w, "OpenSearch: %s; %d more pods there that no replica counted (older than the counts, or idle past --accounting-retention)\n",
			r.Index, r.OnlyInOpenSearch)
	}
	_, err := fmt.Fprintln(w, "PENDING = published − indexed − duplicate − dead_lettered (in the stream, or resends JetStream dropped); DIFFERENCE = in_opensearch − indexed")
	return err
}

var datePattern = regexp.MustCompile(`%[A-Za-z]`)

// IndexExpression is what to search for the documents of --index: a date
// pattern becomes a wildcard, and the dead-letter index is left out.
func IndexExpression(index, deadLetter string) string {
	expr := datePattern.ReplaceAllString(index, "*")
	if strings.Contains(expr, "*") && deadLetter != "" {
		expr += ",-" + datePattern.ReplaceAllString(deadLetter, "*")
	}
	return expr
}

// PodCounts counts the documents of every pod (of one namespace, or all)
// with a composite aggregation, paging through any number of pods.
func PodCounts(ctx context.Context, client *opensearch.Client, index, namespace string) (map[PodKey]int64, error) {
	counts := map[PodKey]int64{}
	var after map[string]any
	for {
		composite := map[string]any{
			"size": 1000,
			"sources": []any{
				map[string]any{"ns": map[string]any{"terms": map[string]any{"field": "kubernetes.namespace_name"}}},
				map[string]any{"pod": map[string]any{"terms": map[string]any{"field": "kubernetes.pod_name"}}},
			},
		}
		if after != nil {
			composite["after"] = after
		}
		q := map[string]any{"size": 0, "track_total_hits": false, "aggs": map[string]any{"pods": map[string]any{"composite": composite}}}
		if namespace != "" {
			q["query"] = map[string]any{"term": map[string]any{"kubernetes.namespace_name": namespace}}
		}
		body, _ := json.Marshal(q)
		path := "/" + index + "/_search?ignore_unavailable=true&allow_no_indices=true"
		out, err := osrequest.Do(ctx, client, http.MethodPost, path, body)
		if err != nil {
			return nil, fmt.Errorf("count documents per pod in %s: %w", index, err)
		}
		var resp struct {
			Aggregations struct {
				Pods struct {
					AfterKey map[string]any `json:"after_key"`
					Buckets  []struct {
						Key struct {
							NS  string `json:"ns"`
							Pod string `json:"pod"`
						} `json:"key"`
						DocCount int64 `json:"doc_count"`
					} `json:"buckets"`
				} `json:"pods"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			return nil, fmt.Errorf("count documents per pod in %s: %w", index, err)
		}
		for _, b := range resp.Aggregations.Pods.Buckets {
			counts[PodKey{Namespace: b.Key.NS, Pod: b.Key.Pod}] += b.DocCount
		}
		if len(resp.Aggregations.Pods.Buckets) == 0 || resp.Aggregations.Pods.AfterKey == nil {
			return counts, nil
		}
		after = resp.Aggregations.Pods.AfterKey
	}
}
