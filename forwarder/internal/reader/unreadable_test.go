package reader

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/internal/loggen"
)

// warnLog is a slog handler that keeps the records logged at warning level
// and above, and counts the others.
type warnLog struct {
	mu    sync.Mutex
	warns []logged
	infos []logged
}

type logged struct {
	msg   string
	attrs map[string]string
}

func (h *warnLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *warnLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *warnLog) WithGroup(string) slog.Handler            { return h }

func (h *warnLog) Handle(_ context.Context, r slog.Record) error {
	l := logged{msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case r.Level >= slog.LevelWarn:
		h.warns = append(h.warns, l)
	case r.Level == slog.LevelInfo:
		h.infos = append(h.infos, l)
	}
	return nil
}

// paths returns the "path" of the warnings (or infos) whose message is msg.
func (h *warnLog) paths(infos bool, msg string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	recs := h.warns
	if infos {
		recs = h.infos
	}
	var out []string
	for _, l := range recs {
		if l.msg == msg {
			out = append(out, l.attrs["path"])
		}
	}
	slices.Sort(out)
	return out
}

// counterValues returns a counter vector's values by its reason label.
func counterValues(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

const (
	msgNotRead    = "cannot read a path under the pods root; log files under it are not followed"
	msgNotWatched = "cannot watch a directory under the pods root; polling covers it"
	msgForgotten  = "a path under the pods root that could not be read no longer fails (fixed or gone)"
	unreadableM   = "podlogs_forwarder_unreadable_paths_total"
)

// Tests run as root, which reads a directory of mode 000 anyway: permission
// errors are tested through their classification here.
func TestUnreadableReason(t *testing.T) {
	f := func(err error, want string) {
		t.Helper()
		if got := unreadableReason(err); got != want {
			t.Fatalf("unreadableReason(%v) = %q, want %q", err, got, want)
		}
		if unreadableFix(err) == "" {
			t.Fatalf("no fix for %v", err)
		}
	}
	f(&fs.PathError{Op: "stat", Path: "/p/loop", Err: syscall.ELOOP}, "symlink_loop")
	f(&fs.PathError{Op: "follow", Path: "/p/a/up", Err: fmt.Errorf("it leads back to /p: %w", syscall.ELOOP)}, "symlink_loop")
	f(&fs.PathError{Op: "open", Path: "/p/a", Err: syscall.EACCES}, "permission")
	f(&fs.PathError{Op: "inotify_add_watch", Path: "/p/a", Err: syscall.EPERM}, "permission")
	f(&fs.PathError{Op: "inotify_add_watch", Path: "/p", Err: syscall.ENOSPC}, "other")
	f(&fs.PathError{Op: "open", Path: "/p/a", Err: syscall.EIO}, "other")
	f(errors.New("no device and inode on this platform"), "other")
}

func TestUnreadablePathsWarnOnce(t *testing.T) {
	reg, logs := prometheus.NewRegistry(), &warnLog{}
	u := newUnreadablePaths(newMetrics(reg).unreadablePaths, slog.New(logs))
	if got := counterValues(t, reg, unreadableM); len(got) != 3 || got["symlink_loop"]+got["permission"]+got["other"] != 0 {
		t.Fatalf("before any failure: %v, want every reason at 0", got)
	}
	loop := &fs.PathError{Op: "stat", Path: "/p/a/loop", Err: syscall.ELOOP}
	locked := &fs.PathError{Op: "open", Path: "/p/b", Err: syscall.EACCES}
	lockedWatch := &fs.PathError{Op: "inotify_add_watch", Path: "/p/b", Err: syscall.EACCES}
	full := &fs.PathError{Op: "inotify_add_watch", Path: "/p", Err: syscall.ENOSPC}
	f := func(notRead, notWatched []*fs.PathError, wantCounts map[string]float64, wantNotRead, wantNotWatched, wantForgotten []string) {
		t.Helper()
		u.update(notRead, notWatched)
		if got := counterValues(t, reg, unreadableM); fmt.Sprint(got) != fmt.Sprint(wantCounts) {
			t.Fatalf("counts %v, want %v", got, wantCounts)
		}
		for _, c := range []struct {
			infos     bool
			msg       string
			got, want []string
		}{{false, msgNotRead, nil, wantNotRead}, {false, msgNotWatched, nil, wantNotWatched}, {true, msgForgotten, nil, wantForgotten}} {
			if got := logs.paths(c.infos, c.msg); !slices.Equal(got, c.want) {
				t.Fatalf("%q logged for %v, want %v", c.msg, got, c.want)
			}
		}
	}
	counts := func(loop, perm, other float64) map[string]float64 {
		return map[string]float64{"symlink_loop": loop, "permission": perm, "other": other}
	}
	// A path failing both ways (read and watch) is one problem.
	f([]*fs.PathError{loop, locked}, []*fs.PathError{lockedWatch, full}, counts(1, 1, 1), []string{"/p/a/loop", "/p/b"}, []string{"/p"}, nil)
	// Failing again and again: nothing more.
	for range 5 {
		f([]*fs.PathError{loop, locked}, []*fs.PathError{lockedWatch, full}, counts(1, 1, 1), []string{"/p/a/loop", "/p/b"}, []string{"/p"}, nil)
	}
	// The loop and the watch limit are fixed: forgotten.
	f([]*fs.PathError{locked}, nil, counts(1, 1, 1), []string{"/p/a/loop", "/p/b"}, []string{"/p"}, []string{"/p", "/p/a/loop"})
	// The loop comes back: a new problem, warned about and counted again.
	f([]*fs.PathError{loop, locked}, nil, counts(2, 1, 1), []string{"/p/a/loop", "/p/a/loop", "/p/b"}, []string{"/p"}, []string{"/p", "/p/a/loop"})
	// Everything fixed.
	f(nil, nil, counts(2, 1, 1), []string{"/p/a/loop", "/p/a/loop", "/p/b"}, []string{"/p"}, []string{"/p", "/p/a/loop", "/p/a/loop", "/p/b"})
	if len(u.failing) != 0 {
		t.Fatalf("still remembered: %v", u.failing)
	}
}

// Symbolic link loops under the pods root, scanned again and again, are
// warned about and counted once each; removed, they are forgotten. A link to
// an ancestor directory takes no watch either, so the writes of the node do
// not each cause a rescan.
func TestSymlinkLoopsWarnedOnce(t *testing.T) {
	t.Run("notifications", func(t *testing.T) { testSymlinkLoops(t) })
	t.Run("polling", func(t *testing.T) { testSymlinkLoops(t, func(c *Config) { c.NoWatch = true }) })
}

func testSymlinkLoops(t *testing.T, opts ...func(*Config)) {
	root := t.TempDir()
	w, err := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u1/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeLines(t, w, "first", 0, 1)
	links := map[string]string{
		"ui_ui-1_u1/c":  "c",  // to itself
		"ui_ui-1_u1/up": "..", // to the root
		"loop":          "loop",
	}
	makeLinks := func() {
		for rel, target := range links {
			if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []string
	for rel := range links {
		want = append(want, filepath.Join(root, rel))
	}
	slices.Sort(want)
	makeLinks()
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, append(opts, func(c *Config) {
		c.ScanInterval, c.ResyncInterval = 20*time.Millisecond, 20*time.Millisecond
	})...)
	rg.waitFor(t, 1)
	// Writes, each a notification; many scans.
	for i := range 20 {
		writeLines(t, w, fmt.Sprintf("line %d", i), 0, 1)
		time.Sleep(10 * time.Millisecond)
	}
	rg.waitFor(t, 21)
	if got := rg.warnings.paths(false, msgNotRead); !slices.Equal(got, want) {
		t.Fatalf("warned about %v, want each of %v once", got, want)
	}
	if got := counterValues(t, rg.reg, unreadableM); got["symlink_loop"] != 3 || got["permission"] != 0 || got["other"] != 0 {
		t.Fatalf("counted %v, want 3 symlink loops", got)
	}
	if got := rg.warnings.paths(false, msgNotWatched); len(got) != 0 {
		t.Fatalf("watch failures for %v", got)
	}

	// Fixed: forgotten; back again: warned about again.
	for rel := range links {
		os.Remove(filepath.Join(root, rel))
	}
	waitUntil(t, func() bool { return slices.Equal(rg.warnings.paths(true, msgForgotten), want) })
	makeLinks()
	waitUntil(t, func() bool { return len(rg.warnings.paths(false, msgNotRead)) == 2*len(want) })
	time.Sleep(100 * time.Millisecond) // more scans
	if got := counterValues(t, rg.reg, unreadableM); got["symlink_loop"] != 6 {
		t.Fatalf("counted %v, want 6 symlink loops", got)
	}
}

// A link to an ancestor directory takes no watch. (inotify gives a directory
// one watch whatever the name: the link's name would replace the root's, the
// root's the link's at the next scan, and every replacement calls for a scan
// soon, so that every write made a scan of the whole tree.)
func TestLinkToAncestorTakesNoWatch(t *testing.T) {
	root := t.TempDir()
	w, err := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u1/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeLines(t, w, "first", 0, 1)
	for rel, target := range map[string]string{"ui_ui-1_u1/up": "..", "ui_ui-1_u1/self": "."} {
		if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, func(c *Config) {
		c.ScanInterval, c.PollInterval = time.Hour, time.Hour
	})
	rg.waitFor(t, 1)
	for i := range 30 {
		writeLines(t, w, fmt.Sprintf("line %d", i), 0, 1)
		time.Sleep(10 * time.Millisecond)
	}
	rg.waitFor(t, 31) // read through notifications: the polls are an hour away
	rg.stop()
	if n := rg.reader.scans; n > 4 {
		t.Fatalf("%d scans for 30 writes; want the first (and maybe one more)", n)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
