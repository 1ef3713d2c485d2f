package tail

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/internal/cri"
)

// ErrNotThatFile means a compressed file is not the copy of the file asked for.
var ErrNotThatFile = errors.New("compressed file has another first line")

// OpenCompressed opens the gzip copy kubelet made of a rotated file, to read
// what follows offset in it. key is the identity the file had; its
// fingerprint must match the copy's first line. Records read from it keep
// their offsets in the original file, hence their document ids.
func OpenCompressed(abs, rel string, key checkpoint.Key, offset uint64, maxRecordBytes int) (*File, error) {
	src, err := openGzip(abs)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rel, err)
	}
	head := make([]byte, FingerprintBytes)
	n, err := src.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		src.Close()
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	fp, first, ok := Fingerprint(head[:n])
	if !ok || fp != key.Fingerprint {
		src.Close()
		return nil, ErrNotThatFile
	}
	format := cri.DetectFormat(first)
	// Start over so that reading can skip forward to offset.
	src.Close()
	if src, err = openGzip(abs); err != nil {
		return nil, fmt.Errorf("open %s: %w", rel, err)
	}
	return &File{
		Rel:        rel,
		f:          src,
		key:        key,
		format:     format,
		framer:     cri.NewFramer(format, maxRecordBytes, offset),
		readOffset: offset,
	}, nil
}

// gzipSource reads a gzip file as if it were the file it compresses, for
// reads at growing offsets only (a stream cannot seek back).
type gzipSource struct {
	f   *os.File
	zr  *gzip.Reader
	pos int64
}

func openGzip(name string) (*gzipSource, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &gzipSource{f: f, zr: zr}, nil
}

func (g *gzipSource) ReadAt(p []byte, off int64) (int, error) {
	if off < g.pos {
		return 0, fmt.Errorf("BUG: read at %d behind the stream at %d", off, g.pos)
	}
	if off > g.pos {
		n, err := io.CopyN(io.Discard, g.zr, off-g.pos)
		g.pos += n
		if err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(g.zr, p)
	g.pos += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func (g *gzipSource) Stat() (os.FileInfo, error) { return g.f.Stat() }

func (g *gzipSource) Close() error {
	g.zr.Close()
	return g.f.Close()
}
