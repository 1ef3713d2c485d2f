package osnode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/testkit/osnode"
)

// nodeDir returns a fresh working dir for a node. Not t.TempDir(): when the tests run as root
// the node runs as nobody, who cannot traverse t.TempDir()'s 0700 parent.
func nodeDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "osnode-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real OpenSearch node")
	}
	ctx := context.Background()
	dir := nodeDir(t)

	t0 := time.Now()
	n, err := osnode.Start(ctx, osnode.Config{Dir: dir, Stdout: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Kill() }) // if a check below fails
	t.Logf("started in %v at %s", time.Since(t0).Round(time.Millisecond), n.URL())
	if !strings.HasPrefix(n.URL(), "http://127.0.0.1:") {
		t.Errorf("URL() = %q", n.URL())
	}
	if got := len(nodeProcesses(t, dir)); got != 1 {
		t.Fatalf("%d processes run for the node, want 1", got)
	}

	call(t, "PUT", n.URL()+"/logs-1/_doc/a?refresh=true", `{"log":"hello from osnode"}`, http.StatusCreated)
	if got := searchHits(t, n.URL(), "logs-1", "hello"); got != 1 {
		t.Fatalf("search found %d documents, want 1", got)
	}

	// A crash: the data written before it must survive, on the same URL.
	url := n.URL()
	if err := n.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := nodeProcesses(t, dir); len(got) != 0 {
		t.Fatalf("processes left after Kill: %v", got)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("the node still answers after Kill")
	}
	t0 = time.Now()
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted in %v", time.Since(t0).Round(time.Millisecond))
	if n.URL() != url {
		t.Errorf("URL changed across Restart: %s, then %s", url, n.URL())
	}
	if got := searchHits(t, n.URL(), "logs-1", "hello"); got != 1 {
		t.Fatalf("after Kill and Restart, search found %d documents, want 1", got)
	}

	t0 = time.Now()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(t0).Round(time.Millisecond))
	select {
	case <-n.Done():
	default:
		t.Error("Done() is not closed after Stop")
	}
	if err := n.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if got := nodeProcesses(t, dir); len(got) != 0 {
		t.Fatalf("processes left after Stop: %v", got)
	}
}

func TestStartFailureShowsNodeOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real OpenSearch node")
	}
	dir := nodeDir(t)
	_, err := osnode.Start(context.Background(), osnode.Config{
		Dir:           dir,
		ExtraSettings: map[string]string{"no.such.setting": "x"},
	})
	if err == nil {
		t.Fatal("Start accepted an unknown setting")
	}
	if !strings.Contains(err.Error(), "unknown setting [no.such.setting]") {
		t.Errorf("the error does not show the node's complaint:\n%v", err)
	}
	if got := nodeProcesses(t, dir); len(got) != 0 {
		t.Fatalf("processes left after a failed Start: %v", got)
	}
}

func TestStartExplainsUnreachableDir(t *testing.T) {
	if testing.Short() {
		t.Skip("may download OpenSearch")
	}
	if os.Geteuid() != 0 {
		t.Skip("only root runs the node as another user")
	}
	_, err := osnode.Start(context.Background(), osnode.Config{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "os.MkdirTemp") {
		t.Fatalf("Start in t.TempDir() as root: got %v, want advice to use os.MkdirTemp", err)
	}
}

func TestStartNeedsDir(t *testing.T) {
	if _, err := osnode.Start(context.Background(), osnode.Config{}); err == nil {
		t.Fatal("Start without Dir succeeded")
	}
}

// nodeProcesses returns the pids of the processes whose command line names dir.
func nodeProcesses(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // not a process, or gone
		}
		if bytes.Contains(cmdline, []byte("-Dopensearch.path.conf="+dir)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func call(t *testing.T, method, url, body string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	return b
}

func searchHits(t *testing.T, url, index, word string) int {
	t.Helper()
	b := call(t, "POST", url+"/"+index+"/_search", fmt.Sprintf(`{"query":{"match":{"log":%q}}}`, word), http.StatusOK)
	var r struct {
		Hits struct {
			Total struct{ Value int } `json:"total"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("search response: %v: %s", err, b)
	}
	return r.Hits.Total.Value
}

// testWriter sends the node's output to the test log (shown on failure or with -v).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("node: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}
