//go:build !linux

package watch

import (
	"errors"
	"io/fs"
)

// Event masks, as on Linux; no events come.
const (
	MaskWrite = 1 << iota
	MaskStructure
)

// Watcher needs inotify; elsewhere the reader polls.
type Watcher struct{}

func New(string) (*Watcher, error) {
	return nil, errors.New("filesystem notifications are implemented for Linux only")
}

func (*Watcher) Chunks() <-chan []byte                     { return nil }
func (*Watcher) Errs() <-chan error                        { return nil }
func (*Watcher) Sync([]string) (bool, []*fs.PathError)     { return false, nil }
func (*Watcher) Decode([]byte, func([]byte, uint32)) error { return nil }
func (*Watcher) Rel(string) (string, int)                  { return "", 0 }
func (*Watcher) Close() error                              { return nil }
