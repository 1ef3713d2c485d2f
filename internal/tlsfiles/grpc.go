package tlsfiles

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc/credentials"
)

// creds are gRPC transport credentials that take a fresh tls.Config from
// Files for every handshake (credentials.NewTLS alone freezes one config).
type creds struct {
	files  *Files
	server bool
	onFail func(peer net.Addr, err error)
}

// ServerCredentials returns credentials for a gRPC server. onFail, if not
// nil, is called for every refused handshake with the peer's address: gRPC
// itself only logs those through grpclog, which is off.
func ServerCredentials(f *Files, onFail func(peer net.Addr, err error)) credentials.TransportCredentials {
	return &creds{files: f, server: true, onFail: onFail}
}

// ClientCredentials returns credentials for a gRPC client.
func ClientCredentials(f *Files) credentials.TransportCredentials {
	return &creds{files: f}
}

func (c *creds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// credentials.NewTLS checks the server against the channel's authority
	// and ignores tls.Config.ServerName, so the override goes there.
	if name := c.files.cfg.ServerName; name != "" {
		authority = name
	}
	return credentials.NewTLS(c.files.ClientConfig()).ClientHandshake(ctx, authority, conn)
}

func (c *creds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := credentials.NewTLS(c.files.ServerConfig()).ServerHandshake(conn)
	if err != nil && c.onFail != nil {
		c.onFail(conn.RemoteAddr(), err)
	}
	return out, info, err
}

func (c *creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c *creds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName is deprecated in gRPC; Config.ServerName does this.
func (c *creds) OverrideServerName(string) error { return nil }

// ServerHint says, for an error of a refused server handshake, what the
// forwarder's operator should change; "" when there is nothing specific.
func ServerHint(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "didn't provide a certificate"):
		return "the forwarder sent no client certificate: set its --tls-cert and --tls-key to a certificate signed by this aggregator's --tls-ca"
	case strings.Contains(s, "x509: certificate signed by unknown authority"):
		return "the forwarder's client certificate is not signed by this aggregator's --tls-ca: issue it from that CA, or add its CA to the file"
	case strings.Contains(s, "x509: certificate has expired"), strings.Contains(s, "not yet valid"):
		return "the forwarder's client certificate has expired or is not valid yet: renew it"
	case strings.Contains(s, "x509: certificate specifies an incompatible key usage"):
		return "the forwarder's certificate is not for client authentication: issue it with usage \"client auth\""
	case strings.Contains(s, "first record does not look like a TLS handshake"):
		return "the forwarder does not speak TLS: set its --tls-ca, --tls-cert and --tls-key"
	case strings.Contains(s, "remote error: tls:"):
		return "the forwarder rejected this aggregator's certificate: check the forwarder's --tls-ca and --tls-server-name against this aggregator's --tls-cert"
	}
	return ""
}

// ClientHint says, for the error that ended a forwarder's stream, what to
// change in the TLS settings c; "" when the error is not about TLS.
func ClientHint(err error, c Config) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	tlsOn, hasCert := c.Enabled(), c.CertFile != ""
	switch {
	case strings.Contains(s, "tls: certificate required"):
		return "the aggregator requires a client certificate: set --tls-cert and --tls-key to a certificate signed by the aggregator's --tls-ca"
	case strings.Contains(s, "remote error: tls: unknown certificate authority"), strings.Contains(s, "remote error: tls: bad certificate"):
		return "the aggregator refused this forwarder's client certificate: use one signed by the CA in the aggregator's --tls-ca"
	case strings.Contains(s, "remote error: tls: expired certificate"):
		return "the aggregator says this forwarder's client certificate has expired: renew --tls-cert"
	case strings.Contains(s, "x509: certificate signed by unknown authority"):
		return "the aggregator's certificate is not signed by --tls-ca: point --tls-ca at the CA that signs the aggregators' certificates"
	case strings.Contains(s, "x509: certificate is valid for"), strings.Contains(s, "x509: cannot validate certificate"):
		return "the aggregator's certificate does not name the address dialled: set --tls-server-name to a name in it, or add the name to the certificate"
	case strings.Contains(s, "x509: certificate has expired"):
		return "the aggregator's certificate has expired: renew it"
	case strings.Contains(s, "first record does not look like a TLS handshake"):
		return "the aggregator does not speak TLS: turn TLS on there (--tls-cert, --tls-key) or remove --tls-* here"
	case !tlsOn && (strings.Contains(s, "error reading server preface") || strings.Contains(s, "connection closed before server preface")):
		return "if the aggregator has TLS on, set --tls-ca (and --tls-cert, --tls-key for mutual TLS) on this forwarder"
	case tlsOn && !hasCert && (strings.Contains(s, "broken pipe") || strings.Contains(s, "connection reset by peer")):
		return "the aggregator closed the connection after the TLS handshake, most likely because it requires a client certificate: set --tls-cert and --tls-key to one signed by the aggregator's --tls-ca; the aggregator's log names the reason"
	case tlsOn && (strings.Contains(s, "broken pipe") || strings.Contains(s, "connection reset by peer")):
		// TLS 1.3: the client's handshake ends before the server has
		// checked the client certificate, so a refusal often shows as the
		// server closing the connection rather than as its alert.
		return "the aggregator closed the connection after the TLS handshake, most likely refusing this forwarder's client certificate: check that --tls-cert is signed by the aggregator's --tls-ca and valid; the aggregator's log names the reason"
	case strings.Contains(s, "tls:"):
		return "TLS handshake with the aggregator failed: check --tls-cert, --tls-key, --tls-ca and --tls-server-name"
	}
	return ""
}
