//go:build linux

package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A write to a file in a watched container directory arrives as a write
// event with the file's path; a new directory as a structure event; Rel
// says where in the tree a path is.
func TestEvents(t *testing.T) {
	root := t.TempDir()
	container := filepath.Join(root, "ns_pod_uid", "app")
	if err := os.MkdirAll(container, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	added, failed := w.Sync([]string{filepath.Dir(container), container})
	if !added || len(failed) != 0 {
		t.Fatalf("Sync: added %v, failed %v", added, failed)
	}
	log := filepath.Join(container, "0.log")
	if err := os.WriteFile(log, []byte("line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "ns_other_uid"), 0o755); err != nil {
		t.Fatal(err)
	}
	var wrote, structure bool
	deadline := time.After(10 * time.Second)
	for !wrote || !structure {
		select {
		case chunk := <-w.Chunks():
			if err := w.Decode(chunk, func(name []byte, mask uint32) {
				wrote = wrote || (string(name) == log && mask&MaskWrite != 0)
				structure = structure || mask&MaskStructure != 0
			}); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatalf("events: write %v, structure %v", wrote, structure)
		}
	}
	if rel, depth := w.Rel(log); rel != "ns_pod_uid/app/0.log" || depth != 3 {
		t.Fatalf("Rel = %q, %d", rel, depth)
	}
	if _, depth := w.Rel("/elsewhere"); depth != 0 {
		t.Fatalf("a path outside the root has depth %d", depth)
	}
}
