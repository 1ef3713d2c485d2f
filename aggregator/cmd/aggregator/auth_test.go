package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// Wrong credentials stop the aggregator at start-up with a message that
// says what to fix, and never shows the password.
func TestWrongPasswordStopsAtStartup(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u == "admin" && p == "right" {
			w.Write([]byte(`{"version":{"number":"2.19.6"}}`))
			return
		}
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}))
	defer srv.Close()
	err := run([]string{"--id=a1", "--listen=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--data-dir=" + t.TempDir(),
		"--enrichment=off", "--opensearch-url=" + srv.URL, "--opensearch-user=admin", "--opensearch-password=s3cret-wrong",
		"--log.level=error"})
	if err == nil {
		t.Fatal("the aggregator started with a wrong password")
	}
	for _, want := range []string{srv.URL, "OpenSearch refused access (401)", "--opensearch-user"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "s3cret-wrong") {
		t.Errorf("error shows the password: %v", err)
	}
}

func TestParseConfigOpenSearchAuth(t *testing.T) {
	f := func(args []string, env map[string]string, wantAuth, wantErr string) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		c, err := parseConfig(append([]string{"--id=a1"}, args...))
		switch {
		case wantErr != "":
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("%v: error %v, want one naming %s", args, err, wantErr)
			}
			return
		case err != nil:
			t.Fatalf("%v: %v", args, err)
		}
		if got := c.openSearchAuth(); got != wantAuth {
			t.Fatalf("%v %v: auth %q, want %q", args, env, got, wantAuth)
		}
	}
	// The chart sets PODLOGS_AWS_REGION when opensearch.awsAuth is On.
	f(nil, map[string]string{"PODLOGS_AWS_REGION": "us-west-2"}, "aws-sigv4 (us-west-2)", "")
	f(nil, map[string]string{"PODLOGS_AWS_REGION": ""}, "none", "")
	f([]string{"--opensearch-aws-auth"}, map[string]string{"AWS_REGION": "eu-west-1"}, "aws-sigv4 (eu-west-1)", "")
	f([]string{"--opensearch-aws-auth"}, map[string]string{"AWS_REGION": ""}, "", "needs a region")
	f([]string{"--aws-region=us-west-2", "--opensearch-user=admin"}, nil, "", "exclude each other")
	f([]string{"--opensearch-cert=/c"}, nil, "", "--opensearch-key go together")
	f([]string{"--opensearch-insecure", "--opensearch-ca=/ca"}, nil, "", "contradict")
	f([]string{"--opensearch-password-file=/does/not/exist"}, nil, "", "--opensearch-password-file")

	pwFile := t.TempDir() + "/pw"
	if err := writeFile(pwFile, "from-file\n"); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]string{"--id=a1", "--opensearch-user=admin", "--opensearch-password-file=" + pwFile})
	if err != nil || c.OpenSearchPassword != "from-file" {
		t.Fatalf("password from file: %q, %v", c.OpenSearchPassword, err)
	}
	f([]string{"--opensearch-user=admin"}, map[string]string{"PODLOGS_OPENSEARCH_PASSWORD": "pw"}, "basic (admin)", "")
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
