package reader

import (
	"compress/gzip"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/forwarder/internal/tail"
)

// reportLost runs once at start-up, for checkpointed files that are gone:
// while the forwarder was down, kubelet rotated and compressed them. A
// running forwarder keeps rotated files open and reads them to the end, so
// this is the one way bytes are skipped. The compressed copy, matched by the
// fingerprint of its first line, tells how many; they are counted and logged
// with the file's name.
func (r *Reader) reportLost(gone []checkpoint.Entry) {
	byDir := map[string][]checkpoint.Entry{}
	for _, e := range gone {
		d := path.Dir(e.Path)
		byDir[d] = append(byDir[d], e)
	}
	for dir, entries := range byDir {
		gzs, _ := filepath.Glob(filepath.Join(r.cfg.PodsRoot, dir, "*.gz"))
		for _, gz := range gzs {
			fp, size, err := gzipFingerprint(gz)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if e.Fingerprint != fp || uint64(size) <= e.Offset {
					continue
				}
				lost := uint64(size) - e.Offset
				r.metrics.lostBytes.WithLabelValues("compressed_before_read").Add(float64(lost))
				r.log.Warn("a log file was rotated and compressed while the forwarder was down, before it was read to its end; its unread bytes are lost",
					"file", e.Path, "compressed_as", filepath.Base(gz), "read_up_to", e.Offset, "lost_bytes", lost)
			}
		}
	}
}

// gzipFingerprint returns the fingerprint and uncompressed size of a
// compressed log file.
func gzipFingerprint(name string) (uint64, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, 0, err
	}
	head := make([]byte, tail.FingerprintBytes)
	n, err := io.ReadFull(zr, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return 0, 0, err
	}
	fp, _, ok := tail.Fingerprint(head[:n])
	if !ok {
		return 0, 0, io.ErrUnexpectedEOF
	}
	rest, err := io.Copy(io.Discard, zr)
	if err != nil {
		return 0, 0, err
	}
	return fp, int64(n) + rest, nil
}
