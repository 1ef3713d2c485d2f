// Package tlsfiles serves TLS certificates from files that change under a
// running process, as a mounted Kubernetes Secret does when cert-manager
// renews it, and makes gRPC transport credentials from them.
//
// A Secret volume is updated by swapping a symlink (..data) to a new
// directory, so the files' names never change while their content does.
// Files therefore re-reads the certificate, key and CA files at most once per
// Config.ReloadInterval, lazily, when a handshake needs them, and compares
// their content with what it loaded: no watcher goroutine, nothing to stop.
// A set of files that does not parse (a key written before its certificate by
// a non-atomic writer) is logged and the previous set stays in use until the
// next check finds a valid one.
//
// Every handshake builds its tls.Config from the current set, so a rotated
// CA is trusted on both sides without a restart.
package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Config names the files. CertFile and KeyFile go together; CAFile alone
// (client) verifies the server without presenting a certificate.
type Config struct {
	CertFile, KeyFile string
	// CAFile holds the PEM CA certificates that sign the peer's certificate.
	// On a server it turns on mutual TLS: clients must present a certificate
	// it signed. On a client, empty means the system roots.
	CAFile string
	// ServerName overrides the name a client checks the server's
	// certificate for (default: the host of the dialled address).
	ServerName string
	// ReloadInterval is how long loaded files are used before they are read
	// again (default 5s).
	ReloadInterval time.Duration
}

// Enabled tells whether any file is configured, i.e. whether to use TLS.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// Validate checks which files go together. server says which side this is:
// a server always needs a certificate.
func (c Config) Validate(server bool) error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: set both or neither"))
	}
	if server && c.CAFile != "" && c.CertFile == "" {
		errs = append(errs, errors.New("--tls-ca (mutual TLS) needs the server's own --tls-cert and --tls-key"))
	}
	if server && c.ServerName != "" {
		errs = append(errs, errors.New("a server name is for clients only"))
	}
	if c.ReloadInterval < 0 {
		errs = append(errs, fmt.Errorf("--tls-reload-interval must not be negative, got %s", c.ReloadInterval))
	}
	return errors.Join(errs...)
}

// Files holds the current certificate, key and CA pool.
type Files struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex // guards the fields below
	checked time.Time  // when the files were last read
	raw     [3][]byte  // cert, key, CA as last loaded successfully
	cert    *tls.Certificate
	pool    *x509.CertPool
	failed  bool // the last read did not load; log only the first failure of a run
}

// Load reads the files once; errors here are configuration errors to fail
// fast on. log receives reloads and reload failures.
func Load(cfg Config, log *slog.Logger) (*Files, error) {
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = 5 * time.Second
	}
	f := &Files{cfg: cfg, log: log, now: time.Now}
	raw, err := f.read()
	if err != nil {
		return nil, err
	}
	if err := f.parse(raw); err != nil {
		return nil, err
	}
	f.checked = f.now()
	return f, nil
}

// read returns the content of the configured files.
func (f *Files) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, name := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.CAFile} {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return raw, fmt.Errorf("read TLS file: %w", err)
		}
		raw[i] = b
	}
	return raw, nil
}

// parse makes raw the current set if it is valid.
func (f *Files) parse(raw [3][]byte) error {
	var cert *tls.Certificate
	if f.cfg.CertFile != "" {
		c, err := tls.X509KeyPair(raw[0], raw[1])
		if err != nil {
			return fmt.Errorf("load TLS key pair %s, %s: %w", f.cfg.CertFile, f.cfg.KeyFile, err)
		}
		cert = &c
	}
	var pool *x509.CertPool
	if f.cfg.CAFile != "" {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw[2]) {
			return fmt.Errorf("load TLS CA %s: no PEM certificate in it", f.cfg.CAFile)
		}
	}
	f.raw, f.cert, f.pool = raw, cert, pool
	return nil
}

// current returns the set to use now, reading the files again when the
// last read is older than the reload interval.
func (f *Files) current() (*tls.Certificate, *x509.CertPool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if now.Sub(f.checked) < f.cfg.ReloadInterval {
		return f.cert, f.pool
	}
	f.checked = now
	raw, err := f.read()
	if err == nil && bytes.Equal(raw[0], f.raw[0]) && bytes.Equal(raw[1], f.raw[1]) && bytes.Equal(raw[2], f.raw[2]) {
		f.failed = false
		return f.cert, f.pool
	}
	if err == nil {
		err = f.parse(raw)
	}
	if err != nil {
		if !f.failed {
			f.log.Warn("TLS files changed but do not load; keeping the previous certificates and retrying", "err", err, "retry_in", f.cfg.ReloadInterval)
		}
		f.failed = true
		return f.cert, f.pool
	}
	f.failed = false
	attrs := []any{"cert", f.cfg.CertFile, "ca", f.cfg.CAFile}
	if f.cert != nil && f.cert.Leaf != nil {
		attrs = append(attrs, "subject", f.cert.Leaf.Subject.String(), "not_after", f.cert.Leaf.NotAfter)
	}
	f.log.Info("TLS certificates reloaded", attrs...)
	return f.cert, f.pool
}

// ServerConfig returns the configuration for one server handshake: the
// current certificate and, with a CA, mandatory verified client certificates.
func (f *Files) ServerConfig() *tls.Config {
	cert, pool := f.current()
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
	if pool != nil {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return c
}

// ClientConfig returns the configuration for one client handshake.
func (f *Files) ClientConfig() *tls.Config {
	cert, pool := f.current()
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: f.cfg.ServerName}
	if cert != nil {
		// Always present the certificate: with Certificates, crypto/tls
		// sends none when the server's CA list does not name its issuer,
		// and the server would then say "no certificate" instead of the
		// more useful "unknown authority".
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}
