package ostest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/podlogs/podlogs/internal/testkit/osnode"
)

// SecureVersion is the OpenSearch version NewSecureNode runs: the security plugin
// (org.opensearch.plugin:opensearch-security:<version>.0) must be on Maven Central for exactly
// the node's version, and 2.19.6 has none there.
const SecureVersion = "2.19.4"

// SecureIndexPattern names the indices SecureNode.User may create and write.
const SecureIndexPattern = "podlogs-*"

// securityRoles is the plugin's roles.yml: instead of the demo roles, the least a log shipper
// needs. GET / and the cluster health (the readiness check) are cluster_monitor; index
// templates are cluster_manage_index_templates; a _bulk is indices:data/write/bulk on the
// cluster, then create_index (the first document creates the index) and write on each index.
const securityRoles = `_meta:
  type: roles
  config_version: 2
podlogs_writer:
  reserved: false
  cluster_permissions: [cluster_monitor, cluster_manage_index_templates, "indices:data/write/bulk"]
  index_permissions:
    - index_patterns: ["` + SecureIndexPattern + `"]
      allowed_actions: [create_index, write]
`

// Common names of the certificates NewSecureNode makes; the plugin knows the node and the admin
// by their subjects, CN=<name> (plugins.security.nodes_dn, plugins.security.authcz.admin_dn).
const (
	secureNodeCN  = "podlogs-test-node"
	secureAdminCN = "podlogs-test-admin"
)

// SecureNode is a node of a test's own that runs the security plugin as a production cluster
// would: TLS on the REST and transport ports, with certificates of a CA made for the test,
// HTTP basic auth against the plugin's internal users, and an admin certificate.
type SecureNode struct {
	*osnode.Node
	// CAFile is the PEM of the CA that signed the node's and the admin's certificates.
	CAFile string
	// User has the role a log shipper needs and no more (see securityRoles): it may write
	// indices named SecureIndexPattern and install index templates. Password is random.
	User, Password string
	// AdminCertFile and AdminKeyFile are a client certificate the plugin takes as its admin
	// (no password needed).
	AdminCertFile, AdminKeyFile string
	// Admin is an HTTP client that trusts CAFile and presents the admin certificate, for
	// checks behind the test's back.
	Admin *http.Client
}

// NewSecureNode starts a node with the security plugin (OpenSearch SecureVersion), stopped and
// removed when the test ends. The first call on a machine downloads the distribution and the
// plugin and installs it, into .cache; later ones reuse that.
func NewSecureNode(t testing.TB) *SecureNode {
	t.Helper()
	skipShort(t)
	if os.Getenv(EnvURL) != "" {
		t.Skipf("ostest: this test needs OpenSearch with its security plugin, and %s names an outside server", EnvURL)
	}
	dir := t.TempDir() // the test's files; the node's are in its config directory
	ca := newTestCA(t)
	nodeCert, nodeKey := ca.issue(t, secureNodeCN, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	adminCert, adminKey := ca.issue(t, secureAdminCN, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})

	pw := make([]byte, 12)
	rand.Read(pw)
	s := &SecureNode{User: "podlogs", Password: hex.EncodeToString(pw)}
	// The lowest cost: the plugin checks the hash on the first request of each user, and the
	// test's cost is the node's start.
	hash, err := bcrypt.GenerateFromPassword([]byte(s.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s.CAFile = writeTestFile(t, dir, "ca.pem", ca.certPEM)
	s.AdminCertFile = writeTestFile(t, dir, "admin.pem", adminCert)
	s.AdminKeyFile = writeTestFile(t, dir, "admin-key.pem", adminKey)
	admin, err := tls.X509KeyPair(adminCert, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12}
	s.Admin = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	t.Cleanup(s.Admin.CloseIdleConnections)

	cfg := osnode.Config{
		Version: SecureVersion,
		Plugins: []string{"org.opensearch.plugin:opensearch-security:" + SecureVersion + ".0"},
		// As the plugin's demo configuration (tools/install_demo_configuration.sh) writes
		// them, with the test's certificates and without the audit log.
		ExtraSettings: map[string]string{
			"plugins.security.ssl.transport.pemcert_filepath":              "node.pem",
			"plugins.security.ssl.transport.pemkey_filepath":               "node-key.pem",
			"plugins.security.ssl.transport.pemtrustedcas_filepath":        "root-ca.pem",
			"plugins.security.ssl.transport.enforce_hostname_verification": "false",
			"plugins.security.ssl.http.enabled":                            "true",
			"plugins.security.ssl.http.pemcert_filepath":                   "node.pem",
			"plugins.security.ssl.http.pemkey_filepath":                    "node-key.pem",
			"plugins.security.ssl.http.pemtrustedcas_filepath":             "root-ca.pem",
			"plugins.security.allow_default_init_securityindex":            "true",
			"plugins.security.authcz.admin_dn":                             "[CN=" + secureAdminCN + "]",
			"plugins.security.nodes_dn":                                    "[CN=" + secureNodeCN + "]",
			"plugins.security.audit.type":                                  "noop",
		},
		ConfigFiles: map[string][]byte{
			"node.pem":     nodeCert,
			"node-key.pem": nodeKey,
			"root-ca.pem":  ca.certPEM,
			// Instead of the demo users, roles and mappings: one user, one role.
			"opensearch-security/internal_users.yml": fmt.Appendf(nil,
				"_meta:\n  type: internalusers\n  config_version: 2\n%s:\n  hash: %q\n  reserved: false\n", s.User, hash),
			"opensearch-security/roles.yml": []byte(securityRoles),
			"opensearch-security/roles_mapping.yml": fmt.Appendf(nil,
				"_meta:\n  type: rolesmapping\n  config_version: 2\npodlogs_writer:\n  reserved: false\n  users: [%q]\n", s.User),
		},
		// Not the admin certificate: the plugin lets its admin in before it has loaded its
		// configuration, the user only after, when the node is ready for the test.
		ClientTLS: &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12},
		User:      s.User, Password: s.Password,
		StartTimeout: 3 * time.Minute, // the plugin sets up its index on the first start
	}
	if os.Getenv("PODLOGS_TEST_OPENSEARCH_LOG") == "1" {
		cfg.Stdout = os.Stderr
	}
	t0 := time.Now()
	s.Node = NewNode(t, cfg)
	t.Logf("ostest: OpenSearch %s with the security plugin ready in %v at %s", SecureVersion, time.Since(t0).Round(time.Millisecond), s.URL())
	return s
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	pool    *x509.CertPool
	serial  int64
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podlogs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, serial: 1,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate (for 127.0.0.1 and localhost) and its key in PKCS#8, the only
// form the security plugin reads.
func (ca *testCA) issue(t testing.TB, cn string, usage []x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeTestFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
