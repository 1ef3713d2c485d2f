package reader

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// watcher turns filesystem notifications on the pods tree into "this file
// was written" and "something was created, renamed or removed". It watches
// the root, every pod directory and every container directory (three levels,
// one inotify watch each); a file's writes arrive through its directory's
// watch, so the cost follows write events, not the number of files.
type watcher struct {
	w       *fsnotify.Watcher
	root    string
	watched map[string]bool // directories with a watch
}

func newWatcher(root string) (*watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &watcher{w: w, root: filepath.Clean(root), watched: map[string]bool{}}, nil
}

// sync makes the set of watched directories equal to dirs (absolute paths).
func (w *watcher) sync(dirs map[string]bool) error {
	var errs []error
	for d := range dirs {
		if w.watched[d] {
			continue
		}
		if err := w.w.Add(d); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		w.watched[d] = true
	}
	for d := range w.watched {
		if !dirs[d] {
			_ = w.w.Remove(d) // fails if the directory is gone: its watch went with it
			delete(w.watched, d)
		}
	}
	return errors.Join(errs...)
}

// rel returns an event's path relative to the root and its depth there:
// 1 pod directory, 2 container directory, 3 log file.
func (w *watcher) rel(name string) (string, int) {
	r, err := filepath.Rel(w.root, name)
	if err != nil || strings.HasPrefix(r, "..") {
		return "", 0
	}
	r = filepath.ToSlash(r)
	return r, strings.Count(r, "/") + 1
}

func (w *watcher) close() error { return w.w.Close() }
