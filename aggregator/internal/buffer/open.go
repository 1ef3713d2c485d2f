package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podlogs/podlogs/internal/docmsg"
)

// Config says which NATS to use and what the aggregator puts in it.
type Config struct {
	// URL of the NATS cluster; empty starts an embedded server storing
	// under StoreDir, listening on EmbeddedListen too if that is set.
	URL            string
	StoreDir       string
	EmbeddedListen string
	// ClientName names the connection in the server's monitoring.
	ClientName        string
	Stream            StreamConfig
	Consumer          jetstream.ConsumerConfig
	PublishMaxPending int
	// LargestMessage is the most data one message carries (the larger of
	// the message limit and the largest document with its entry): the
	// server's max_payload must take it and its headers.
	LargestMessage int
}

// Buffer is an open connection to JetStream with the stream and the
// writers' consumer in place.
type Buffer struct {
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Consumer jetstream.Consumer
	embedded *server.Server
	log      *slog.Logger
}

// PayloadError says that the NATS server's max_payload is below what the
// aggregator's limits need: a message of the largest document would be
// refused, every time.
type PayloadError struct {
	MaxPayload, Need int64
}

func (e *PayloadError) Error() string {
	return fmt.Sprintf("the NATS server's max_payload is %d bytes, and the largest message podlogs may publish needs %d", e.MaxPayload, e.Need)
}

// Open connects to NATS (starting the embedded server if cfg.URL is
// empty), checks that the server takes the largest message, and creates or
// updates the stream and the consumer. Close it when done.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Buffer, error) {
	need := int64(cfg.LargestMessage + docmsg.HeaderBytes)
	b := &Buffer{log: log}
	opts := []nats.Option{
		nats.Name(cfg.ClientName),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from NATS; publishing waits until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			if mp := nc.MaxPayload(); mp < need {
				log.Error("the NATS server now connected takes smaller messages than podlogs needs; the largest ones are dead-lettered",
					"max_payload", mp, "need", need)
			}
		}),
	}
	if cfg.URL == "" {
		if err := os.MkdirAll(cfg.StoreDir, 0o755); err != nil {
			return nil, fmt.Errorf("create the embedded JetStream store: %w", err)
		}
		srv, err := StartEmbedded(cfg.StoreDir, cfg.EmbeddedListen, int32(max(need, 1<<20)), log)
		if err != nil {
			return nil, err
		}
		b.embedded = srv
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to NATS %s: %w", cfg.URL, err)
	}
	b.Conn = nc
	if mp := nc.MaxPayload(); mp < need {
		b.Close()
		return nil, &PayloadError{MaxPayload: mp, Need: need}
	}
	b.JS, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.PublishMaxPending),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
	)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("JetStream context: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := EnsureStream(setupCtx, b.JS, cfg.Stream); err != nil {
		b.Close()
		return nil, err
	}
	b.Consumer, err = b.JS.CreateOrUpdateConsumer(setupCtx, cfg.Stream.Name, cfg.Consumer)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("create or update consumer %s: %w", cfg.Consumer.Durable, err)
	}
	return b, nil
}

// Healthy reports whether the connection is up (for /readyz).
func (b *Buffer) Healthy() error {
	if !b.Conn.IsConnected() {
		return errors.New("not connected to NATS")
	}
	return nil
}

// Close drains the connection (publishes in flight are sent, acks of the
// writers' last messages delivered), waiting at most 10 s, then stops the
// embedded server.
func (b *Buffer) Close() {
	if nc := b.Conn; nc != nil {
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := nc.Drain(); err != nil {
			b.log.Warn("NATS drain failed", "err", err)
			nc.Close()
		} else {
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				b.log.Warn("NATS drain did not finish in 10s; closing the connection")
				nc.Close()
			}
		}
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}
