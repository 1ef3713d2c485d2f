//go:build linux

// Package watch follows a pods tree (root, pod and container directories)
// with inotify: which files were written, and when something was created,
// renamed or removed. Elsewhere than on Linux, New fails and callers poll.
package watch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Watcher turns inotify events on the pods tree into "this file was
// written" and "something was created, renamed or removed". It watches the
// root, every pod directory and every container directory (three levels,
// one inotify watch each); a file's writes arrive through its directory's
// watch, so the cost follows write events, not the number of files.
//
// A runtime writes a line at a time, so a busy node makes thousands of
// events a second. One goroutine reads them from the kernel in chunks and
// hands a chunk over at a time; while the reader waits out its read delay
// the goroutine is blocked handing over, the kernel queues what comes
// meanwhile, and the next read(2) takes all of it. An event costs a few
// bytes to decode, not a read and a wake-up each (as with a channel of
// single events).
type Watcher struct {
	f    *os.File // the inotify instance, non-blocking (the runtime's poller)
	fd   int      // f's descriptor (f.Fd would make it blocking)
	root string
	// Owned by the reader goroutine (sync, decode).
	dirs    map[int32]string // watch descriptor → directory
	watched map[string]int32 // directory → watch descriptor
	name    []byte           // scratch for an event's path

	chunks chan []byte // events as read(2) returned them
	free   chan []byte // chunks decoded, for reuse
	errs   chan error  // the read loop's end, if not by close
	wg     sync.WaitGroup
}

const (
	// watchMask: writes, and whatever changes the set of files.
	watchMask = syscall.IN_MODIFY | syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM |
		syscall.IN_MOVED_TO | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ONLYDIR
	// MaskWrite: a file was written (or truncated).
	MaskWrite = syscall.IN_MODIFY
	// MaskStructure: events that call for a scan.
	MaskStructure = syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO |
		syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	// chunkBytes holds a couple of thousand events; more stay queued in
	// the kernel for the next read.
	chunkBytes = 64 << 10
)

// ErrOverflow: the kernel's event queue overflowed and some events are lost.
var ErrOverflow = errors.New("inotify event queue overflowed")

func New(root string) (*Watcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &Watcher{
		f:       os.NewFile(uintptr(fd), "inotify"),
		fd:      fd,
		root:    filepath.Clean(root),
		dirs:    map[int32]string{},
		watched: map[string]int32{},
		chunks:  make(chan []byte),
		free:    make(chan []byte, 2),
		errs:    make(chan error, 1),
	}
	w.wg.Add(1)
	go w.readLoop() // ends when close closes the file
	return w, nil
}

func (w *Watcher) readLoop() {
	defer w.wg.Done()
	for {
		var buf []byte
		select {
		case buf = <-w.free:
		default:
			buf = make([]byte, chunkBytes)
		}
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.errs <- fmt.Errorf("read inotify events: %w", err)
			}
			return
		}
		w.chunks <- buf[:n] // the reader takes chunks until close
	}
}

// Chunks delivers events as read(2) returned them, for Decode; it is
// never closed, and drained by Close.
func (w *Watcher) Chunks() <-chan []byte { return w.chunks }

// Errs delivers the error that ended the reading of events, if any but
// Close did.
func (w *Watcher) Errs() <-chan error { return w.errs }

// Sync makes the set of watched directories the root and dirs (absolute
// paths, real directories: the finder follows no symbolic link, so neither do
// watches); it returns whether it added any, and the directories it could
// not watch. Running out of watches is one failure, on the root.
func (w *Watcher) Sync(dirs []string) (added bool, failed []*fs.PathError) {
	want := make(map[string]bool, len(dirs)+1)
	want[w.root] = true
	for _, d := range dirs {
		want[d] = true
	}
	fd := w.fd
	for d := range want {
		if _, ok := w.watched[d]; ok {
			continue
		}
		wd, err := syscall.InotifyAddWatch(fd, d, watchMask)
		if errors.Is(err, syscall.ENOSPC) {
			// fs.inotify.max_user_watches: the others would fail alike.
			failed = append(failed, &fs.PathError{Op: "inotify_add_watch", Path: w.root, Err: err})
			break
		}
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
				failed = append(failed, &fs.PathError{Op: "inotify_add_watch", Path: d, Err: err})
			}
			continue
		}
		// The same directory under another name (moved) has the same
		// descriptor: the new name replaces the old.
		if old, ok := w.dirs[int32(wd)]; ok && old != d {
			delete(w.watched, old)
		}
		w.dirs[int32(wd)] = d
		w.watched[d] = int32(wd)
		added = true
	}
	for d, wd := range w.watched {
		if !want[d] {
			// Fails if the directory is gone: its watch went with it.
			_, _ = syscall.InotifyRmWatch(fd, uint32(wd))
			delete(w.watched, d)
			delete(w.dirs, wd)
		}
	}
	return added, failed
}

// Decode calls fn for every event of a chunk with the path it is about
// (valid until fn returns) and its mask; it returns ErrOverflow if the
// kernel dropped events. The chunk is reused afterwards.
func (w *Watcher) Decode(chunk []byte, fn func(name []byte, mask uint32)) error {
	defer func(c []byte) {
		select {
		case w.free <- c[:cap(c)]:
		default:
		}
	}(chunk)
	var err error
	for len(chunk) >= syscall.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(chunk[0:]))
		mask := binary.NativeEndian.Uint32(chunk[4:])
		n := int(binary.NativeEndian.Uint32(chunk[12:]))
		if syscall.SizeofInotifyEvent+n > len(chunk) {
			return fmt.Errorf("inotify: event of %d bytes in a chunk of %d", syscall.SizeofInotifyEvent+n, len(chunk))
		}
		name := chunk[syscall.SizeofInotifyEvent : syscall.SizeofInotifyEvent+n]
		chunk = chunk[syscall.SizeofInotifyEvent+n:]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1] // NUL padding
		}
		switch {
		case mask&syscall.IN_Q_OVERFLOW != 0:
			err = ErrOverflow
			continue
		case mask&syscall.IN_IGNORED != 0:
			// The watch is gone (its directory was deleted): a directory
			// made again under that name needs a new one.
			if d, ok := w.dirs[wd]; ok {
				delete(w.dirs, wd)
				if w.watched[d] == wd {
					delete(w.watched, d)
				}
			}
			continue
		}
		dir, ok := w.dirs[wd]
		if !ok {
			continue
		}
		w.name = append(w.name[:0], dir...)
		if len(name) > 0 {
			w.name = append(append(w.name, '/'), name...)
		}
		fn(w.name, mask)
	}
	return err
}

// Rel returns an event's path relative to the root and its depth there:
// 1 pod directory, 2 container directory, 3 log file.
func (w *Watcher) Rel(name string) (string, int) {
	r, err := filepath.Rel(w.root, name)
	if err != nil || strings.HasPrefix(r, "..") {
		return "", 0
	}
	r = filepath.ToSlash(r)
	return r, strings.Count(r, "/") + 1
}

// Close stops watching; it returns once the goroutine reading events ended.
func (w *Watcher) Close() error {
	err := w.f.Close() // ends a blocked Read
	// A chunk being handed over is dropped.
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	for {
		select {
		case <-w.chunks:
		case <-done:
			return err
		}
	}
}
