package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
	"github.com/podlogs/podlogs/internal/testkit/tlstest"
)

// TestTLSMutual runs the built binaries with mutual TLS between them, the
// certificates generated here and laid out as mounted Secrets: a forwarder
// with a valid client certificate streams; one without a certificate and one
// with a certificate of another CA are refused, with the reason in both
// processes' logs; rotating the refused forwarder's Secret to a valid
// certificate lets it in without a restart.
func TestTLSMutual(t *testing.T) {
	ca, otherCA := tlstest.NewCA(t, "podlogs-ca"), tlstest.NewCA(t, "other-ca")
	aggSecret := tlstest.NewSecret(t, proctest.TempDir(t, "agg-tls"), ca.Server(t), ca.CertPEM)
	// Ingest only (no bulk writer): acknowledged records are counted at the
	// aggregator, no OpenSearch needed.
	agg := startAggregator(t, "aggregator-0", proctest.TempDir(t, "agg"), "http://127.0.0.1:1", "tls", proctest.FreeAddr(t),
		"--bulk-workers=0", "--tls-cert="+aggSecret.Cert(), "--tls-key="+aggSecret.Key(), "--tls-ca="+aggSecret.CA(),
		"--tls-reload-interval=200ms")
	acked := func() float64 {
		return metric(t, "http://"+agg.admin+"/metrics", "podlogs_aggregator_records_acked_total")
	}

	// Each forwarder reads its own pods tree of 50 lines.
	type fwd struct {
		*proctest.Proc
		admin string
	}
	startFwd := func(name string, secret *tlstest.Secret, withCert bool) fwd {
		t.Helper()
		root := proctest.TempDir(t, name+"-pods")
		w, err := loggen.OpenFile(filepath.Join(root, "ui_"+name+"_3f0e6c5a-0d3b-4a8e-9a51-6f1c2b7d9e10/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			w.WriteLine(time.Now(), "stdout", fmt.Sprintf("%s line %d", name, i))
		}
		w.Close()
		admin := proctest.FreeAddr(t)
		args := []string{"--pods-root=" + root, "--data-dir=" + proctest.TempDir(t, name+"-data"), "--aggregator=dns:///" + agg.listen,
			"--node-name=" + name, "--admin-addr=" + admin, "--batch-linger=50ms", "--log.format=text",
			"--tls-ca=" + secret.CA(), "--tls-reload-interval=200ms"}
		if withCert {
			args = append(args, "--tls-cert="+secret.Cert(), "--tls-key="+secret.Key())
		}
		return fwd{Proc: start(t, name, args...), admin: admin}
	}
	logs := func(p *proctest.Proc) string {
		b, _ := os.ReadFile(p.Out)
		return string(b)
	}
	waitLog := func(p *proctest.Proc, what string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			l := logs(p)
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s log lacks %q:\n%s", what, p.Name, want, l)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	good := startFwd("forwarder-good", tlstest.NewSecret(t, proctest.TempDir(t, "good-tls"), ca.Client(t, "forwarder-good"), ca.CertPEM), true)
	good.WaitReady(t, good.admin)
	waitMetric(t, "valid client's records acknowledged", acked, 50)

	noCert := startFwd("forwarder-nocert", tlstest.NewSecret(t, proctest.TempDir(t, "nocert-tls"), nil, ca.CertPEM), false)
	waitLog(agg.Proc, "no client certificate", "refused a connection: TLS handshake failed", "didn't provide a certificate", "set its --tls-cert and --tls-key")
	waitLog(noCert.Proc, "no client certificate", "aggregator connection refused; fix the configuration", "--tls-cert and --tls-key")

	otherSecret := tlstest.NewSecret(t, proctest.TempDir(t, "other-tls"), otherCA.Client(t, "forwarder-other"), ca.CertPEM)
	other := startFwd("forwarder-other", otherSecret, true)
	waitLog(agg.Proc, "certificate of another CA", "certificate signed by unknown authority", "not signed by this aggregator's --tls-ca")
	// The forwarder sees the refusal as an alert (unknown certificate
	// authority) or as a connection closed after the handshake, by timing;
	// both hints name the aggregator's CA.
	waitLog(other.Proc, "certificate of another CA", "aggregator connection refused; fix the configuration", "signed by the", "aggregator's --tls-ca")

	// The refused ones got nothing through, and are not ready.
	time.Sleep(time.Second)
	if n := acked(); n != 50 {
		t.Fatalf("aggregator acknowledged %v records, want only the valid forwarder's 50", n)
	}
	for _, f := range []fwd{noCert, other} {
		if code := httpStatus(t, "http://"+f.admin+"/readyz"); code == 200 {
			t.Errorf("%s is ready without a valid certificate", f.Name)
		}
	}
	if n := metric(t, "http://"+agg.admin+"/metrics", "podlogs_aggregator_tls_handshake_failures_total"); n < 2 {
		t.Errorf("tls_handshake_failures_total = %v, want at least 2", n)
	}

	// cert-manager renews the refused forwarder's Secret from the right CA:
	// the same process gets in and its lines arrive.
	otherSecret.Write(t, ca.Client(t, "forwarder-other"), ca.CertPEM)
	other.WaitReady(t, other.admin)
	waitMetric(t, "rotated client's records acknowledged", acked, 100)
	waitLog(other.Proc, "rotation", "TLS certificates reloaded")

	// The aggregator's serving certificate is renewed: forwarders keep
	// connecting (the server side of the rotation; the unit tests check
	// the served serial).
	aggSecret.Write(t, ca.Server(t), ca.CertPEM)
	waitLog(agg.Proc, "server rotation", "TLS certificates reloaded")
	good.StopClean(t)
	other.StopClean(t)
	noCert.Kill()
	agg.StopClean(t)
}

func waitMetric(t *testing.T, what string, get func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := get()
		if n == want {
			return
		}
		if n > want || time.Now().After(deadline) {
			t.Fatalf("%s: %v, want %v", what, n, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
