package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/podlogs/podlogs/aggregator/internal/sink"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// The aggregator against a real OpenSearch with its security plugin (TLS on
// both ports, basic auth against the plugin's users, an admin certificate):
// with the password from a file and the CA bundle it writes documents; a
// wrong password or an unknown CA stops it at start-up with what to fix; a
// client certificate alone lets it in.
func TestSecuredOpenSearch(t *testing.T) {
	node := ostest.NewSecureNode(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := writeFile(pwFile, node.Password+"\n"); err != nil { // a Secret's file may end in a newline
		t.Fatal(err)
	}
	wrongFile := filepath.Join(dir, "wrong")
	if err := writeFile(wrongFile, "not-"+node.Password); err != nil {
		t.Fatal(err)
	}
	args := func(listen, admin string, extra ...string) []string {
		return append([]string{"--id=a1", "--listen=" + listen, "--admin-addr=" + admin, "--data-dir=" + t.TempDir(),
			"--enrichment=off", "--log.level=error", "--opensearch-url=" + node.URL()}, extra...)
	}
	// Start-up fails before the aggregator listens: any port will do.
	failing := func(extra ...string) []string { return args("127.0.0.1:0", "127.0.0.1:0", extra...) }

	t.Run("writes with password file and CA", func(t *testing.T) {
		index := "podlogs-secured"
		listen, admin := proctest.FreeAddr(t), proctest.FreeAddr(t)
		stop := runAggregator(t, args(listen, admin, "--opensearch-user="+node.User, "--opensearch-password-file="+pwFile,
			"--opensearch-ca="+node.CAFile, "--index="+index, "--flush-interval=100ms"), admin)

		lines := []string{
			"2026-11-25T20:00:00.000000001Z stdout F secured line one",
			"2026-11-25T20:00:00.000000002Z stdout F secured line two",
			"2026-11-25T20:00:00.000000003Z stderr F secured line three",
		}
		sendBatch(t, listen, lines)
		// Searchable: the writer installed the template, created the index and wrote them.
		// Until the new index's primary shard is active a count answers 503: keep asking.
		deadline := time.Now().Add(30 * time.Second)
		for n, err := 0, error(nil); n != len(lines); {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d documents searchable after 30 s (last count: %v)", n, len(lines), err)
			}
			time.Sleep(200 * time.Millisecond)
			n, err = searchCount(t, node, index, "log:secured")
		}
		if code := adminGet(t, node, "/_index_template/podlogs-"+index); code != http.StatusOK {
			t.Errorf("GET the index template: %d", code)
		}
		// The user's role was all it needed, and it is narrow: no other index.
		pem, _ := os.ReadFile(node.CAFile)
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		user := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
		defer user.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPut, node.URL()+"/not-podlogs", nil)
		req.SetBasicAuth(node.User, node.Password)
		resp, err := user.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("the user may create an index outside %s: %s", ostest.SecureIndexPattern, resp.Status)
		}
		if err := stop(); err != nil {
			t.Fatalf("aggregator ended with %v", err)
		}
	})

	t.Run("wrong password stops start-up", func(t *testing.T) {
		err := run(failing("--opensearch-user="+node.User, "--opensearch-password-file="+wrongFile, "--opensearch-ca="+node.CAFile))
		if err == nil {
			t.Fatal("the aggregator started with a wrong password")
		}
		t.Logf("start-up error: %v", err)
		// The same message auth_test.go checks against a fake: here the real plugin's 401.
		for _, want := range []string{node.URL(), "OpenSearch refused access (401)", "--opensearch-user", "--opensearch-password-file"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), node.Password) {
			t.Errorf("error shows the password: %v", err)
		}
	})

	t.Run("unknown CA stops start-up", func(t *testing.T) {
		err := run(failing("--opensearch-user="+node.User, "--opensearch-password-file="+pwFile))
		if err == nil || !errors.Is(err, sink.ErrTLS) || !strings.Contains(err.Error(), "--opensearch-ca") {
			t.Fatalf("error %v, want one that names --opensearch-ca", err)
		}
	})

	t.Run("client certificate", func(t *testing.T) {
		probe := func(extra ...string) error {
			t.Helper()
			c, err := parseConfig(append([]string{"--id=a1", "--opensearch-url=" + node.URL(), "--opensearch-ca=" + node.CAFile}, extra...))
			if err != nil {
				t.Fatal(err)
			}
			client, err := sink.NewClient(context.Background(), c.openSearchClient())
			if err != nil {
				t.Fatal(err)
			}
			_, err = sink.Probe(context.Background(), client)
			return err
		}
		if err := probe("--opensearch-cert="+node.AdminCertFile, "--opensearch-key="+node.AdminKeyFile); err != nil {
			t.Fatalf("probe with the admin certificate: %v", err)
		}
		// What let it in was the certificate: without it, no access.
		if err := probe(); !errors.Is(err, sink.ErrAccessDenied) {
			t.Fatalf("probe without credentials: %v, want ErrAccessDenied", err)
		}
	})
}

// runAggregator runs the aggregator in this process until stop, which ends it as Kubernetes
// does (SIGTERM) and returns what run returned.
func runAggregator(t *testing.T, args []string, admin string) (stop func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- run(args) }()
	var result error
	ended := false
	wait := func(d time.Duration) bool {
		select {
		case result = <-done:
			ended = true
		case <-time.After(d):
		}
		return ended
	}
	stop = func() error {
		if !ended {
			// run handles SIGTERM (signal.NotifyContext) until it returns, and it has not.
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
			if !wait(60 * time.Second) {
				return errors.New("did not stop within 60 s of SIGTERM")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if wait(100 * time.Millisecond) {
			t.Fatalf("the aggregator ended during start-up: %v", result)
		}
		if resp, err := http.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the aggregator was not ready within 60 s")
		}
	}
}

// sendBatch streams lines to the aggregator as a forwarder would and waits for the ack: the
// documents are then in JetStream.
func sendBatch(t *testing.T, addr string, lines []string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := podlogsv1.NewIngestServiceClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Hello{Hello: &podlogsv1.Hello{ProtocolVersion: 1, NodeName: "node-1"}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); err != nil || resp.GetWelcome() == nil {
		t.Fatalf("welcome: %v, %v", resp, err)
	}
	b := &podlogsv1.Batch{Sequence: 1, Sources: []*podlogsv1.Source{{
		Path:     "ui_ui-5dcbd7c4b8-x2vqz_3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10/ui/0.log",
		Identity: &podlogsv1.FileIdentity{Device: 1, Inode: 2, Fingerprint: 3}, Format: podlogsv1.Format_FORMAT_CRI,
	}}}
	off := uint64(0)
	for _, l := range lines {
		b.Records = append(b.Records, &podlogsv1.Record{Offset: off, NextOffset: off + uint64(len(l)) + 1, Data: []byte(l)})
		off += uint64(len(l)) + 1
	}
	if err := s.Send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Batch{Batch: b}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 1 {
		t.Fatalf("ack: %v, %v", resp, err)
	}
	s.CloseSend()
}

// searchCount counts the documents of index matching q, as the plugin's admin. An answer
// other than 200 is an error for the caller to wait out (a shard still starting answers 503).
func searchCount(t *testing.T, node *ostest.SecureNode, index, q string) (int, error) {
	t.Helper()
	resp, err := node.Admin.Get(fmt.Sprintf("%s/%s/_count?q=%s&ignore_unavailable=true", node.URL(), index, q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("count %s: %s: %s", index, resp.Status, body)
	}
	var out struct {
		Count int `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("count %s: decode: %v", index, err)
	}
	return out.Count, nil
}

func adminGet(t *testing.T, node *ostest.SecureNode, path string) int {
	t.Helper()
	resp, err := node.Admin.Get(node.URL() + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
