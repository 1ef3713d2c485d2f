package reader

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/podlogs/podlogs/forwarder/internal/tail"
	"github.com/podlogs/podlogs/internal/cri"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// builder packs records into one batch. Record data is copied into arenas
// that start small and double, so the per-line cost is a slice header, not an
// allocation, and a batch of a few lines does not pin a large buffer.
type builder struct {
	b       *podlogsv1.Batch
	sources map[*tail.File]uint32
	arena   []byte
	records []podlogsv1.Record // structs handed out in chunks, one allocation per chunk
	bytes   int                // record data
	mem     int                // what the batch holds in memory: arenas and structs
	started time.Time
}

// Approximate heap cost of a record's and a source's structs; the window
// counts them so that many small batches cannot hide behind few data bytes.
const (
	recordOverhead = 96
	sourceOverhead = 256
	minArena       = 4 << 10
	maxArena       = 64 << 10
	recordChunk    = 128
)

func (bb *builder) add(t *tail.File, rec cri.Record) {
	if bb.b == nil {
		bb.b = &podlogsv1.Batch{Records: make([]*podlogsv1.Record, 0, 64)}
		bb.sources = map[*tail.File]uint32{}
		bb.started = time.Now()
	}
	idx, ok := bb.sources[t]
	if !ok {
		idx = uint32(len(bb.b.Sources))
		k := t.Key()
		bb.b.Sources = append(bb.b.Sources, &podlogsv1.Source{
			Path:     t.Rel,
			Identity: &podlogsv1.FileIdentity{Device: k.Device, Inode: k.Inode, Fingerprint: k.Fingerprint},
			Format:   protoFormat(t.Format()),
		})
		bb.sources[t] = idx
		bb.mem += sourceOverhead + len(t.Rel)
	}
	if cap(bb.arena)-len(bb.arena) < len(rec.Data) {
		// Start a new arena, twice the last one; earlier records keep
		// pointing into the old one.
		size := max(minArena, min(2*cap(bb.arena), maxArena), len(rec.Data))
		bb.arena = make([]byte, 0, size)
		bb.mem += size
	}
	start := len(bb.arena)
	bb.arena = append(bb.arena, rec.Data...)
	if len(bb.records) == 0 {
		bb.records = make([]podlogsv1.Record, recordChunk)
	}
	r := &bb.records[0]
	bb.records = bb.records[1:]
	r.SourceIndex = idx
	r.Offset = rec.Offset
	r.NextOffset = rec.NextOffset
	r.Data = bb.arena[start:len(bb.arena):len(bb.arena)]
	r.Truncated = rec.Truncated
	bb.b.Records = append(bb.b.Records, r)
	bb.bytes += len(rec.Data)
	bb.mem += recordOverhead
}

func (bb *builder) full(cfg Config) bool {
	return bb.b != nil && (bb.bytes >= cfg.BatchBytes || len(bb.b.Records) >= cfg.BatchRecords)
}

func (bb *builder) due(cfg Config, now time.Time) bool {
	return bb.full(cfg) || (bb.b != nil && now.Sub(bb.started) >= cfg.BatchLinger)
}

func (bb *builder) take() *podlogsv1.Batch {
	b := bb.b
	*bb = builder{}
	return b
}

func protoFormat(f cri.Format) podlogsv1.Format {
	switch f {
	case cri.FormatCRI:
		return podlogsv1.Format_FORMAT_CRI
	case cri.FormatDocker:
		return podlogsv1.Format_FORMAT_DOCKER
	}
	return podlogsv1.Format_FORMAT_UNSPECIFIED
}

type metrics struct {
	bytesRead, recordsRead, rotations, truncations, filesOpened prometheus.Counter
	watchOverflows, recovered                                   prometheus.Counter
	openFiles, ackLag, ackLagMax                                prometheus.Gauge
	lostBytes, unreadablePaths                                  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "podlogs", Subsystem: "forwarder", Name: name, Help: help}
	}
	c := func(name, help string) prometheus.Counter { return f.NewCounter(opts(name, help)) }
	return &metrics{
		bytesRead:      c("bytes_read_total", "Bytes read from log files."),
		recordsRead:    c("records_read_total", "Records framed from log files and handed to the sender."),
		rotations:      c("rotations_total", "Log files found renamed by rotation and followed."),
		truncations:    c("truncations_total", "Log files found truncated under the reader (copytruncate)."),
		filesOpened:    c("files_opened_total", "Log files opened."),
		watchOverflows: c("watch_errors_total", "Filesystem notification errors (queue overflows); every file is read after one."),
		recovered:      c("compressed_files_read_total", "Files rotated and compressed while the forwarder was down, read on from their compressed copy."),
		openFiles: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "podlogs", Subsystem: "forwarder", Name: "open_files", Help: "Log files being followed.",
		}),
		ackLag: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "podlogs", Subsystem: "forwarder", Name: "ack_lag_bytes",
			Help: "Bytes written to the followed files and not yet acknowledged, summed over files (at the last scan).",
		}),
		ackLagMax: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "podlogs", Subsystem: "forwarder", Name: "ack_lag_max_bytes",
			Help: "The largest per-file count of written and not yet acknowledged bytes (at the last scan).",
		}),
		lostBytes: f.NewCounterVec(opts("lost_bytes_total", "Bytes that could not be delivered, by reason."), []string{"reason"}),
		unreadablePaths: f.NewCounterVec(opts("unreadable_paths_total",
			"Paths under the pods root that could not be read or watched (a symbolic link loop, no permission), counted once per path while it fails, by reason."),
			[]string{"reason"}),
	}
}
