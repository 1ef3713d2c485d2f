// Package ingest is the aggregator's gRPC server: it takes streams of record
// batches from forwarders, turns every record into a document, publishes the
// documents to the JetStream buffer and acknowledges a batch only once every
// one of its documents is stored there.
//
// A stream that misbehaves (no Hello, a sequence out of order, a record naming
// a missing source, a message over the size limit) is ended with a status that
// says what was wrong; the server goes on with every other stream.
package ingest

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

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podlogs/podlogs/aggregator/internal/accounting"
	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/aggregator/internal/metacache"
	"github.com/podlogs/podlogs/internal/cri"
	"github.com/podlogs/podlogs/internal/docmsg"
	"github.com/podlogs/podlogs/internal/podpath"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// DefaultMessageBytes is the default Config.MessageBytes: a few hundred
// documents, a quarter of NATS's default max_payload.
const DefaultMessageBytes = 256 << 10

// DefaultMaxDocumentBytes is the default Config.MaxDocumentBytes: the
// largest message it makes fits NATS's default max_payload (1 MiB).
const DefaultMaxDocumentBytes = 1<<20 - 4<<10

// LargestMessage is the most data a message of the server's carries: a
// message is closed before it passes messageBytes, unless it holds a
// single document, of at most maxDocumentBytes.
func LargestMessage(messageBytes, maxDocumentBytes int) int {
	return max(messageBytes, docmsg.EntrySize(document.IDLen, maxDocumentBytes))
}

// ProtocolVersion is the version of proto/podlogs/v1 this server speaks.
const ProtocolVersion = 1

// Config tunes the server.
type Config struct {
	AggregatorID    string
	MaxMessageBytes int
	// ReadAheadBatches is how many batches of one stream are received while
	// an earlier one is being published (default 4).
	ReadAheadBatches int
	SubjectPrefix    string
	// MessageBytes bounds a JetStream message: a batch's documents of one
	// namespace go in one message, or in several of at most this size (a
	// larger document goes alone). 0 is DefaultMessageBytes.
	MessageBytes int
	// MaxDocumentBytes bounds a document: a longer one has its log cut
	// (document.AppendLimited). With MessageBytes it sets the largest
	// message (LargestMessage), which the NATS server's max_payload must
	// take. 0 is DefaultMaxDocumentBytes.
	MaxDocumentBytes int
	// DataFields is document.Meta.DataFields for lines whose pod has no
	// metadata (no API server, or a miss): 0 leaves JSON lines as text.
	DataFields int
	// MaxStreamAge ends a stream, gracefully, after about this long (±10%,
	// so that streams of forwarders started together do not move together):
	// the forwarder reconnects and its balancer may pick another replica.
	// gRPC's MaxConnectionAge alone cannot do this for a stream that never
	// ends: it stops new streams on the connection and, after its grace,
	// cuts the old ones mid-batch. 0 keeps streams open.
	MaxStreamAge time.Duration
	// Accounting counts each pod's lines received, excluded and published;
	// nil counts nothing.
	Accounting *accounting.Ledger
}

// Enricher finds a container's metadata (metacache.Cache); it may wait
// briefly, bounded by ctx.
type Enricher interface {
	Lookup(ctx context.Context, ref *podpath.Ref) metacache.Result
}

// Publisher stores messages durably; it returns nil once all are stored.
type Publisher interface {
	Publish(ctx context.Context, msgs []*nats.Msg) error
}

// Server implements podlogsv1.IngestServiceServer.
type Server struct {
	podlogsv1.UnimplementedIngestServiceServer

	cfg     Config
	pub     Publisher
	enrich  Enricher // nil: metadata from the path alone
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	draining  chan struct{}
	drainOnce sync.Once
	receivers sync.WaitGroup // one receive goroutine per stream
}

// New returns a server publishing through pub. enrich may be nil: documents
// then carry what the log file's path says.
func New(cfg Config, pub Publisher, enrich Enricher, reg prometheus.Registerer, log *slog.Logger) *Server {
	cfg.ReadAheadBatches = cmp.Or(cfg.ReadAheadBatches, 4)
	return &Server{
		cfg:      cfg,
		pub:      pub,
		enrich:   enrich,
		log:      log,
		metrics:  newMetrics(reg),
		now:      time.Now,
		draining: make(chan struct{}),
	}
}

// ServerOptions are the gRPC options the server needs (message size limits).
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxMessageBytes),
		grpc.MaxSendMsgSize(1 << 20),
	}
}

// Drain makes every stream stop taking batches: each finishes the batch it
// is publishing, acknowledges it, and ends with UNAVAILABLE so its forwarder
// resends the rest elsewhere.
func (s *Server) Drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// Wait waits for the receive goroutines of ended streams.
func (s *Server) Wait() { s.receivers.Wait() }

var (
	errDraining = status.Error(codes.Unavailable, "aggregator is shutting down; resend unacknowledged batches to another replica")
	errAged     = status.Error(codes.Unavailable, "stream reached its maximum age; reconnect, to any replica, and resend unacknowledged batches")
)

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// Stream serves one forwarder.
func (s *Server) Stream(stream grpc.BidiStreamingServer[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) error {
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	err := s.serve(stream)
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		s.metrics.invalid.Inc()
		s.log.Warn("ended a stream that sent an invalid message", "err", st.Message())
	}
	return err
}

func (s *Server) serve(stream grpc.BidiStreamingServer[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) error {
	ctx := stream.Context()
	hello, err := s.handshake(stream)
	if err != nil {
		return err
	}
	log := s.log.With("node", hello.GetNodeName())
	log.Debug("stream open", "forwarder_version", hello.GetForwarderVersion())
	batches, recvErr := s.receive(ctx, stream)

	var aged <-chan time.Time
	if a := s.cfg.MaxStreamAge; a > 0 {
		t := time.NewTimer(a - a/10 + rand.N(a/5+1))
		defer t.Stop()
		aged = t.C
	}
	conv := converter{node: hello.GetNodeName(), subjectPrefix: s.cfg.SubjectPrefix, enrich: s.enrich, dataFields: s.cfg.DataFields,
		messageBytes: s.cfg.MessageBytes, maxDocBytes: s.cfg.MaxDocumentBytes}
	next := uint64(1)
	for {
		select {
		case <-s.draining:
			return errDraining
		case <-aged:
			// Like a drain: the batch being published was acknowledged in
			// the previous turn; batches read ahead are resent elsewhere.
			s.metrics.aged.Inc()
			return errAged
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case b, ok := <-batches:
			if !ok {
				err := <-recvErr
				if errors.Is(err, io.EOF) {
					return nil // the forwarder closed its side after its last batch
				}
				return err
			}
			if b.GetSequence() != next {
				return invalid("batch sequence %d, want %d", b.GetSequence(), next)
			}
			msgs, err := conv.convert(ctx, b, s.now(), s.metrics)
			if err != nil {
				return invalid("batch %d: %v", next, err)
			}
			conv.account(s.cfg.Accounting, false)
			if err := s.publish(ctx, msgs, log); err != nil {
				if ctx.Err() != nil {
					return status.FromContextError(ctx.Err()).Err()
				}
				return status.Errorf(codes.Unavailable, "buffer: %v", err)
			}
			// JetStream acknowledged every document: the forwarder's ack
			// follows.
			conv.account(s.cfg.Accounting, true)
			if err := stream.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Ack{Ack: &podlogsv1.Ack{ThroughSequence: next}}}); err != nil {
				return err
			}
			s.metrics.batches.Inc()
			s.metrics.records.Add(float64(len(b.GetRecords())))
			next++
		}
	}
}

// handshake reads the forwarder's hello and answers with the welcome.
func (s *Server) handshake(stream grpc.BidiStreamingServer[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) (*podlogsv1.Hello, error) {
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	hello := first.GetHello()
	switch {
	case hello == nil:
		return nil, invalid("the first message of a stream must be a hello")
	case hello.GetProtocolVersion() != ProtocolVersion:
		return nil, invalid("protocol version %d is not supported; this aggregator speaks %d", hello.GetProtocolVersion(), ProtocolVersion)
	case hello.GetNodeName() == "":
		return nil, invalid("hello has no node name")
	}
	if err := stream.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Welcome{Welcome: &podlogsv1.Welcome{
		ProtocolVersion: ProtocolVersion, AggregatorId: s.cfg.AggregatorID, MaxMessageBytes: uint32(s.cfg.MaxMessageBytes),
	}}}); err != nil {
		return nil, err
	}
	return hello, nil
}

// receive reads the stream's batches ahead of their publishing, at most
// ReadAheadBatches; the channel closes when the stream ends, and recvErr
// then says why. The goroutine is the server's (Wait).
func (s *Server) receive(ctx context.Context, stream grpc.BidiStreamingServer[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) (<-chan *podlogsv1.Batch, <-chan error) {
	batches := make(chan *podlogsv1.Batch, s.cfg.ReadAheadBatches)
	recvErr := make(chan error, 1)
	s.receivers.Add(1)
	go func() {
		defer s.receivers.Done()
		defer close(batches)
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			b := req.GetBatch()
			if b == nil {
				recvErr <- invalid("expected a batch, got %T", req.GetMessage())
				return
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return batches, recvErr
}

// publish stores msgs. A message the buffer refuses for good (too large for
// it) would be refused at every try and hold its stream's acknowledgements
// forever: its documents go to the dead-letter index instead, in a message
// that keeps each one's id and first bytes. If the buffer refuses that too,
// the documents are dropped, counted and logged: nothing is retried forever.
func (s *Server) publish(ctx context.Context, msgs []*nats.Msg, log *slog.Logger) error {
	err := s.pub.Publish(ctx, msgs)
	var refused *buffer.RefusedError
	if !errors.As(err, &refused) {
		return err
	}
	letters := make([]*nats.Msg, 0, len(refused.Msgs))
	for _, m := range refused.Msgs {
		docs := max(docmsg.Count(m.Header), 1)
		keep := max(deadLetterKeepMin, min(deadLetterKeepMax, cmp.Or(s.cfg.MessageBytes, DefaultMessageBytes)/docs-64))
		dl, err := docmsg.DeadLetter(m, "the buffer refused the message ("+refused.Reason+"): "+refused.Err.Error(), keep)
		if err != nil {
			panic("BUG: a message ingest wrote does not read back: " + err.Error())
		}
		letters = append(letters, dl)
	}
	err = s.pub.Publish(ctx, letters)
	if errors.As(err, &refused) {
		for _, m := range refused.Msgs {
			s.metrics.dropped.Add(float64(docmsg.Count(m.Header)))
		}
		log.Error("the buffer refused the dead letters of refused documents too; they are dropped",
			"messages", len(refused.Msgs), "err", refused.Err, "fix", "check the stream's max_msg_size and the server's max_payload")
		return nil
	}
	return err
}

// What a dead letter of a refused message keeps of each document.
const (
	deadLetterKeepMin = 1 << 10
	deadLetterKeepMax = 16 << 10
)

// converter turns batches into messages; it belongs to one stream and reuses
// its buffers from batch to batch.
type converter struct {
	node          string
	subjectPrefix string
	enrich        Enricher
	dataFields    int

	messageBytes int
	maxDocBytes  int

	parsed  []byte
	id      []byte
	msgs    []*nats.Msg // the current batch's messages
	groups  []group     // the current batch's subjects
	used    [][]byte    // buffers of msgs
	free    [][]byte    // buffers for the next messages
	sources []source
}

type source struct {
	meta         document.Meta
	containerDir string
	fingerprint  uint64
	format       cri.Format
	group        int  // of the converter's groups: this source's subject
	exclude      bool // the pod asked for its lines to be dropped
	records      int  // of this source in the batch
}

func (c *converter) convert(ctx context.Context, b *podlogsv1.Batch, now time.Time, m *metrics) ([]*nats.Msg, error) {
	c.recycle()
	c.messageBytes = cmp.Or(c.messageBytes, DefaultMessageBytes)
	c.maxDocBytes = cmp.Or(c.maxDocBytes, DefaultMaxDocumentBytes)
	if err := c.readSources(ctx, b.GetSources()); err != nil {
		return nil, err
	}
	// The batch's documents go into one message per subject (namespace), or
	// more where they pass MessageBytes. Their buffers are reused from batch
	// to batch (recycle): the previous batch is stored by now.
	for i, r := range b.GetRecords() {
		if int(r.GetSourceIndex()) >= len(c.sources) {
			return nil, fmt.Errorf("record %d names source %d of %d", i, r.GetSourceIndex(), len(c.sources))
		}
		if r.GetNextOffset() <= r.GetOffset() {
			return nil, fmt.Errorf("record %d: next offset %d is not past offset %d", i, r.GetNextOffset(), r.GetOffset())
		}
		src := &c.sources[r.GetSourceIndex()]
		src.records++
		if src.exclude {
			m.excluded.Inc()
			continue
		}
		c.add(src, r, now, m)
	}
	for i := range c.groups {
		if g := &c.groups[i]; g.open {
			c.close(g)
		}
	}
	return c.msgs, nil
}

// readSources reads the batch's sources: where each file's lines come
// from, and their pod's metadata.
func (c *converter) readSources(ctx context.Context, sources []*podlogsv1.Source) error {
	c.sources = c.sources[:0]
	for i, src := range sources {
		ref, err := podpath.Parse(src.GetPath())
		if err != nil {
			return fmt.Errorf("source %d: %w", i, err)
		}
		if src.GetIdentity() == nil {
			return fmt.Errorf("source %d (%s) has no identity", i, src.GetPath())
		}
		s := source{
			meta: document.Meta{
				PodName: ref.Pod, Namespace: ref.Namespace, PodID: ref.PodUID, ContainerName: ref.Container, Host: c.node,
				DataFields: c.dataFields,
			},
			containerDir: podpath.ContainerDir(src.GetPath()),
			fingerprint:  src.GetIdentity().GetFingerprint(),
			format:       criFormat(src.GetFormat()),
		}
		s.group = c.groupOf(c.subjectPrefix + "." + ref.Namespace)
		// Once per source per batch: the lookup is a map read, or a short
		// wait for a pod the cache has not seen yet.
		if c.enrich != nil {
			if r := c.enrich.Lookup(ctx, &ref); r.Pod != nil {
				s.meta.PodExtra, s.meta.ContainerExtra, s.meta.ImageExtra = r.Pod.Extra(), r.ContainerExtra, r.ImageExtra
				s.meta.DataFields = r.Pod.DataFields()
				s.exclude = r.Pod.Exclude()
			}
		}
		c.sources = append(c.sources, s)
	}
	return nil
}

// add writes the document of record r of src into its subject's message.
func (c *converter) add(src *source, r *podlogsv1.Record, now time.Time, m *metrics) {
	format := src.format
	if format == cri.FormatUnknown {
		format = cri.DetectFormat(r.GetData())
	}
	entry, parsed, err := cri.ParseRecord(format, r.GetData(), c.parsed)
	c.parsed = parsed
	line := document.Line{
		Time:          entry.Time,
		Stream:        entry.Stream.String(),
		Message:       entry.Message,
		Offset:        r.GetOffset(),
		Truncated:     r.GetTruncated(),
		OriginalBytes: r.GetNextOffset() - r.GetOffset(),
	}
	if err != nil {
		line.Malformed = true
		m.malformed.Inc()
	}
	if r.GetTruncated() {
		m.truncated.Inc()
	}
	c.id = document.AppendID(c.id[:0], src.containerDir, src.fingerprint, r.GetOffset())
	g := &c.groups[src.group]
	if !g.open {
		g.w.Reset(c.buffer(len(r.GetData())))
		g.open = true
	}
	doc, cut := document.AppendLimited(g.w.Begin(c.id), &src.meta, &line, now, c.maxDocBytes)
	g.w.End(doc)
	if cut {
		m.cut.Inc()
	}
	// A document's size is known once it is written: the one that takes a
	// message past the limit moves to the next message.
	if g.w.Len() > c.messageBytes && g.w.Docs() > 1 {
		moved := g.w.CutLast()
		c.close(g)
		g.w.Reset(c.buffer(len(moved)))
		g.w.AddEntry(moved)
		g.open = true
	}
}

// group builds the messages of one subject.
type group struct {
	subject string
	w       docmsg.Writer
	open    bool // w holds a message not yet in msgs
}

// groupOf returns the index of subject's group, adding one if needed; a
// batch names a few namespaces, so a scan beats a map.
func (c *converter) groupOf(subject string) int {
	for i := range c.groups {
		if c.groups[i].subject == subject {
			return i
		}
	}
	// A slot of an earlier batch keeps its writer's hash, not its message:
	// that message's buffer is free for others now.
	n := len(c.groups)
	if n < cap(c.groups) {
		c.groups = c.groups[:n+1]
		g := &c.groups[n]
		g.subject, g.open = subject, false
		g.w.Reset(nil)
	} else {
		c.groups = append(c.groups, group{subject: subject})
	}
	return n
}

// close ends g's message and adds it to msgs.
func (c *converter) close(g *group) {
	c.msgs = append(c.msgs, g.w.Msg(g.subject))
	c.used = append(c.used, g.w.Buffer())
	g.open = false
}

// buffer returns a free message buffer, or a new one sized for a message
// of records like this one.
func (c *converter) buffer(recordLen int) []byte {
	if n := len(c.free); n > 0 {
		b := c.free[n-1]
		c.free = c.free[:n-1]
		return b
	}
	return make([]byte, 0, min(c.messageBytes+64<<10, max(64<<10, 64*(2*recordLen+512))))
}

// recycle makes the buffers of the previous batch's messages free again
// and starts a new batch with no groups. A stream keeps what its last
// batch needed, no more: buffers left over from before are let go.
func (c *converter) recycle() {
	clear(c.free)
	c.free = c.free[:0]
	for _, b := range c.used {
		c.free = append(c.free, b[:0])
	}
	clear(c.used)
	c.used = c.used[:0]
	clear(c.msgs)
	c.msgs = c.msgs[:0]
	c.groups = c.groups[:0]
}

// account counts the batch's records per source: received (and excluded)
// once it is converted, published once JetStream stored it. One call per
// source, not per record; the pod's row is found by strings the source
// already holds.
func (c *converter) account(l *accounting.Ledger, published bool) {
	if l == nil {
		return
	}
	for i := range c.sources {
		src := &c.sources[i]
		ns, pod := src.meta.Namespace, src.meta.PodName
		switch {
		case published && !src.exclude:
			l.Add(ns, pod, accounting.Published, src.records)
		case !published:
			l.Add(ns, pod, accounting.Received, src.records)
			if src.exclude {
				l.Add(ns, pod, accounting.Excluded, src.records)
			}
		}
	}
}

func criFormat(f podlogsv1.Format) cri.Format {
	switch f {
	case podlogsv1.Format_FORMAT_CRI:
		return cri.FormatCRI
	case podlogsv1.Format_FORMAT_DOCKER:
		return cri.FormatDocker
	}
	return cri.FormatUnknown
}

type metrics struct {
	streams                                         prometheus.Gauge
	batches, records, malformed, truncated, invalid prometheus.Counter
	excluded, aged, cut, dropped                    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Name: "podlogs_aggregator_" + name, Help: help})
		reg.MustRegister(m)
		return m
	}
	m := &metrics{
		streams:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "podlogs_aggregator_streams", Help: "Forwarder streams open."}),
		batches:   c("batches_acked_total", "Batches stored in the buffer and acknowledged to forwarders."),
		records:   c("records_acked_total", "Records stored in the buffer and acknowledged to forwarders."),
		malformed: c("records_malformed_total", "Records not in their runtime's format, kept raw and flagged."),
		truncated: c("records_truncated_total", "Records cut by the forwarder at its maximum record size."),
		invalid:   c("streams_invalid_total", "Streams ended because a forwarder sent an invalid message."),
		excluded:  c("records_excluded_total", "Records dropped on purpose: their pod is annotated podlogs.io/exclude: \"true\"."),
		aged:      c("streams_aged_total", "Streams ended at their maximum age so that forwarders rebalance over replicas."),
		cut:       c("documents_cut_total", "Documents whose log was cut to --max-document-bytes (flagged podlogs.truncated)."),
		dropped:   c("publish_dropped_total", "Documents dropped because the buffer refused their message and its dead letter for good (see the log)."),
	}
	reg.MustRegister(m.streams)
	return m
}
