// Package reader is the forwarder's read loop: it finds log files, reads what
// was appended to each in bounded turns (a busy pod cannot starve a quiet
// one), packs the records into batches and submits them to the sender, which
// blocks it while the window of unacknowledged bytes is full.
package reader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/forwarder/internal/finder"
	"github.com/podlogs/podlogs/forwarder/internal/tail"
	"github.com/podlogs/podlogs/internal/cri"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// Config tunes the loop.
type Config struct {
	PodsRoot       string
	ScanInterval   time.Duration // how often to look for new and gone files
	PollInterval   time.Duration // how often to look for appended data when idle
	ReadBytes      int           // at most this much from one file per turn
	BatchBytes     int           // flush a batch at this many record bytes
	BatchRecords   int           // ... or this many records
	BatchLinger    time.Duration // ... or when its oldest record waited this long
	MaxRecordBytes int
}

// Submitter takes a batch; it blocks while the window is full.
type Submitter interface {
	Submit(ctx context.Context, b *podlogsv1.Batch) error
}

// Reader owns the open files.
type Reader struct {
	cfg     Config
	store   *checkpoint.Store
	out     Submitter
	log     *slog.Logger
	metrics *metrics

	files   map[fileID]*openFile
	order   []fileID // round-robin order of reads
	readBuf []byte
	batch   builder
}

type fileID struct{ dev, ino uint64 }

type openFile struct {
	t    *tail.File
	seen bool // found by the last scan
}

// New returns a reader; it opens nothing until Run.
func New(cfg Config, store *checkpoint.Store, out Submitter, reg prometheus.Registerer, log *slog.Logger) *Reader {
	return &Reader{
		cfg:     cfg,
		store:   store,
		out:     out,
		log:     log,
		metrics: newMetrics(reg),
		files:   map[fileID]*openFile{},
		readBuf: make([]byte, cfg.ReadBytes),
	}
}

// Run reads until ctx is done, then submits what it holds and closes every
// file. Records it read but could not submit are simply read again after a
// restart: only acknowledged offsets are checkpointed.
func (r *Reader) Run(ctx context.Context) error {
	defer r.closeAll()
	scan := time.NewTicker(r.cfg.ScanInterval)
	defer scan.Stop()
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	if err := r.scan(); err != nil {
		r.log.Warn("scan of pods root failed; retrying", "err", err)
	}
	for {
		progress, err := r.readTurn(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if r.batch.due(r.cfg, time.Now()) {
			if err := r.flush(ctx); err != nil {
				return nil // ctx done while the window was full
			}
		}
		if progress {
			select {
			case <-ctx.Done():
				return nil
			case <-scan.C:
				r.scanAndLog()
			default:
			}
			continue
		}
		// Idle: hand over what we have, then wait.
		if r.batch.len() > 0 {
			if err := r.flush(ctx); err != nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-scan.C:
			r.scanAndLog()
		case <-poll.C:
		}
	}
}

func (r *Reader) scanAndLog() {
	if err := r.scan(); err != nil {
		r.log.Warn("scan of pods root failed; retrying", "err", err)
	}
}

// readTurn reads once from every file; progress tells whether any had data.
func (r *Reader) readTurn(ctx context.Context) (bool, error) {
	progress := false
	for _, id := range r.order {
		f := r.files[id]
		if f == nil {
			continue
		}
		n, err := f.t.Read(r.readBuf, func(rec cri.Record) { r.batch.add(f.t, rec) })
		if err != nil {
			r.log.Warn("read failed; closing the file", "file", f.t.Rel, "err", err)
			r.close(id)
			continue
		}
		r.metrics.bytesRead.Add(float64(n))
		if n > 0 {
			progress = true
		} else if err := r.atEOF(id, f); err != nil {
			return false, err
		}
		if r.batch.full(r.cfg) {
			if err := r.flush(ctx); err != nil {
				return false, err
			}
		}
	}
	return progress, nil
}

// atEOF handles a file with nothing new: it may have been truncated, or be
// gone and finished.
func (r *Reader) atEOF(id fileID, f *openFile) error {
	truncated, err := f.t.Truncated()
	if err != nil {
		r.log.Warn("stat failed; closing the file", "file", f.t.Rel, "err", err)
		r.close(id)
		return nil
	}
	if truncated {
		// copytruncate: what follows is a new file under the same inode; its
		// new first line gives it a new identity at the next scan.
		r.log.Info("file was truncated; reading it again from the start", "file", f.t.Rel)
		r.metrics.truncations.Inc()
		r.close(id)
		return nil
	}
	if !f.seen {
		// Deleted or compressed away, and read to its end.
		if p := f.t.Pending(); p > 0 {
			r.metrics.lostBytes.WithLabelValues("unterminated_last_line").Add(float64(p))
			r.log.Warn("file is gone with an unterminated last line; its bytes are lost", "file", f.t.Rel, "bytes", p)
		}
		r.close(id)
	}
	return nil
}

func (r *Reader) scan() error {
	found, err := finder.Scan(r.cfg.PodsRoot)
	if err != nil {
		return err
	}
	for _, f := range r.files {
		f.seen = false
	}
	present := make(map[fileID]bool, len(found))
	for _, ff := range found {
		id := fileID{ff.Device, ff.Inode}
		present[id] = true
		if f, ok := r.files[id]; ok {
			f.seen = true
			if f.t.Rel != ff.Rel {
				r.metrics.rotations.Inc()
				f.t.Rel = ff.Rel // renamed by rotation: same file, read on
			}
			continue
		}
		t, err := tail.Open(filepath.Join(r.cfg.PodsRoot, ff.Rel), ff.Rel, r.cfg.MaxRecordBytes, r.startOffset)
		if errors.Is(err, tail.ErrNoFirstLine) {
			continue // no identity yet; the next scan tries again
		}
		if err != nil {
			r.log.Warn("cannot open log file", "file", ff.Rel, "err", err)
			continue
		}
		r.files[id] = &openFile{t: t, seen: true}
		r.order = append(r.order, id)
		r.metrics.filesOpened.Inc()
	}
	r.metrics.openFiles.Set(float64(len(r.files)))
	// Entries of files that are gone serve no purpose; keep the store small.
	r.store.Forget(func(e checkpoint.Entry) bool { return present[fileID{e.Device, e.Inode}] })
	return nil
}

func (r *Reader) startOffset(k checkpoint.Key) uint64 {
	if e, ok := r.store.Get(k); ok {
		return e.Offset
	}
	return 0
}

func (r *Reader) close(id fileID) {
	if f := r.files[id]; f != nil {
		f.t.Close()
		delete(r.files, id)
	}
	for i, o := range r.order {
		if o == id {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
	r.metrics.openFiles.Set(float64(len(r.files)))
}

func (r *Reader) closeAll() {
	for id := range r.files {
		r.close(id)
	}
}

func (r *Reader) flush(ctx context.Context) error {
	b := r.batch.take()
	if b == nil {
		return nil
	}
	r.metrics.recordsRead.Add(float64(len(b.Records)))
	if err := r.out.Submit(ctx, b); err != nil {
		return fmt.Errorf("submit batch: %w", err)
	}
	return nil
}

// builder packs records into one batch. Record data is copied into one arena
// per batch, so the per-line cost is a slice header, not an allocation.
type builder struct {
	b       *podlogsv1.Batch
	sources map[*tail.File]uint32
	arena   []byte
	bytes   int
	started time.Time
}

func (bb *builder) add(t *tail.File, rec cri.Record) {
	if bb.b == nil {
		bb.b = &podlogsv1.Batch{}
		bb.sources = map[*tail.File]uint32{}
		bb.arena = make([]byte, 0, 64<<10)
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
	}
	if cap(bb.arena)-len(bb.arena) < len(rec.Data) {
		// Start a new arena; earlier records keep pointing into the old one.
		bb.arena = make([]byte, 0, max(64<<10, len(rec.Data)))
	}
	start := len(bb.arena)
	bb.arena = append(bb.arena, rec.Data...)
	bb.b.Records = append(bb.b.Records, &podlogsv1.Record{
		SourceIndex: idx,
		Offset:      rec.Offset,
		NextOffset:  rec.NextOffset,
		Data:        bb.arena[start:len(bb.arena):len(bb.arena)],
		Truncated:   rec.Truncated,
	})
	bb.bytes += len(rec.Data)
}

func (bb *builder) len() int {
	if bb.b == nil {
		return 0
	}
	return len(bb.b.Records)
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
	openFiles                                                   prometheus.Gauge
	lostBytes                                                   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Name: "podlogs_forwarder_" + name, Help: help})
		reg.MustRegister(m)
		return m
	}
	m := &metrics{
		bytesRead:   c("bytes_read_total", "Bytes read from log files."),
		recordsRead: c("records_read_total", "Records framed from log files and handed to the sender."),
		rotations:   c("rotations_total", "Log files found renamed by rotation and followed."),
		truncations: c("truncations_total", "Log files found truncated under the reader (copytruncate)."),
		filesOpened: c("files_opened_total", "Log files opened."),
		openFiles:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "podlogs_forwarder_open_files", Help: "Log files being followed."}),
		lostBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podlogs_forwarder_lost_bytes_total", Help: "Bytes that could not be delivered, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.openFiles, m.lostBytes)
	return m
}
