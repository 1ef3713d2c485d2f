// Package checkpoint keeps, per log file, the offset up to which the
// aggregator has acknowledged the file's records as durable — and only that.
// A forwarder restarted after any crash resumes every file from its entry, so
// nothing is lost, and what it sends again carries the same ids.
//
// The store is one small JSON file, replaced atomically (write a temporary
// file, fsync it, rename it over the old one, fsync the directory), so a crash
// leaves either the old or the new content, never a mix.
package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Key identifies a file whatever its current name.
type Key struct {
	Device      uint64 `json:"dev"`
	Inode       uint64 `json:"ino"`
	Fingerprint uint64 `json:"fp"`
}

// Entry is the acknowledged position in one file.
type Entry struct {
	Key
	// Path is the file's last known path relative to the pods root, kept for
	// people reading the file and for logs.
	Path string `json:"path"`
	// Offset is where the first unacknowledged record starts.
	Offset uint64 `json:"offset"`
}

type fileFormat struct {
	Version int     `json:"version"`
	Files   []Entry `json:"files"`
}

const formatVersion = 1

// Store holds the entries in memory and writes them to one file.
type Store struct {
	path  string
	fresh bool // no file when opened

	mu      sync.Mutex // guards entries and dirty
	entries map[Key]Entry
	dirty   bool
}

// Open loads the store at path; a missing file is an empty store.
func Open(path string) (*Store, error) {
	s := &Store{path: path, entries: map[Key]Entry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		s.fresh = true
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	entries, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("decode checkpoints %s: %w", path, err)
	}
	for _, e := range entries {
		s.entries[e.Key] = e
	}
	return s, nil
}

// Fresh tells whether there was no checkpoint file when the store was
// opened: the node's very first start.
func (s *Store) Fresh() bool { return s.fresh }

// Run writes the store every interval until ctx is done, then once more. A
// crash re-sends at most one interval's worth of acknowledged records,
// which downstream deduplicates; a failed write is retried at the next.
func (s *Store) Run(ctx context.Context, every time.Duration, log *slog.Logger) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.Sync(); err != nil {
				log.Error("final checkpoint write failed; records since the last one will be sent again", "err", err)
			}
			return nil
		case <-t.C:
			if err := s.Sync(); err != nil {
				log.Warn("checkpoint write failed; will retry", "err", err)
			}
		}
	}
}

// Decode parses the content of a checkpoint file.
func Decode(b []byte) ([]Entry, error) {
	var f fileFormat
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("unknown checkpoint format version %d", f.Version)
	}
	return f.Files, nil
}

// Get returns the entry of a file, if any.
func (s *Store) Get(k Key) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	return e, ok
}

// Advance records that everything before offset in the file is durable. An
// offset below the stored one is ignored: acknowledgements only move forward.
func (s *Store) Advance(k Key, path string, offset uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	if ok && offset <= e.Offset && path == e.Path {
		return
	}
	if !ok || offset > e.Offset {
		e.Offset = offset
	}
	e.Key, e.Path = k, path
	s.entries[k] = e
	s.dirty = true
}

// Forget drops the entries of files for which keep returns false (files that
// are gone from the node).
func (s *Store) Forget(keep func(Entry) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if !keep(e) {
			delete(s.entries, k)
			s.dirty = true
		}
	}
}

// Len is the number of files with an entry.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Sync writes the store to disk if it changed since the last Sync.
func (s *Store) Sync() error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	f := fileFormat{Version: formatVersion, Files: make([]Entry, 0, len(s.entries))}
	for _, e := range s.entries {
		f.Files = append(f.Files, e)
	}
	s.dirty = false
	s.mu.Unlock()

	sort.Slice(f.Files, func(i, j int) bool { return f.Files[i].Path < f.Files[j].Path })
	b, err := json.Marshal(f)
	if err == nil {
		err = writeAtomic(s.path, b)
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true // try again next time
		s.mu.Unlock()
		return fmt.Errorf("write checkpoints: %w", err)
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
