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

// recoverCompressed runs once at start-up, for checkpointed files that are
// gone: while the forwarder was down, kubelet rotated and compressed them
// before they were read to their end. (A running forwarder keeps rotated
// files open and reads them to their end.) The compressed copy, found by the
// fingerprint of its first line, is read from the checkpointed offset on;
// its records keep their offsets, hence their document ids.
func (r *Reader) recoverCompressed(gone []checkpoint.Entry) {
	byDir := map[string][]checkpoint.Entry{}
	for _, e := range gone {
		d := path.Dir(e.Path)
		byDir[d] = append(byDir[d], e)
	}
	for dir, entries := range byDir {
		copies := map[uint64]string{} // fingerprint → compressed file
		gzs, _ := filepath.Glob(filepath.Join(r.cfg.PodsRoot, dir, "*.gz"))
		for _, gz := range gzs {
			if fp, err := gzipFingerprint(gz); err == nil {
				copies[fp] = gz
			}
		}
		for _, e := range entries {
			gz, ok := copies[e.Fingerprint]
			if !ok {
				// Deleted for good; most likely it had been read to its end.
				r.log.Debug("checkpointed file is gone", "file", e.Path, "read_up_to", e.Offset)
				continue
			}
			rel := path.Join(dir, filepath.Base(gz))
			t, err := tail.OpenCompressed(gz, rel, e.Key, e.Offset, r.cfg.MaxRecordBytes)
			if err != nil {
				r.log.Warn("cannot read the compressed copy of a file that was not read to its end; its rest is lost",
					"file", e.Path, "compressed_as", rel, "err", err)
				continue
			}
			id := fileID{dev: e.Device, ino: e.Inode, compressed: true}
			if r.files[id] != nil {
				t.Close()
				continue
			}
			r.log.Info("reading the rest of a file rotated and compressed while the forwarder was down",
				"file", e.Path, "compressed_as", rel, "from", e.Offset)
			r.metrics.recovered.Inc()
			// Not "seen" by scans (they skip .gz): closed once read to its end.
			r.add(id, &openFile{t: t})
		}
	}
}

// gzipFingerprint returns the fingerprint of a compressed log file.
func gzipFingerprint(name string) (uint64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	head := make([]byte, tail.FingerprintBytes)
	n, err := io.ReadFull(zr, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return 0, err
	}
	fp, _, ok := tail.Fingerprint(head[:n])
	if !ok {
		return 0, io.ErrUnexpectedEOF
	}
	return fp, nil
}
