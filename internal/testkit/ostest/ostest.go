// Package ostest gives tests a real OpenSearch: one node per test binary, started on first use
// and stopped by Main.
//
//	func TestMain(m *testing.M) { ostest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url, index := ostest.URL(t), ostest.Index(t)
//		...
//	}
//
// Tests that need OpenSearch are skipped under -short. With $PODLOGS_TEST_OPENSEARCH_URL set,
// they use that server instead, and tests that need to control the process (Node, NewNode) are
// skipped. $PODLOGS_TEST_OPENSEARCH_LOG=1 copies the shared node's output to stderr.
//
// The shared node is shared: a test that kills it must Restart it before it returns, and tests
// that run in parallel with such a test must not use it. NewNode gives a test a node of its own;
// NewSecureNode one with the security plugin (TLS, basic auth, a narrow role).
package ostest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/testkit/osnode"
)

// EnvURL names an OpenSearch server to use instead of starting one.
const EnvURL = "PODLOGS_TEST_OPENSEARCH_URL"

var (
	once sync.Once
	// Set by once.
	shared    *osnode.Node
	sharedDir string
	sharedErr error
)

// Main runs the tests, then stops the shared node if one was started. Without it the node dies
// with the test binary anyway (see osnode), but its working directory is left behind.
func Main(m *testing.M) {
	m.Run() // the testing package exits with its code when TestMain returns
	// Waits for a start in progress (a test that leaked a goroutine) and forbids new ones.
	once.Do(func() {})
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "ostest:", err)
		}
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}

// URL returns the base URL of the shared OpenSearch, starting the node on first use.
func URL(t testing.TB) string {
	t.Helper()
	skipShort(t)
	if url := os.Getenv(EnvURL); url != "" {
		return strings.TrimRight(url, "/")
	}
	return sharedNode(t).URL()
}

// Node returns the shared node, for tests that stop, kill or restart it. It skips the test
// when $PODLOGS_TEST_OPENSEARCH_URL names an outside server.
func Node(t testing.TB) *osnode.Node {
	t.Helper()
	skipShort(t)
	if os.Getenv(EnvURL) != "" {
		t.Skipf("ostest: this test controls the OpenSearch process, and %s names an outside server", EnvURL)
	}
	return sharedNode(t)
}

// NewNode starts a node of the test's own, in a fresh directory, stopped and removed when the
// test ends. cfg.Dir is set by NewNode.
func NewNode(t testing.TB, cfg osnode.Config) *osnode.Node {
	t.Helper()
	skipShort(t)
	if os.Getenv(EnvURL) != "" {
		t.Skipf("ostest: this test controls the OpenSearch process, and %s names an outside server", EnvURL)
	}
	dir := mkdirTemp(t)
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.Dir = dir
	n, err := osnode.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// Index returns a new index name for the test, "t-<test name>-<random>", and deletes that index
// and "<name>-*" when the test ends.
func Index(t testing.TB) string {
	t.Helper()
	url := URL(t)
	name := indexName(t.Name())
	t.Cleanup(func() {
		if err := deleteIndex(url, name+","+name+"-*"); err != nil {
			t.Errorf("ostest: delete the test's indices: %v", err)
		}
	})
	return name
}

var unsafeIndexChars = regexp.MustCompile(`[^a-z0-9_]+`)

// indexName makes a valid, unique index name (lowercase, no / * ? " < > | space , # \ :, not
// too long) that still tells which test made it.
func indexName(testName string) string {
	s := unsafeIndexChars.ReplaceAllString(strings.ToLower(testName), "-")
	s = strings.Trim(s, "-_")
	if len(s) > 60 {
		s = strings.TrimRight(s[:60], "-_")
	}
	b := make([]byte, 4)
	rand.Read(b)
	return "t-" + s + "-" + hex.EncodeToString(b)
}

func deleteIndex(url, indices string) error {
	req, err := http.NewRequest(http.MethodDelete, url+"/"+indices+"?ignore_unavailable=true&allow_no_indices=true", nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("DELETE /%s: %s: %s", indices, resp.Status, body)
	}
	return nil
}

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("ostest: needs a real OpenSearch; skipped under -short")
	}
}

func sharedNode(t testing.TB) *osnode.Node {
	t.Helper()
	once.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "podlogs-ostest-")
		if sharedErr != nil {
			return
		}
		cfg := osnode.Config{Dir: sharedDir}
		if os.Getenv("PODLOGS_TEST_OPENSEARCH_LOG") == "1" {
			cfg.Stdout = os.Stderr
		}
		shared, sharedErr = osnode.Start(context.Background(), cfg)
	})
	if sharedErr != nil {
		t.Fatalf("ostest: start the shared OpenSearch node: %v", sharedErr)
	}
	if shared == nil {
		t.Fatal("ostest: the shared OpenSearch node is used after Main stopped it")
	}
	return shared
}

// mkdirTemp returns a new directory the node's user can reach: t.TempDir() is under a 0700
// directory, which nobody (the node's user when tests run as root) cannot traverse.
func mkdirTemp(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "podlogs-ostest-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
