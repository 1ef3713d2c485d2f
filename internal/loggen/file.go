package loggen

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// RotatedTimeLayout is the timestamp kubelet appends to a rotated log file:
// 0.log becomes 0.log.20231107-020510.
const RotatedTimeLayout = "20060102-150405"

const (
	gzSuffix  = ".gz"
	tmpSuffix = ".tmp"
)

// FileOptions configures a FileWriter.
type FileOptions struct {
	// SplitBytes is the largest number of message bytes in one physical
	// line; longer messages are written as several. 0 means
	// DefaultSplitBytes.
	SplitBytes int
	// KeepRotated is how many rotated files Rotate keeps, as kubelet's
	// containerLogMaxFiles minus the live file: the newest rotated file stays
	// uncompressed, older ones are gzipped, and the oldest beyond the limit
	// are deleted. 0 keeps every rotated file, uncompressed.
	KeepRotated int
}

// FileWriter writes one container log file the way a container runtime
// does: append-only, one write(2) per physical line. Its methods are safe for
// concurrent use.
type FileWriter struct {
	path   string
	format Format
	split  int
	keep   int

	mu   sync.Mutex
	f    *os.File // guarded by mu; nil once closed
	size int64    // guarded by mu; bytes in the live file
	buf  []byte   // guarded by mu; one physical line
}

// OpenFile opens path for appending, creating it and its parent directories
// as needed.
func OpenFile(path string, format Format, opts FileOptions) (*FileWriter, error) {
	if format != FormatCRI && format != FormatDocker {
		return nil, fmt.Errorf("loggen: open %s: unknown format %v", path, format)
	}
	if opts.SplitBytes < 0 || opts.KeepRotated < 0 {
		return nil, fmt.Errorf("loggen: open %s: SplitBytes and KeepRotated must not be negative", path)
	}
	if opts.SplitBytes == 0 {
		opts.SplitBytes = DefaultSplitBytes
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("loggen: open %s: %w", path, err)
	}
	f, size, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &FileWriter{
		path:   path,
		format: format,
		split:  opts.SplitBytes,
		keep:   opts.KeepRotated,
		f:      f,
		size:   size,
		buf:    make([]byte, 0, 512),
	}, nil
}

func openAppend(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("loggen: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("loggen: open %s: %w", path, err)
	}
	return f, fi.Size(), nil
}

// Path returns the path of the live file.
func (w *FileWriter) Path() string { return w.path }

// Format returns the file's format.
func (w *FileWriter) Format() Format { return w.format }

// WriteLine writes one logical line stamped t (in UTC) on stream ("stdout"
// or "stderr"). A message longer than SplitBytes is written as several
// physical lines: CRI "P" lines and a final "F" line, or json-file objects
// of which only the last ends its log value with "\n". It returns the bytes
// written to the file.
func (w *FileWriter) WriteLine(t time.Time, stream string, msg string) (int, error) {
	if stream != "stdout" && stream != "stderr" {
		return 0, fmt.Errorf("%w: got %q", ErrStream, stream)
	}
	if strings.IndexByte(msg, '\n') >= 0 {
		return 0, ErrNewline
	}
	t = t.UTC()

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, fmt.Errorf("loggen: write %s: %w", w.path, os.ErrClosed)
	}
	total := 0
	for off := 0; ; {
		end := partEnd(msg, off, w.split, w.format)
		partial := end < len(msg)
		if w.format == FormatDocker {
			w.buf = appendDocker(w.buf[:0], t, stream, partial, msg[off:end])
		} else {
			w.buf = appendCRI(w.buf[:0], t, stream, partial, msg[off:end])
		}
		n, err := w.f.Write(w.buf)
		total += n
		w.size += int64(n)
		if err != nil {
			return total, fmt.Errorf("loggen: write %s: %w", w.path, err)
		}
		if !partial {
			return total, nil
		}
		off = end
	}
}

// Size returns the size of the live file in bytes.
func (w *FileWriter) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Rotate rotates the file as kubelet does: it first removes leftover
// temporary files, deletes the oldest rotated files beyond KeepRotated and
// gzips the remaining uncompressed ones (so the previous rotation's file is
// compressed only now, and a reader had a whole rotation period to finish
// it); then it renames the live file to <path>.<now as 20060102-150405> and
// opens a new, empty file at path. It returns the rotated file's path.
//
// Rotated names always sort in rotation order: should now not be later
// than the newest rotated file's timestamp (two rotations within a second,
// where kubelet would overwrite the first), the name takes that timestamp
// plus one second instead. Fast rotation thus runs names ahead of the
// clock; kubelet rotates at most every 10 seconds and never meets this.
func (w *FileWriter) Rotate(now time.Time) (rotatedPath string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return "", fmt.Errorf("loggen: rotate %s: %w", w.path, os.ErrClosed)
	}
	rotated, err := w.rotatedLocked()
	if err != nil {
		return "", err
	}
	// Names must sort in rotation order, so a name is never reused nor
	// older than an existing one.
	at := now.UTC().Truncate(time.Second)
	for _, p := range rotated {
		stamp := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), filepath.Base(w.path)+"."), gzSuffix)
		if t, err := time.Parse(RotatedTimeLayout, stamp); err == nil && !at.After(t) {
			at = t.Add(time.Second)
		}
	}
	if w.keep > 0 {
		if err := w.pruneLocked(rotated); err != nil {
			return "", err
		}
	}
	rotatedPath = w.path + "." + at.Format(RotatedTimeLayout)
	if err := os.Rename(w.path, rotatedPath); err != nil {
		return "", fmt.Errorf("loggen: rotate %s: %w", w.path, err)
	}
	f, size, err := openAppend(w.path)
	if err != nil {
		// Undo, as kubelet does when the runtime cannot reopen the log.
		if rerr := os.Rename(rotatedPath, w.path); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return "", fmt.Errorf("loggen: rotate: %w", err)
	}
	old := w.f
	w.f, w.size = f, size
	if err := old.Close(); err != nil {
		return rotatedPath, fmt.Errorf("loggen: rotate %s: close old file: %w", w.path, err)
	}
	return rotatedPath, nil
}

// pruneLocked is kubelet's clean-up before a rotation: drop temporary files
// and uncompressed files that also exist compressed, keep the newest
// keep-1 rotated files (the rotation about to happen adds one), and gzip
// those that are not compressed yet.
func (w *FileWriter) pruneLocked(rotated []string) error {
	inUse := rotated[:0:0]
	for _, p := range rotated {
		if strings.HasSuffix(p, tmpSuffix) || (!strings.HasSuffix(p, gzSuffix) && slices.Contains(rotated, p+gzSuffix)) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("loggen: rotate %s: %w", w.path, err)
			}
			continue
		}
		inUse = append(inUse, p)
	}
	slices.Sort(inUse) // oldest first: fixed-width timestamps sort as text
	excess := max(len(inUse)-(w.keep-1), 0)
	for _, p := range inUse[:excess] {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("loggen: rotate %s: %w", w.path, err)
		}
	}
	for _, p := range inUse[excess:] {
		if strings.HasSuffix(p, gzSuffix) {
			continue
		}
		if err := compressFile(p); err != nil {
			return fmt.Errorf("loggen: rotate %s: %w", w.path, err)
		}
	}
	return nil
}

// rotatedLocked lists the rotated files of w: <path>.* in its directory.
func (w *FileWriter) rotatedLocked() ([]string, error) {
	dir, base := filepath.Split(w.path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("loggen: rotate %s: %w", w.path, err)
	}
	var out []string
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, base+".") && !e.IsDir() {
			out = append(out, filepath.Join(dir, name))
		}
	}
	return out, nil
}

// compressFile gzips p to p.gz through p.tmp and removes p, as kubelet's
// compressLog does.
func compressFile(p string) (err error) {
	in, err := os.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := p + tmpSuffix
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		return fmt.Errorf("compress %s: %w", p, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compress %s: %w", p, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("compress %s: %w", p, err)
	}
	if err := os.Rename(tmp, p+gzSuffix); err != nil {
		return err
	}
	return os.Remove(p)
}

// Close closes the file. Closing twice is not an error.
func (w *FileWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("loggen: close %s: %w", w.path, err)
	}
	return nil
}
