package tail

import (
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/internal/cri"
)

const (
	line1 = "2023-11-07T02:05:10.616482913Z stdout F first\n"
	line2 = "2023-11-07T02:05:10.700000000Z stderr F second\n"
)

func open(t *testing.T, content string, start uint64) (*File, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p, "ns_p_u/c/0.log", 1<<20, func(checkpoint.Key) uint64 { return start })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, p
}

func readAll(t *testing.T, f *File) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 7) // small, to cross line boundaries
	for {
		n, err := f.Read(buf, func(r cri.Record) { got = append(got, string(r.Data)) })
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return got
		}
	}
}

func TestReadFromStartAndFromCheckpoint(t *testing.T) {
	f, _ := open(t, line1+line2, 0)
	if got := readAll(t, f); len(got) != 2 || got[1] != line2[:len(line2)-1] {
		t.Fatalf("records %q", got)
	}
	if f.Format() != cri.FormatCRI || f.ReadOffset() != uint64(len(line1+line2)) {
		t.Fatalf("format %v offset %d", f.Format(), f.ReadOffset())
	}
	g, _ := open(t, line1+line2, uint64(len(line1)))
	if got := readAll(t, g); len(got) != 1 || got[0] != line2[:len(line2)-1] {
		t.Fatalf("from checkpoint: records %q", got)
	}
}

func TestAtEndSkipsCompleteLinesOnly(t *testing.T) {
	f, p := open(t, line1+line2+"2023-11-07T02:05:11Z stdout F par", AtEnd)
	if f.ReadOffset() != uint64(len(line1+line2)) {
		t.Fatalf("AtEnd starts at %d, want %d", f.ReadOffset(), len(line1+line2))
	}
	a, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	a.WriteString("tial\n")
	a.Close()
	if got := readAll(t, f); len(got) != 1 || got[0] != "2023-11-07T02:05:11Z stdout F partial" {
		t.Fatalf("records %q", got)
	}
}

func TestIdentity(t *testing.T) {
	a, _ := open(t, line1+line2, 0)
	b, _ := open(t, line1, 0) // same first line, another file
	c, _ := open(t, line2+line1, 0)
	if a.Key().Fingerprint != b.Key().Fingerprint {
		t.Fatal("the fingerprint must depend on the first line only")
	}
	if a.Key().Inode == b.Key().Inode {
		t.Fatal("two files share an inode")
	}
	if a.Key().Fingerprint == c.Key().Fingerprint {
		t.Fatal("different first lines share a fingerprint")
	}
}

func TestNoFirstLineYet(t *testing.T) {
	p := filepath.Join(t.TempDir(), "0.log")
	os.WriteFile(p, []byte("2023-11-07T02:05:10Z stdout F no newline yet"), 0o644)
	if _, err := Open(p, "x", 1<<20, func(checkpoint.Key) uint64 { return 0 }); !errors.Is(err, ErrNoFirstLine) {
		t.Fatalf("Open = %v, want ErrNoFirstLine", err)
	}
}

func TestTruncated(t *testing.T) {
	f, p := open(t, line1+line2, 0)
	readAll(t, f)
	if tr, _ := f.Truncated(); tr {
		t.Fatal("truncated before truncation")
	}
	os.Truncate(p, 0)
	if tr, _ := f.Truncated(); !tr {
		t.Fatal("truncation not seen")
	}
}

func TestOpenCompressed(t *testing.T) {
	dir := t.TempDir()
	gz := filepath.Join(dir, "0.log.20231107-020510.gz")
	f, _ := os.Create(gz)
	zw := gzip.NewWriter(f)
	zw.Write([]byte(line1 + line2))
	zw.Close()
	f.Close()
	fp, _, _ := Fingerprint([]byte(line1))
	key := checkpoint.Key{Device: 1, Inode: 2, Fingerprint: fp}

	c, err := OpenCompressed(gz, "ns_p_u/c/0.log.20231107-020510.gz", key, uint64(len(line1)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := readAll(t, c); len(got) != 1 || got[0] != line2[:len(line2)-1] {
		t.Fatalf("records %q, want the second line only", got)
	}
	if c.Key() != key {
		t.Fatalf("key %v, want the original's %v", c.Key(), key)
	}
	if tr, err := c.Truncated(); tr || err != nil {
		t.Fatalf("Truncated = %v, %v", tr, err)
	}
	if gone, err := c.Gone(); !gone || err != nil {
		t.Fatalf("Gone = %v, %v for a compressed copy", gone, err)
	}
	other := key
	other.Fingerprint++
	if _, err := OpenCompressed(gz, "x", other, 0, 1<<20); !errors.Is(err, ErrNotThatFile) {
		t.Fatalf("another file's key: %v, want ErrNotThatFile", err)
	}
}

func TestGoneAndFlush(t *testing.T) {
	partial := "2023-11-07T02:05:11Z stdout P cut short\n"
	f, p := open(t, line1+partial+"2023-11-07T02:05:12Z std", 0)
	if got := readAll(t, f); len(got) != 1 {
		t.Fatalf("records %q, want the first line only", got)
	}
	if gone, err := f.Gone(); gone || err != nil {
		t.Fatalf("Gone = %v, %v before the file was deleted", gone, err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if gone, err := f.Gone(); !gone || err != nil {
		t.Fatalf("Gone = %v, %v after the file was deleted", gone, err)
	}
	if f.Offset() != uint64(len(line1)) || f.Pending() != len(partial)+24 {
		t.Fatalf("Offset %d, Pending %d before Flush", f.Offset(), f.Pending())
	}
	rec, ok := f.Flush()
	if !ok || !rec.Truncated || string(rec.Data) != partial[:len(partial)-1] || rec.NextOffset != uint64(len(line1+partial)) {
		t.Fatalf("Flush = %+v, %v", rec, ok)
	}
	if f.Offset() != rec.NextOffset || f.Pending() != 24 {
		t.Fatalf("after Flush: Offset %d, Pending %d; want %d, 24 (the unfinished line)", f.Offset(), f.Pending(), rec.NextOffset)
	}
}
