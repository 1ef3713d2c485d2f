package ostest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/podlogs/podlogs/internal/testkit/osnode"
)

func TestMain(m *testing.M) {
	Main(m)
	// Main must leave nothing behind.
	if sharedDir != "" {
		if pids := processesNaming(sharedDir); len(pids) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: processes of the shared node left after Main: %v\n", pids)
			os.Exit(1)
		}
		if _, err := os.Stat(sharedDir); err == nil {
			fmt.Fprintf(os.Stderr, "FAIL: %s left after Main\n", sharedDir)
			os.Exit(1)
		}
	}
}

func TestIndexName(t *testing.T) {
	valid := regexp.MustCompile(`^t-[a-z0-9][a-z0-9_-]*-[0-9a-f]{8}$`)
	f := func(testName, wantPrefix string) {
		t.Helper()
		got := indexName(testName)
		if !valid.MatchString(got) || !strings.HasPrefix(got, wantPrefix) || len(got) > 80 {
			t.Errorf("indexName(%q) = %q, want a valid name starting with %q", testName, got, wantPrefix)
		}
	}
	f("TestBulk", "t-testbulk-")
	f("TestBulk/Mapping_Conflict#01", "t-testbulk-mapping_conflict-01-")
	f("Test/*?\"<>| ,#\\:Ünïcode", "t-test-n-code-")
	f(strings.Repeat("TestLong", 20), "t-testlongtestlong")
	if a, b := indexName("TestX"), indexName("TestX"); a == b {
		t.Error("two calls gave the same name")
	}
}

func TestSharedNode(t *testing.T) {
	url := URL(t)
	if Node(t).URL() != url {
		t.Errorf("Node(t).URL() = %s, URL(t) = %s", Node(t).URL(), url)
	}
	if again := URL(t); again != url {
		t.Errorf("a second URL(t) = %s, want the same node at %s", again, url)
	}

	var index string
	t.Run("index", func(t *testing.T) {
		index = Index(t)
		put(t, url+"/"+index+"/_doc/1", http.StatusCreated)
		put(t, url+"/"+index+"-2026.11.25/_doc/1", http.StatusCreated)
	})
	// The subtest's cleanup deleted both.
	for _, name := range []string{index, index + "-2026.11.25"} {
		resp, err := http.Head(url + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD /%s after cleanup: %s, want 404", name, resp.Status)
		}
	}
}

func TestNewNode(t *testing.T) {
	n := NewNode(t, osnode.Config{HeapMB: 256})
	if n.URL() == URL(t) {
		t.Fatal("NewNode returned the shared node")
	}
	put(t, n.URL()+"/own/_doc/1", http.StatusCreated)
}

func put(t *testing.T, url string, want int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"log":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT %s: %s: %s", url, resp.Status, b)
	}
}

// processesNaming returns the pids of processes whose command line contains s.
func processesNaming(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
