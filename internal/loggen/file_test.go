package loggen

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOpenFileAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "0.log")
	for i := range 2 {
		w, err := OpenFile(path, FormatCRI, FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(i) * 45; w.Size() != want {
			t.Errorf("open %d: Size() = %d, want %d", i, w.Size(), want)
		}
		if _, err := w.WriteLine(t0, "stdout", "line"); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	b, _ := os.ReadFile(path)
	if want := strings.Repeat("2023-11-07T02:05:10.616482913Z stdout F line\n", 2); string(b) != want {
		t.Errorf("file = %q, want %q", b, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// readMaybeGzip reads a log file, decompressing .gz files.
func readMaybeGzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	w, err := OpenFile(path, FormatDocker, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write := func(msg string) {
		t.Helper()
		if _, err := w.WriteLine(t0, "stdout", msg); err != nil {
			t.Fatal(err)
		}
	}
	rotate := func(now time.Time, want string) {
		t.Helper()
		got, err := w.Rotate(now)
		if err != nil {
			t.Fatal(err)
		}
		if got != filepath.Join(dir, want) {
			t.Errorf("Rotate(%v) = %s, want %s", now, got, want)
		}
		if w.Size() != 0 {
			t.Errorf("Size() after Rotate = %d", w.Size())
		}
	}
	write("one")
	// Named in UTC.
	rotate(t0.In(time.FixedZone("CET", 3600)), "0.log.20231107-020510")
	write("two")
	// Same second: kubelet would overwrite; we move on a second.
	rotate(t0.Add(100*time.Millisecond), "0.log.20231107-020511")
	write("three")
	// The clock went back: names still sort in rotation order.
	rotate(t0.Add(-time.Hour), "0.log.20231107-020512")
	write("four")

	want := []string{"0.log", "0.log.20231107-020510", "0.log.20231107-020511", "0.log.20231107-020512"}
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q (KeepRotated 0 keeps all, uncompressed)", got, want)
	}
	for name, msg := range map[string]string{
		"0.log.20231107-020510": "one", "0.log.20231107-020511": "two",
		"0.log.20231107-020512": "three", "0.log": "four",
	} {
		recs := parseLog(t, FormatDocker, readMaybeGzip(t, filepath.Join(dir, name)))
		if len(recs) != 1 || recs[0].msg != msg {
			t.Errorf("%s holds %+v, want %q", name, recs, msg)
		}
	}
}

func TestRotateRetention(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	// Left-overs of an interrupted kubelet: a temporary file, and a file
	// compressed but not yet removed.
	for _, name := range []string{"0.log.20231107-010000.tmp", "0.log.20231107-010101", "0.log.20231107-010101.gz", "1.log"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	w, err := OpenFile(path, FormatCRI, FileOptions{KeepRotated: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	names := make([]string, 5)
	for i := range names {
		if _, err := w.WriteLine(t0, "stdout", "line "+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Duration(i+1) * time.Minute)
		p, err := w.Rotate(now)
		if err != nil {
			t.Fatal(err)
		}
		names[i] = filepath.Base(p)
	}
	// Kubelet with containerLogMaxFiles 4: the live file, the newest
	// rotated file uncompressed, the two before it gzipped.
	want := []string{"0.log", names[2] + ".gz", names[3] + ".gz", names[4], "1.log"}
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %q, want %q", got, want)
	}
	for i := 2; i < 5; i++ {
		name := names[i]
		if i < 4 {
			name += ".gz"
		}
		recs := parseLog(t, FormatCRI, readMaybeGzip(t, filepath.Join(dir, name)))
		if want := "line " + string(rune('a'+i)); len(recs) != 1 || recs[0].msg != want {
			t.Errorf("%s holds %+v, want %q", name, recs, want)
		}
	}
}

func TestRotateKeepOne(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenFile(filepath.Join(dir, "0.log"), FormatCRI, FileOptions{KeepRotated: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var last string
	for i := range 3 {
		w.WriteLine(t0, "stdout", "x")
		p, err := w.Rotate(t0.Add(time.Duration(i) * time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		last = filepath.Base(p)
	}
	if got, want := listDir(t, dir), []string{"0.log", last}; !slices.Equal(got, want) {
		t.Errorf("files %q, want %q", got, want)
	}
}
