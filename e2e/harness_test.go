package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/testkit/binaries"
	"github.com/podlogs/podlogs/internal/testkit/kubetest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

func TestMain(m *testing.M) {
	ostest.Main(m)
	kubetest.Stop()
	binaries.Clean()
}

// start starts the race-detector build of the binary name begins with.
func start(t *testing.T, name string, args ...string) *proctest.Proc {
	t.Helper()
	return startFrom(t, binaries.Commands(t, binaries.Race, binaries.Forwarder, binaries.Aggregator), name, args...)
}

// fastBinaries is the plain build, for load tests where the detector's
// 5-10x slowdown would measure the detector.
func fastBinaries(t *testing.T) string {
	t.Helper()
	return binaries.Commands(t, binaries.Fast, binaries.Forwarder, binaries.Aggregator)
}

// startFrom starts the binary of dir that name begins with (name
// "aggregator-1" is dir/aggregator) with args, the race detector halting it
// at its first report.
func startFrom(t *testing.T, dir, name string, args ...string) *proctest.Proc {
	t.Helper()
	bin := strings.SplitN(name, "-", 2)[0]
	cmd := exec.Command(filepath.Join(dir, bin), args...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	return proctest.Start(t, name, cmd)
}

type aggregator struct {
	*proctest.Proc
	listen, admin string
}

func startAggregator(t *testing.T, name, dataDir, osURL, index, listen string, extra ...string) *aggregator {
	t.Helper()
	admin := proctest.FreeAddr(t)
	p := start(t, name, append([]string{
		"--id=" + name, "--listen=" + listen, "--admin-addr=" + admin, "--data-dir=" + dataDir,
		"--opensearch-url=" + osURL, "--index=" + index, "--flush-interval=100ms", "--log.format=text",
		"--shutdown-grace=20s"}, extra...)...)
	p.WaitReady(t, admin)
	return &aggregator{Proc: p, listen: listen, admin: admin}
}

func startForwarder(t *testing.T, name, podsRoot, dataDir, aggregatorAddr string) *proctest.Proc {
	t.Helper()
	admin := proctest.FreeAddr(t)
	p := start(t, name,
		"--pods-root="+podsRoot, "--data-dir="+dataDir, "--aggregator=dns:///"+aggregatorAddr,
		"--node-name=node-e2e", "--admin-addr="+admin, "--scan-interval=200ms", "--poll-interval=50ms",
		"--batch-linger=50ms", "--log.format=text", "--shutdown-grace=20s")
	p.WaitReady(t, admin)
	return p
}

// search is a small OpenSearch client for assertions.
type search struct {
	url, index string
}

func (s search) do(t *testing.T, method, path string, body any) []byte {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, s.url+path, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

// count refreshes the index and counts its documents (0 before it exists).
func (s search) count(t *testing.T) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.url+"/"+s.index+"/_refresh", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return 0
		}
	}
	var r struct {
		Count int `json:"count"`
	}
	json.Unmarshal(s.do(t, http.MethodGet, "/"+s.index+"/_count", nil), &r)
	return r.Count
}

// waitCount waits until the index holds want documents, failing on more.
func (s search) waitCount(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, lastLog := -1, time.Time{}
	for {
		n := s.count(t)
		if n == want {
			return
		}
		if n > want {
			t.Fatalf("index %s holds %d documents, more than the %d lines written", s.index, n, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("index %s holds %d documents after %s, want %d", s.index, n, timeout, want)
		}
		if n != last && time.Since(lastLog) > 5*time.Second {
			t.Logf("index holds %d of %d documents", n, want)
			last, lastLog = n, time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// doc is the part of a document the tests compare.
type doc struct {
	Timestamp  string `json:"@timestamp"`
	Time       string `json:"time"`
	Stream     string `json:"stream"`
	Log        string `json:"log"`
	Kubernetes struct {
		PodName       string `json:"pod_name"`
		NamespaceName string `json:"namespace_name"`
		PodID         string `json:"pod_id"`
		ContainerName string `json:"container_name"`
		Host          string `json:"host"`
	} `json:"kubernetes"`
	Podlogs struct {
		Malformed bool `json:"malformed"`
		Truncated bool `json:"truncated"`
	} `json:"podlogs"`
}

// all returns every document of the index, in pages sorted by _id.
func (s search) all(t *testing.T) []doc {
	t.Helper()
	var docs []doc
	var after []any
	for {
		q := map[string]any{"size": 2000, "sort": []any{map[string]any{"_id": "asc"}}, "query": map[string]any{"match_all": map[string]any{}}}
		if after != nil {
			q["search_after"] = after
		}
		var r struct {
			Hits struct {
				Hits []struct {
					Source doc   `json:"_source"`
					Sort   []any `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal(s.do(t, http.MethodPost, "/"+s.index+"/_search", q), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Hits.Hits) == 0 {
			return docs
		}
		for _, h := range r.Hits.Hits {
			docs = append(docs, h.Source)
		}
		after = r.Hits.Hits[len(r.Hits.Hits)-1].Sort
	}
}
