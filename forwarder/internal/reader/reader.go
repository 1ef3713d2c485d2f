// Package reader is the forwarder's read loop: it finds log files, reads what
// was appended to each in bounded turns (a busy pod cannot starve a quiet
// one), packs the records into batches and submits them to the sender, which
// blocks it while the window of unacknowledged bytes is full.
//
// Filesystem notifications say which files were written, so a line reaches
// the sender within Config.ReadDelay and idle files cost nothing; a periodic
// rescan and a periodic read of every file are the safety net for
// filesystems that send no events. A runtime writes a line at a time, so a
// busy node sends thousands of events a second: the reader waits ReadDelay
// after the first one and then reads every file written meanwhile in one
// turn, so its cost follows the lines and bytes written, not the writes.
package reader

import (
	"cmp"
	"context"
	"log/slog"
	"path"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/forwarder/internal/finder"
	"github.com/podlogs/podlogs/forwarder/internal/tail"
	"github.com/podlogs/podlogs/forwarder/internal/watch"
	"github.com/podlogs/podlogs/internal/cri"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// Config tunes the loop.
type Config struct {
	PodsRoot     string
	Filter       *finder.Filter
	ScanInterval time.Duration // how often to look for new and gone files
	PollInterval time.Duration // how often to read every file, events or not
	// ResyncInterval, when notifications work, replaces both: they report
	// creations, renames and writes, so the full rescan and the read of
	// every file are a safety net only, and at thousands of files each
	// costs a stat or a read per file. 0 keeps ScanInterval and
	// PollInterval.
	ResyncInterval time.Duration
	// ReadBytes is the most read from one file per turn (default 64 KiB):
	// fairness between busy and quiet pods.
	ReadBytes    int
	BatchBytes   int           // flush a batch at this many record bytes
	BatchRecords int           // ... or this many records
	BatchLinger  time.Duration // ... or when its oldest record waited this long
	// ReadDelay is how long a write notification waits before the files
	// written are read: the writes of that while are read, batched and sent
	// together. 0 reads at once. A backlog is read without delay.
	ReadDelay      time.Duration
	MaxRecordBytes int
	// SkipExisting starts files found by the first scan, that have no
	// checkpoint, at their end: a node's first start that should not ship
	// old logs. Files found later are always read from their start.
	SkipExisting bool
	// NoWatch turns filesystem notifications off (polling only).
	NoWatch bool
}

// Submitter takes batches while its window has room.
type Submitter interface {
	// TrySubmit takes the batch, which holds size bytes of memory, or
	// returns false when the window is full.
	TrySubmit(b *podlogsv1.Batch, size int) bool
	// Space is closed when the window frees up.
	Space() <-chan struct{}
}

// Reader owns the open files.
type Reader struct {
	cfg     Config
	store   *checkpoint.Store
	out     Submitter
	log     *slog.Logger
	metrics *metrics

	files  map[fileID]*openFile
	byPath map[string]fileID
	// byAbs finds a file by the name write events carry (root joined with
	// its path), without computing a relative path per event.
	byAbs map[string]*openFile
	order []fileID // every open file, in the order they were opened
	// dirty holds the files to read next turn, each once (openFile.queued),
	// in the order they became dirty: a turn costs what was written, not
	// the number of files.
	dirty   []*openFile
	readBuf []byte
	batch   builder
	// held is a batch the window had no room for; nothing more is read
	// until it is taken, but files are still found and opened meanwhile.
	held     *podlogsv1.Batch
	heldSize int
	scans    int
	rescan   bool           // the last scan added watches: scan again soon
	watch    *watch.Watcher // nil when notifications are off or unavailable
	// unreadable reports the paths scans cannot read or watch, once each.
	unreadable *unreadablePaths
	// closing holds closed files whose last records may not be
	// acknowledged yet, with the offset past their last record: their
	// checkpoint entries stay until then (see unacked).
	closing map[checkpoint.Key]uint64
}

// fileID names an open file by device and inode; a compressed copy read
// after a restart is named by the inode its original had.
type fileID struct {
	dev, ino   uint64
	compressed bool
}

type openFile struct {
	t      *tail.File
	id     fileID
	from   uint64 // where reading started
	seen   bool   // found by the last scan
	queued bool   // in Reader.dirty: written since last read to its end
	closed bool
}

// New returns a reader; it opens nothing until Run.
func New(cfg Config, store *checkpoint.Store, out Submitter, reg prometheus.Registerer, log *slog.Logger) *Reader {
	cfg.ReadBytes = cmp.Or(cfg.ReadBytes, 64<<10)
	m := newMetrics(reg)
	return &Reader{
		cfg:        cfg,
		store:      store,
		out:        out,
		log:        log,
		metrics:    m,
		files:      map[fileID]*openFile{},
		byPath:     map[string]fileID{},
		byAbs:      map[string]*openFile{},
		readBuf:    make([]byte, cfg.ReadBytes),
		unreadable: newUnreadablePaths(m.unreadablePaths, log),
		closing:    map[checkpoint.Key]uint64{},
	}
}

// Run reads until ctx is done, then closes every file. Records read but not
// submitted are read again after a restart: only acknowledged offsets are
// checkpointed.
func (r *Reader) Run(ctx context.Context) error {
	defer r.closeAll()
	if !r.cfg.NoWatch {
		w, err := watch.New(r.cfg.PodsRoot)
		if err != nil {
			r.log.Warn("filesystem notifications unavailable; relying on polling", "err", err, "poll_interval", r.cfg.PollInterval)
		} else {
			r.watch = w
			defer w.Close()
		}
	}
	l := r.newLoop()
	defer l.stop()
	r.scanAndLog()
	for {
		more := false
		if r.held == nil {
			more = r.readTurn(l.readAll)
			l.readAll = false
			if !more || r.batch.due(r.cfg, time.Now()) {
				// Everything written is read, or the batch is full or old
				// enough: hand over what we have.
				r.flush()
			}
		}
		if !l.wait(ctx, !more || r.held != nil) {
			return nil
		}
	}
}

// submitHeld offers the held batch again; it returns true once it is taken.
func (r *Reader) submitHeld() bool {
	if r.held == nil || r.out.TrySubmit(r.held, r.heldSize) {
		r.held = nil
		return true
	}
	return false
}

// maxEvents bounds the chunks of events handled between two turns: reading
// goes on even under a storm of events.
const maxEvents = 1000

// closedTimeChan is always ready: a select that includes it never blocks.
var closedTimeChan = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// handleEvent marks a written file dirty; it returns true when the event
// calls for a scan (something created, renamed or removed).
func (r *Reader) handleEvent(name []byte, mask uint32) bool {
	if mask&watch.MaskWrite != 0 {
		if f := r.byAbs[string(name)]; f != nil {
			r.markDirty(f)
			return false
		}
	}
	rel, depth := r.watch.Rel(string(name))
	if depth == 0 {
		return false
	}
	if mask&watch.MaskWrite != 0 && depth == 3 {
		if id, ok := r.byPath[rel]; ok {
			if f := r.files[id]; f != nil {
				r.markDirty(f)
			}
			return false
		}
		// A file we do not follow yet (no first line at the last scan).
		return finder.IsLogName(path.Base(rel))
	}
	return mask&watch.MaskStructure != 0
}

func (r *Reader) scanAndLog() {
	if err := r.scan(); err != nil {
		r.log.Warn("scan of pods root failed; retrying", "err", err)
	}
}

// readTurn reads once from every dirty file (every file if all is set, or
// without notifications). It returns whether a file has more to read now
// (a read filled the buffer): a backlog, read on without waiting. It stops
// early when a full batch finds the window full; the files not read yet
// stay dirty.
func (r *Reader) readTurn(all bool) (more bool) {
	if all || r.watch == nil {
		for _, id := range r.order {
			r.markDirty(r.files[id])
		}
	}
	// Files still dirty after their read go to the back, for the next turn:
	// a busy file cannot starve the others.
	n, i := len(r.dirty), 0
	for ; i < n && r.held == nil; i++ {
		f := r.dirty[i]
		r.dirty[i] = nil
		f.queued = false
		if f.closed {
			continue
		}
		got, err := f.t.Read(r.readBuf, func(rec cri.Record) { r.batch.add(f.t, rec) })
		id := f.id
		if err != nil {
			r.log.Warn("read failed; closing the file", "file", f.t.Rel, "err", err)
			r.close(id)
			continue
		}
		r.metrics.bytesRead.Add(float64(got))
		switch {
		case got == len(r.readBuf):
			r.markDirty(f) // likely more
			more = true
		case got == 0:
			r.atEOF(id, f)
		}
		if r.batch.full(r.cfg) {
			r.flush()
		}
	}
	r.dirty = append(r.dirty[:0], r.dirty[i:]...)
	return more
}

// markDirty queues f for the next turn.
func (r *Reader) markDirty(f *openFile) {
	if !f.queued && !f.closed {
		f.queued = true
		r.dirty = append(r.dirty, f)
	}
}

// mapPath makes f found by its path; compressed copies read after a restart
// are not, as before: no event names them.
func (r *Reader) mapPath(id fileID, f *openFile) {
	r.byPath[f.t.Rel] = id
	r.byAbs[filepath.Join(r.cfg.PodsRoot, f.t.Rel)] = f
}

func (r *Reader) unmapPath(f *openFile) {
	if id, ok := r.byPath[f.t.Rel]; ok && id == f.id {
		delete(r.byPath, f.t.Rel)
		delete(r.byAbs, filepath.Join(r.cfg.PodsRoot, f.t.Rel))
	}
}

// add starts following f, read next turn.
func (r *Reader) add(id fileID, f *openFile) {
	f.id, f.from = id, f.t.ReadOffset()
	r.files[id] = f
	r.order = append(r.order, id)
	r.markDirty(f)
}

// atEOF handles a file with nothing new: it may have been truncated, or be
// gone and finished. It returns true if it closed the file.
func (r *Reader) atEOF(id fileID, f *openFile) bool {
	truncated, err := f.t.Truncated()
	if err != nil {
		r.log.Warn("stat failed; closing the file", "file", f.t.Rel, "err", err)
		r.close(id)
		return true
	}
	if truncated {
		// copytruncate: what follows is a new file under the same inode; its
		// new first line gives it a new identity at the next scan.
		r.log.Info("file was truncated; reading it again from the start", "file", f.t.Rel)
		r.metrics.truncations.Inc()
		r.close(id)
		return true
	}
	if !f.seen {
		// No longer found, and read to its end. If it is gone (deleted or
		// compressed away), partial lines at its end will never get their
		// final part (a container killed mid-line): send what they hold.
		if gone, err := f.t.Gone(); err == nil && gone {
			if rec, ok := f.t.Flush(); ok {
				r.batch.add(f.t, rec)
			}
		}
		if p := f.t.Pending(); p > 0 {
			r.metrics.lostBytes.WithLabelValues("unterminated_last_line").Add(float64(p))
			r.log.Warn("file is gone with an unterminated last line; its bytes are lost", "file", f.t.Rel, "bytes", p)
		}
		r.close(id)
		return true
	}
	return false
}

func (r *Reader) startOffset(k checkpoint.Key) uint64 {
	if e, ok := r.store.Get(k); ok {
		return e.Offset
	}
	return 0
}

func (r *Reader) startOffsetOrEnd(k checkpoint.Key) uint64 {
	if e, ok := r.store.Get(k); ok {
		return e.Offset
	}
	return tail.AtEnd
}

func (r *Reader) close(id fileID) {
	if f := r.files[id]; f != nil {
		f.closed = true
		if end := f.t.Offset(); end > f.from {
			r.closing[f.t.Key()] = end
		}
		f.t.Close()
		r.unmapPath(f)
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

// unacked tells whether e is the entry of a closed file whose last records
// are not acknowledged yet (the sender still has them). It must stay until
// they are: were the forwarder restarted meanwhile, the rest of the file
// would be read again from its compressed copy, found through the entry.
func (r *Reader) unacked(e checkpoint.Entry) bool {
	end, ok := r.closing[e.Key]
	if ok && e.Offset >= end {
		delete(r.closing, e.Key)
		return false
	}
	return ok
}

func (r *Reader) closeAll() {
	for id := range r.files {
		r.close(id)
	}
}

// flush hands the current batch to the sender, or holds it while the window
// is full.
func (r *Reader) flush() {
	size := r.batch.mem
	b := r.batch.take()
	if b == nil {
		return
	}
	r.metrics.recordsRead.Add(float64(len(b.Records)))
	if !r.out.TrySubmit(b, size) {
		r.held, r.heldSize = b, size
	}
}
