package buffer

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Monitor polls the stream's state and the writers' consumer's state into
// gauges: how much waits for OpenSearch (stream bytes and messages against
// their limit), and the consumer's lag (pending, waiting for an ack,
// redelivered). Every replica reports the same shared numbers; aggregate
// them with max, not sum.
type Monitor struct {
	js       jetstream.JetStream
	stream   string
	consumer string
	interval time.Duration
	log      *slog.Logger

	streamMsgs, streamBytes, streamMaxBytes      prometheus.Gauge
	pending, ackPending, redelivered, lastPolled prometheus.Gauge
}

// NewMonitor returns a monitor of stream and its durable consumer, polling
// every interval.
func NewMonitor(js jetstream.JetStream, stream, consumer string, interval time.Duration, reg prometheus.Registerer, log *slog.Logger) *Monitor {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "podlogs_aggregator_" + name, Help: help})
	}
	m := &Monitor{
		js: js, stream: stream, consumer: consumer, interval: interval, log: log,
		streamMsgs:     g("stream_messages", "Messages in the JetStream stream (each a batch's documents of one namespace, waiting for OpenSearch or not yet acked)."),
		streamBytes:    g("stream_bytes", "Bytes in the JetStream stream."),
		streamMaxBytes: g("stream_max_bytes", "The stream's byte limit; at it, publishes are refused and forwarders slow down."),
		pending:        g("consumer_pending", "Messages in the stream not yet delivered to a bulk writer (the writers' lag)."),
		ackPending:     g("consumer_ack_pending", "Messages delivered to bulk writers and not yet acked."),
		redelivered:    g("consumer_redelivered", "Messages delivered more than once and not yet acked (retries, crashed replicas)."),
		lastPolled:     g("jetstream_last_poll_timestamp_seconds", "When the stream and consumer state were last read."),
	}
	reg.MustRegister(m.streamMsgs, m.streamBytes, m.streamMaxBytes, m.pending, m.ackPending, m.redelivered, m.lastPolled)
	return m
}

// Run polls until ctx is done. Failures (NATS restarting) are logged at
// debug level and the gauges keep their last values; lastPolled tells.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Monitor) poll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := m.js.Stream(ctx, m.stream)
	if err != nil {
		m.log.Debug("stream info", "err", err)
		return
	}
	si, err := st.Info(ctx)
	if err != nil {
		m.log.Debug("stream info", "err", err)
		return
	}
	m.streamMsgs.Set(float64(si.State.Msgs))
	m.streamBytes.Set(float64(si.State.Bytes))
	m.streamMaxBytes.Set(float64(si.Config.MaxBytes))
	c, err := st.Consumer(ctx, m.consumer)
	if err != nil {
		m.log.Debug("consumer info", "err", err)
		return
	}
	ci, err := c.Info(ctx)
	if err != nil {
		m.log.Debug("consumer info", "err", err)
		return
	}
	m.pending.Set(float64(ci.NumPending))
	m.ackPending.Set(float64(ci.NumAckPending))
	m.redelivered.Set(float64(ci.NumRedelivered))
	m.lastPolled.SetToCurrentTime()
}
