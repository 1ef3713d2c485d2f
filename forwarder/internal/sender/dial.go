package sender

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/podlogs/podlogs/internal/tlsfiles"
)

// Dial returns the client connection to the aggregators at target (a
// dns:/// name of a headless Service), with TLS as tls says, sending
// messages of up to maxMessageBytes.
func Dial(target string, tls tlsfiles.Config, maxMessageBytes int, log *slog.Logger) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if tls.Enabled() {
		// Loaded now to fail fast on a bad file; re-read on handshakes
		// when the Secret behind them is rotated.
		files, err := tlsfiles.Load(tls, log)
		if err != nil {
			return nil, err
		}
		creds = tlsfiles.ClientCredentials(files)
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		// Round robin over every address the name resolves to (a headless
		// Service), so forwarders spread over aggregator replicas; rotating,
		// so that each forwarder's successive streams visit every replica.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+BalancerName+`":{}}]}`),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxMessageBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("aggregator client for %s: %w", target, err)
	}
	return conn, nil
}

// Drain waits up to grace for the batches sent to be acknowledged: what is
// still unacknowledged then is read and sent again after a restart.
func (s *Sender) Drain(grace time.Duration) {
	s.log.Info("reading stopped; waiting for in-flight batches", "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		s.log.Warn("shutdown grace ran out; unacknowledged records will be sent again after restart", "err", err)
	}
}
