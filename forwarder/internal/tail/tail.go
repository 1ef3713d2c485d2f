// Package tail follows one container log file: it reads what was appended,
// frames it into records, and notices when the file was truncated under it.
//
// A file is known by its identity (device, inode and a fingerprint of its
// first line), never by its path: kubelet renames a file when it rotates it,
// and a renamed file keeps being read through the same descriptor until its
// end.
package tail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/internal/cri"
)

// FingerprintBytes caps the part of the first line that identifies a file.
const FingerprintBytes = 1024

// AtEnd, returned by Open's start function, starts reading after the last
// complete line of the file (a node's very first start, told to skip what is
// already there).
const AtEnd = ^uint64(0)

// source is what a File reads: an open log file, or a compressed copy.
type source interface {
	io.ReaderAt
	Stat() (os.FileInfo, error)
	Close() error
}

// ErrNoFirstLine means the file does not hold a whole first line yet, so it
// has no identity yet; try again later.
var ErrNoFirstLine = errors.New("file has no complete first line yet")

// File is one open log file.
type File struct {
	// Rel is the file's current path relative to the pods root.
	Rel string

	f      source
	key    checkpoint.Key
	format cri.Format
	framer *cri.Framer
	// readOffset is the offset of the next byte to read from the file; the
	// framer holds the bytes between its Offset() and readOffset.
	readOffset uint64
}

// Open opens the file at abs and reads its identity. start returns where to
// begin reading (an acknowledged offset from the checkpoints, or 0).
func Open(abs, rel string, maxRecordBytes int, start func(checkpoint.Key) uint64) (*File, error) {
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rel, err)
	}
	key, first, err := identify(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("identify %s: %w", rel, err)
	}
	offset := start(key)
	if offset == AtEnd {
		if offset, err = endOfLastLine(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("find the end of %s: %w", rel, err)
		}
	}
	format := cri.DetectFormat(first)
	return &File{
		Rel:        rel,
		f:          f,
		key:        key,
		format:     format,
		framer:     cri.NewFramer(format, maxRecordBytes, offset),
		readOffset: offset,
	}, nil
}

func identify(f *os.File) (checkpoint.Key, []byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return checkpoint.Key{}, nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return checkpoint.Key{}, nil, errors.New("no device and inode on this platform")
	}
	var head [FingerprintBytes]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return checkpoint.Key{}, nil, err
	}
	fp, first, ok := Fingerprint(head[:n])
	if !ok {
		return checkpoint.Key{}, nil, ErrNoFirstLine
	}
	return checkpoint.Key{Device: uint64(st.Dev), Inode: st.Ino, Fingerprint: fp}, first, nil
}

// Fingerprint identifies a file by the first bytes of its content: its first
// line, up to FingerprintBytes. ok is false while that line is incomplete.
func Fingerprint(head []byte) (fp uint64, first []byte, ok bool) {
	first = head[:min(len(head), FingerprintBytes)]
	if i := indexByte(first, '\n'); i >= 0 {
		first = first[:i]
	} else if len(first) < FingerprintBytes {
		return 0, nil, false
	}
	return fingerprint(first), first, true
}

// endOfLastLine returns the offset just past the file's last newline.
func endOfLastLine(f *os.File) (uint64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	var buf [4096]byte
	for end := fi.Size(); end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return uint64(start) + uint64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// fingerprint is 64-bit FNV-1a: fast, stable across versions, and with the
// first line's nanosecond timestamp in it, collisions within one container
// directory are not a practical concern.
func fingerprint(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// Key is the file's identity.
func (t *File) Key() checkpoint.Key { return t.key }

// Format is the runtime format detected from the first line.
func (t *File) Format() cri.Format { return t.format }

// ReadOffset is the offset of the next byte to read.
func (t *File) ReadOffset() uint64 { return t.readOffset }

// Read reads at most len(buf) appended bytes and calls emit for every record
// they complete. It returns how many bytes it read; 0 with a nil error means
// the file has nothing new.
func (t *File) Read(buf []byte, emit func(cri.Record)) (int, error) {
	n, err := t.f.ReadAt(buf, int64(t.readOffset))
	if n > 0 {
		t.readOffset += uint64(n)
		t.framer.Write(buf[:n])
		for {
			rec, ok := t.framer.Next()
			if !ok {
				break
			}
			emit(rec)
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("read %s at %d: %w", t.Rel, t.readOffset, err)
	}
	if n < len(buf) {
		// At the end for now: an idle file keeps no buffer.
		t.framer.Trim()
	}
	return n, nil
}

// Truncated tells whether the file is now shorter than what was read: it was
// truncated (copytruncate rotation) and must be read again as a new file.
func (t *File) Truncated() (bool, error) {
	if _, ok := t.f.(*gzipSource); ok {
		return false, nil // a compressed copy never changes
	}
	fi, err := t.f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", t.Rel, err)
	}
	return uint64(fi.Size()) < t.readOffset, nil
}

// Offset is the NextOffset of the last record emitted (or where reading
// started): what the file's checkpoint says once they are all acknowledged.
func (t *File) Offset() uint64 { return t.framer.Offset() }

// Flush returns the file's last record if the file ends in a sequence of
// partial lines without its final part, all of them complete (see
// cri.Framer.Flush), flagged Truncated. Call it when the file is gone and
// read to its end: the final part will never come.
func (t *File) Flush() (cri.Record, bool) { return t.framer.Flush() }

// Gone tells whether the file has no name left: deleted, as kubelet deletes
// a rotated file once it compressed it, long after the runtime moved on to a
// new file. A compressed copy is the copy of a file that is gone.
func (t *File) Gone() (bool, error) {
	if _, ok := t.f.(*gzipSource); ok {
		return true, nil
	}
	fi, err := t.f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", t.Rel, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("stat %s: no link count on this platform", t.Rel)
	}
	return st.Nlink == 0, nil
}

// Pending is the number of bytes read but not yet framed into a record (an
// unfinished last line, or partial lines waiting for their final part).
func (t *File) Pending() int { return t.framer.Buffered() }

// Close closes the file.
func (t *File) Close() error { return t.f.Close() }
