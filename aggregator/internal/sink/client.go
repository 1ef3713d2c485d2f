package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/opensearch-project/opensearch-go/v4/signer/awsv2"

	"github.com/podlogs/podlogs/aggregator/internal/osrequest"
)

// ClientConfig says how to reach OpenSearch.
type ClientConfig struct {
	URL      string
	User     string
	Password string // never logged
	// CAFile is a PEM bundle of the CAs to trust (else the system's).
	CAFile string
	// CertFile and KeyFile are a client certificate, for clusters that ask one.
	CertFile, KeyFile string
	// Insecure skips certificate verification; only by the user's explicit choice.
	Insecure bool
	// AWSRegion, when set, signs every request with AWS SigV4 for Amazon
	// OpenSearch Service (AWSService: "es", or "aoss" for Serverless), with
	// credentials from the default AWS chain: environment, web identity
	// (IRSA), shared config, instance or task role.
	AWSRegion  string
	AWSService string
	// Timeout bounds each request (a bulk included); 0: none.
	Timeout time.Duration
}

// NewClient returns an OpenSearch client for cfg. It does not retry: the
// sink retries through JetStream redelivery.
func NewClient(ctx context.Context, cfg ClientConfig) (*opensearch.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure} //nolint:gosec // explicit user choice
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read OpenSearch CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OpenSearch CA bundle %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load OpenSearch client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsCfg
	transport.MaxIdleConnsPerHost = 32
	transport.ResponseHeaderTimeout = cfg.Timeout
	osCfg := opensearch.Config{
		Addresses:    []string{cfg.URL},
		Username:     cfg.User,
		Password:     cfg.Password,
		Transport:    transport,
		DisableRetry: true,
	}
	if cfg.AWSRegion != "" {
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.AWSRegion))
		if err != nil {
			return nil, fmt.Errorf("AWS configuration for SigV4: %w", err)
		}
		service := cfg.AWSService
		if service == "" {
			service = "es"
		}
		signer, err := awsv2.NewSignerWithService(awsCfg, service)
		if err != nil {
			return nil, fmt.Errorf("AWS SigV4 signer: %w", err)
		}
		osCfg.Signer = signer
	}
	client, err := opensearch.NewClient(osCfg)
	if err != nil {
		return nil, fmt.Errorf("OpenSearch client: %w", err)
	}
	return client, nil
}

// ErrAccessDenied is returned by Probe when OpenSearch refuses the
// credentials (401) or the user's rights (403): waiting will not help.
var ErrAccessDenied = errors.New("OpenSearch refused access")

// ErrTLS is returned by Probe when the TLS handshake fails on a certificate:
// waiting will not help either.
var ErrTLS = errors.New("TLS with OpenSearch failed")

// Probe asks GET / once and returns the cluster's version. Wrong
// credentials (ErrAccessDenied) and untrusted certificates (ErrTLS) are
// permanent: the caller should stop with the message. Any other error
// (connection refused, timeout, 5xx) is transient: documents wait in the
// buffer until OpenSearch answers.
func Probe(ctx context.Context, client *opensearch.Client) (version string, err error) {
	out, err := osrequest.Do(ctx, client, http.MethodGet, "/", nil)
	if err != nil {
		var se *osrequest.StatusError
		var certErr *tls.CertificateVerificationError
		var unknownAuth x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		var recErr tls.RecordHeaderError
		switch {
		case errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden):
			return "", fmt.Errorf("%w (%d): check the user and password (--opensearch-user, --opensearch-password-file or $PODLOGS_OPENSEARCH_PASSWORD) or the AWS role: %s",
				ErrAccessDenied, se.Status, se.Body)
		case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr):
			return "", fmt.Errorf("%w: %v: give the CA with --opensearch-ca (or, knowingly, --opensearch-insecure)", ErrTLS, err)
		case errors.As(err, &recErr):
			return "", fmt.Errorf("%w: %v: the server does not speak TLS; use an http:// URL", ErrTLS, err)
		}
		var netErr net.Error
		if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("OpenSearch not reachable: %w", err)
		}
		return "", err
	}
	var info struct {
		Version struct {
			Distribution string `json:"distribution"`
			Number       string `json:"number"`
		} `json:"version"`
	}
	if json.Unmarshal(out, &info) == nil && info.Version.Number != "" {
		return info.Version.Distribution + " " + info.Version.Number, nil
	}
	return "unknown", nil
}
