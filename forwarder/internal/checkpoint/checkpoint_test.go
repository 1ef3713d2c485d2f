package checkpoint

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAdvanceSyncReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a := Key{Device: 1, Inode: 2, Fingerprint: 3}
	b := Key{Device: 1, Inode: 9, Fingerprint: 4}
	s.Advance(a, "ns_p_u/c/0.log", 100)
	s.Advance(a, "ns_p_u/c/0.log", 50) // stale ack: ignored
	s.Advance(b, "ns_p_u/c/1.log", 7)
	s.Advance(a, "ns_p_u/c/0.log.20231107-020510", 100) // renamed: path follows
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f := func(k Key, wantPath string, wantOffset uint64) {
		t.Helper()
		e, ok := s2.Get(k)
		if !ok || e.Path != wantPath || e.Offset != wantOffset {
			t.Fatalf("Get(%v) = %+v %v, want %s@%d", k, e, ok, wantPath, wantOffset)
		}
	}
	f(a, "ns_p_u/c/0.log.20231107-020510", 100)
	f(b, "ns_p_u/c/1.log", 7)

	s2.Forget(func(e Entry) bool { return e.Key != b })
	if err := s2.Sync(); err != nil {
		t.Fatal(err)
	}
	s3, _ := Open(path)
	if s3.Len() != 1 {
		t.Fatalf("after Forget: %d entries, want 1", s3.Len())
	}
	// No temporary files are left behind.
	files, _ := os.ReadDir(filepath.Dir(path))
	if len(files) != 1 {
		t.Fatalf("directory holds %d files, want 1", len(files))
	}
}

func TestOpenRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	for _, content := range []string{"{", `{"version":99,"files":[]}`} {
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := Open(path); err == nil {
			t.Fatalf("Open accepted %q", content)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"files":[{"dev":1,"ino":2,"fp":3,"path":"ns_p_u/c/0.log","offset":100}]}`))
	f.Add([]byte(`{"version":1,"files":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Decode(b) // must not panic
	})
}

// Run writes what was advanced every interval and once more when stopped;
// a store opened without a file is the node's first start, one opened
// from a file is not.
func TestRunWritesAndFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Fresh() {
		t.Fatal("a store without a file is not fresh")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, time.Hour, slog.New(slog.DiscardHandler)) }()
	s.Advance(Key{Device: 1, Inode: 2, Fingerprint: 3}, "ns_p_u/c/0.log", 42)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := again.Get(Key{Device: 1, Inode: 2, Fingerprint: 3}); !ok || e.Offset != 42 || again.Fresh() {
		t.Fatalf("after Run stopped: entry %+v %v, fresh %v", e, ok, again.Fresh())
	}
}
