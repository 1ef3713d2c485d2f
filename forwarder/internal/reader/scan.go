package reader

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/forwarder/internal/finder"
	"github.com/podlogs/podlogs/forwarder/internal/tail"
)

// scan looks at the pods tree: it opens new files and follows renamed ones,
// has files no longer found read to their end, measures how far
// acknowledgements trail, keeps the watches and the report of unreadable
// paths up to date, and forgets the checkpoints of files that are gone.
func (r *Reader) scan() error {
	res, err := finder.Scan(r.cfg.PodsRoot, r.cfg.Filter)
	if err != nil {
		return err
	}
	r.scans++
	first := r.scans == 1
	present := r.follow(res.Files, first)
	r.measureAckLag(res.Files)
	r.syncWatches(res)
	r.forgetGone(present, first)
	return nil
}

// follow matches the files found with the open ones: a file found under a
// new name was renamed by rotation and is read on, a new file is opened,
// and an open file not found is marked to be read to its end. It returns
// the identities of the files found.
func (r *Reader) follow(found []finder.File, first bool) map[fileID]bool {
	for _, f := range r.files {
		f.seen = false
	}
	present := make(map[fileID]bool, len(found))
	for _, ff := range found {
		id := fileID{dev: ff.Device, ino: ff.Inode}
		present[id] = true
		if f, ok := r.files[id]; ok {
			f.seen = true
			if f.t.Rel != ff.Rel {
				r.metrics.rotations.Inc()
				r.unmapPath(f)
				f.t.Rel = ff.Rel // renamed by rotation: same file, read on
				r.mapPath(id, f)
				r.markDirty(f)
			}
			continue
		}
		r.open(id, ff, first)
	}
	// Files no longer found must be read to their end, then closed.
	for _, f := range r.files {
		if !f.seen {
			r.markDirty(f)
		}
	}
	r.metrics.openFiles.Set(float64(len(r.files)))
	return present
}

// open starts following a file found for the first time, from its
// checkpoint (or, at the node's first start with SkipExisting, its end).
func (r *Reader) open(id fileID, ff finder.File, first bool) {
	start := r.startOffset
	if first && r.cfg.SkipExisting {
		start = r.startOffsetOrEnd
	}
	t, err := tail.Open(filepath.Join(r.cfg.PodsRoot, ff.Rel), ff.Rel, r.cfg.MaxRecordBytes, start)
	if errors.Is(err, tail.ErrNoFirstLine) {
		return // no identity yet; a write event or the next scan tries again
	}
	if err != nil {
		r.log.Warn("cannot open log file", "file", ff.Rel, "err", err)
		return
	}
	f := &openFile{t: t, seen: true}
	r.add(id, f)
	r.mapPath(id, f)
	r.metrics.filesOpened.Inc()
}

// measureAckLag sets how far acknowledgements trail the files, without a
// label per file.
func (r *Reader) measureAckLag(found []finder.File) {
	var lag, lagMax uint64
	for _, ff := range found {
		f := r.files[fileID{dev: ff.Device, ino: ff.Inode}]
		if f == nil {
			continue
		}
		acked := uint64(0)
		if e, ok := r.store.Get(f.t.Key()); ok {
			acked = e.Offset
		}
		if size := uint64(ff.Size); size > acked {
			lag += size - acked
			lagMax = max(lagMax, size-acked)
		}
	}
	r.metrics.ackLag.Set(float64(lag))
	r.metrics.ackLagMax.Set(float64(lagMax))
}

// syncWatches watches the pod and container directories found, with files
// or without (yet), and reports what cannot be read or watched. Files made
// in a new directory before its watch was added sent no event: the reader
// looks again soon rather than at the next resync (rescan).
func (r *Reader) syncWatches(res finder.Result) {
	var unwatched []*fs.PathError
	if r.watch != nil {
		r.rescan, unwatched = r.watch.Sync(res.Dirs)
	}
	r.unreadable.update(res.Unreadable, unwatched)
}

// forgetGone drops the checkpoints of files that are gone: they serve no
// purpose, and the store stays small. At the first scan, a gone file whose
// entry says it was not read to its end is read on from its compressed copy.
func (r *Reader) forgetGone(present map[fileID]bool, first bool) {
	open := make(map[checkpoint.Key]bool, len(r.files))
	for _, f := range r.files {
		open[f.t.Key()] = true
	}
	var gone []checkpoint.Entry
	r.store.Forget(func(e checkpoint.Entry) bool {
		// An entry stays while its file is open, or present without an
		// identity yet, or closed before its last records were
		// acknowledged; an inode now holding another file does not count
		// (inodes are reused).
		id := fileID{dev: e.Device, ino: e.Inode}
		keep := r.unacked(e) || open[e.Key] || (present[id] && r.files[id] == nil)
		if !keep && first {
			gone = append(gone, e)
		}
		return keep
	})
	if len(gone) > 0 {
		r.recoverCompressed(gone)
	}
}
