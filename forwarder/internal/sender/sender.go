// Package sender streams batches of records to an aggregator and hands back
// the batches the aggregator acknowledged as durable.
//
// Every batch stays in memory until it is acknowledged. The bytes they hold
// form the window (Config.MaxInflightBytes): Submit blocks while the window is
// full, which stops the reader, so memory stays bounded and the files on disk
// become the buffer. When a stream breaks, the sender opens a new one (to any
// replica behind the target) and sends every unacknowledged batch again, in
// order; records carry their identity, so resends are deduplicated downstream.
package sender

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// ProtocolVersion is the version of the protocol in proto/podlogs/v1.
const ProtocolVersion = 1

// Config says where and how to send.
type Config struct {
	NodeName         string
	Version          string
	MaxInflightBytes int
	// MaxMessageBytes is the largest message this forwarder sends
	// (--max-message-bytes); checked against the limit each aggregator
	// announces.
	MaxMessageBytes int
	// BackoffMin and BackoffMax bound the wait before a reconnect
	// (defaults 200 ms and 10 s): a refused forwarder retries at most
	// every 10 s.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ErrorHint, if set, says what the operator should fix for the error
	// that ended a stream ("" when nothing specific), e.g. a refused TLS
	// certificate; such errors are logged at error level with the fix.
	ErrorHint func(error) string
}

// AckFunc receives each acknowledged batch, in order. It runs under the
// sender's lock: keep it short (a checkpoint update).
type AckFunc func(*podlogsv1.Batch)

type pending struct {
	batch *podlogsv1.Batch
	size  int
	seq   uint64 // on the current stream; 0 = not sent on it yet
}

// Sender owns the connection and the window.
type Sender struct {
	cfg     Config
	client  podlogsv1.IngestServiceClient
	onAck   AckFunc
	log     *slog.Logger
	metrics *metrics

	mu            sync.Mutex // guards the fields below
	queue         []*pending // unacknowledged batches, oldest first
	sent          int        // queue[:sent] were sent on the current stream
	nextSeq       uint64
	inflightBytes int
	space         chan struct{} // closed and replaced when the window frees up
	connected     bool

	wake chan struct{} // a batch was queued; capacity 1

	// Owned by Run's goroutine.
	limitsWarned map[uint32]bool // aggregator message limits below ours, logged
}

// New returns a sender over conn. conn should be created with a round-robin
// balancer over a dns:/// target so that reconnects spread over replicas.
func New(cfg Config, conn grpc.ClientConnInterface, onAck AckFunc, reg prometheus.Registerer, log *slog.Logger) *Sender {
	cfg.BackoffMin = cmp.Or(cfg.BackoffMin, 200*time.Millisecond)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, 10*time.Second)
	return &Sender{
		cfg:     cfg,
		client:  podlogsv1.NewIngestServiceClient(conn),
		onAck:   onAck,
		log:     log,
		metrics: newMetrics(reg),
		space:   make(chan struct{}),
		wake:    make(chan struct{}, 1),

		limitsWarned: map[uint32]bool{},
	}
}

// Size is the number of record data bytes in a batch.
func Size(b *podlogsv1.Batch) int {
	n := 0
	for _, r := range b.GetRecords() {
		n += len(r.GetData())
	}
	return n
}

// TrySubmit queues a batch that holds size bytes of memory for sending if
// the window has room for it (a batch larger than the whole window goes when
// nothing else is in flight). When it returns false, Space tells when to
// try again.
func (s *Sender) TrySubmit(b *podlogsv1.Batch, size int) bool {
	s.mu.Lock()
	if s.inflightBytes != 0 && s.inflightBytes+size > s.cfg.MaxInflightBytes {
		s.mu.Unlock()
		s.metrics.windowFull.Inc()
		return false
	}
	s.queue = append(s.queue, &pending{batch: b, size: size})
	s.inflightBytes += size
	s.metrics.inflightBytes.Set(float64(s.inflightBytes))
	s.metrics.inflightBatches.Set(float64(len(s.queue)))
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// Space returns a channel closed when acknowledgements free part of the
// window.
func (s *Sender) Space() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.space
}

// Submit queues a batch, waiting while the window is full.
func (s *Sender) Submit(ctx context.Context, b *podlogsv1.Batch, size int) error {
	for {
		space := s.Space()
		if s.TrySubmit(b, size) {
			return nil
		}
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Flush waits until every submitted batch is acknowledged, or ctx is done.
func (s *Sender) Flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		n, space := len(s.queue), s.space
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("%d batches still unacknowledged: %w", n, ctx.Err())
		}
	}
}

// Connected tells whether a stream is established (for /readyz).
func (s *Sender) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// Run keeps a stream open until ctx is done, reconnecting with backoff.
func (s *Sender) Run(ctx context.Context) error {
	backoff := s.cfg.BackoffMin
	for {
		var opened time.Time
		err := s.stream(ctx, &opened)
		if ctx.Err() != nil {
			return nil
		}
		s.metrics.reconnects.Inc()
		healthy := !opened.IsZero() && time.Since(opened) >= healthyStream
		if healthy {
			// The stream was up and working: it ended because the
			// aggregator aged it or is shutting down, which is routine and
			// must not slow the move to another replica.
			backoff = s.cfg.BackoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1) // jitter spreads reconnects of many nodes
		if hint := s.hint(err); hint != "" {
			s.log.Error("aggregator connection refused; fix the configuration", "err", err, "fix", hint, "retry_in", wait)
		} else if healthy && status.Code(err) == codes.Unavailable {
			s.log.Info("aggregator ended the stream; reconnecting", "reason", status.Convert(err).Message(), "retry_in", wait)
		} else {
			s.log.Warn("stream to aggregator ended; reconnecting", "err", err, "retry_in", wait)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

// healthyStream is how long a stream must have been open for its end to
// count as routine (ageing, scale-in) rather than as a failing peer.
const healthyStream = time.Second

func (s *Sender) hint(err error) string {
	if s.cfg.ErrorHint == nil || err == nil {
		return ""
	}
	return s.cfg.ErrorHint(err)
}

var errProtocol = errors.New("protocol violation by aggregator")

// stream runs one stream; *opened is set when the aggregator welcomed it.
func (s *Sender) stream(ctx context.Context, opened *time.Time) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.Stream(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	hello := &podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Hello{Hello: &podlogsv1.Hello{
		ProtocolVersion: ProtocolVersion, NodeName: s.cfg.NodeName, ForwarderVersion: s.cfg.Version,
	}}}
	if err := stream.Send(hello); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("receive welcome: %w", err)
	}
	welcome := resp.GetWelcome()
	if welcome == nil {
		return fmt.Errorf("%w: first message is not a welcome", errProtocol)
	}
	*opened = time.Now()
	s.log.Info("stream to aggregator open", "aggregator", welcome.GetAggregatorId())
	s.checkLimit(welcome)

	s.mu.Lock()
	s.sent, s.nextSeq, s.connected = 0, 1, true
	for _, p := range s.queue {
		p.seq = 0
	}
	resend := len(s.queue)
	s.mu.Unlock()
	if resend > 0 {
		s.metrics.resentBatches.Add(float64(resend))
		s.log.Info("resending unacknowledged batches", "batches", resend)
	}
	defer func() {
		s.mu.Lock()
		s.connected = false
		s.mu.Unlock()
	}()

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- s.sendLoop(ctx, stream) }()
	go func() { defer wg.Done(); errc <- s.recvLoop(stream) }()
	err = <-errc
	cancel()
	wg.Wait()
	return err
}

// checkLimit compares the largest message the aggregator accepts with ours.
// A batch above its limit is refused (RESOURCE_EXHAUSTED) and sent again
// forever, so this node's logs stop: that is logged once per limit announced,
// not at every reconnect, and shown by a gauge while it lasts.
func (s *Sender) checkLimit(w *podlogsv1.Welcome) {
	limit := w.GetMaxMessageBytes()
	if limit == 0 || s.cfg.MaxMessageBytes <= 0 || int64(limit) >= int64(s.cfg.MaxMessageBytes) {
		s.metrics.limitMismatch.Set(0)
		return
	}
	s.metrics.limitMismatch.Set(1)
	if s.limitsWarned[limit] {
		return
	}
	s.limitsWarned[limit] = true
	s.log.Error("aggregator accepts smaller messages than this forwarder may send; a batch over its limit is refused, sent again forever, and this node's logs stop",
		"aggregator", w.GetAggregatorId(), "aggregator_max_message_bytes", limit, "max_message_bytes", s.cfg.MaxMessageBytes,
		"fix", fmt.Sprintf("lower the forwarder's --max-message-bytes to at most %d, with --batch-bytes plus --max-record-bytes below it, or raise the aggregator's --max-message-bytes to at least %d", limit, s.cfg.MaxMessageBytes))
}

func (s *Sender) sendLoop(ctx context.Context, stream grpc.BidiStreamingClient[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) error {
	for {
		s.mu.Lock()
		for s.sent < len(s.queue) {
			p := s.queue[s.sent]
			p.seq = s.nextSeq
			s.nextSeq++
			s.sent++
			s.mu.Unlock()

			p.batch.Sequence = p.seq
			if err := stream.Send(&podlogsv1.StreamRequest{Message: &podlogsv1.StreamRequest_Batch{Batch: p.batch}}); err != nil {
				if errors.Is(err, io.EOF) {
					// The server ended the stream; Recv has the reason.
					<-ctx.Done()
					return nil
				}
				return fmt.Errorf("send batch: %w", err)
			}
			s.metrics.batchesSent.Inc()
			s.metrics.recordsSent.Add(float64(len(p.batch.GetRecords())))
			s.metrics.bytesSent.Add(float64(p.size))
			s.mu.Lock()
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Sender) recvLoop(stream grpc.BidiStreamingClient[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		ack := resp.GetAck()
		if ack == nil {
			return fmt.Errorf("%w: unexpected %T", errProtocol, resp.GetMessage())
		}
		if err := s.ack(ack.GetThroughSequence()); err != nil {
			return err
		}
	}
}

func (s *Sender) ack(through uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if through >= s.nextSeq {
		return fmt.Errorf("%w: ack through %d, but only %d batches were sent", errProtocol, through, s.nextSeq-1)
	}
	popped := false
	for len(s.queue) > 0 && s.queue[0].seq != 0 && s.queue[0].seq <= through {
		p := s.queue[0]
		// onAck runs before the batch leaves the queue, so that once Flush
		// sees an empty queue every acknowledgement has been recorded.
		s.onAck(p.batch)
		s.metrics.recordsAcked.Add(float64(len(p.batch.GetRecords())))
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.sent--
		s.inflightBytes -= p.size
		popped = true
	}
	s.metrics.inflightBytes.Set(float64(s.inflightBytes))
	s.metrics.inflightBatches.Set(float64(len(s.queue)))
	if popped {
		close(s.space)
		s.space = make(chan struct{})
	}
	return nil
}

type metrics struct {
	batchesSent, recordsSent, bytesSent, recordsAcked prometheus.Counter
	resentBatches, reconnects, windowFull             prometheus.Counter
	inflightBytes, inflightBatches, limitMismatch     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "podlogs", Subsystem: "forwarder", Name: name, Help: help})
	}
	return &metrics{
		batchesSent:   c("batches_sent_total", "Batches sent to an aggregator, resends included."),
		recordsSent:   c("records_sent_total", "Records sent to an aggregator, resends included."),
		bytesSent:     c("record_bytes_sent_total", "Record bytes sent to an aggregator, resends included."),
		recordsAcked:  c("records_acked_total", "Records an aggregator acknowledged as durable."),
		resentBatches: c("batches_resent_total", "Unacknowledged batches sent again on a new stream."),
		reconnects:    c("reconnects_total", "Streams to an aggregator that ended and were opened again."),
		windowFull:    c("window_full_total", "Times a batch waited because the window of unacknowledged batches was full."),
		inflightBytes: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "podlogs", Subsystem: "forwarder", Name: "inflight_bytes",
			Help: "Memory held by batches sent or queued but not yet acknowledged.",
		}),
		inflightBatches: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "podlogs", Subsystem: "forwarder", Name: "inflight_batches",
			Help: "Batches sent or queued but not yet acknowledged.",
		}),
		limitMismatch: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "podlogs", Subsystem: "forwarder", Name: "message_limit_above_aggregator",
			Help: "1 while the aggregator of the last stream announced a smaller --max-message-bytes than this forwarder's: batches above it are refused.",
		}),
	}
}
