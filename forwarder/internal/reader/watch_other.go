//go:build !linux

package reader

import (
	"errors"
	"io/fs"
)

// Event masks, as on Linux; no events come.
const (
	maskWrite = 1 << iota
	maskStructure
)

// watcher needs inotify; elsewhere the reader polls.
type watcher struct {
	chunks chan []byte
	errs   chan error
}

func newWatcher(string) (*watcher, error) {
	return nil, errors.New("filesystem notifications are implemented for Linux only")
}

func (*watcher) sync([]string) (bool, []*fs.PathError)     { return false, nil }
func (*watcher) decode([]byte, func([]byte, uint32)) error { return nil }
func (*watcher) rel(string) (string, int)                  { return "", 0 }
func (*watcher) close() error                              { return nil }
