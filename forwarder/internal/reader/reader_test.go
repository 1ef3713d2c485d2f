package reader

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/podlogs/podlogs/forwarder/internal/checkpoint"
	"github.com/podlogs/podlogs/forwarder/internal/finder"
	"github.com/podlogs/podlogs/forwarder/internal/tail"
	"github.com/podlogs/podlogs/internal/cri"
	"github.com/podlogs/podlogs/internal/loggen"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ackingSubmitter acknowledges every batch at once into the store, and
// records the messages it saw.
type ackingSubmitter struct {
	store     *checkpoint.Store
	mu        sync.Mutex
	msgs      map[string]int  // message → times seen
	truncated map[string]bool // messages of records flagged truncated
}

func (a *ackingSubmitter) Space() <-chan struct{} { return nil }

func (a *ackingSubmitter) TrySubmit(b *podlogsv1.Batch, _ int) bool {
	if err := a.submit(b); err != nil {
		panic(err)
	}
	return true
}

func (a *ackingSubmitter) submit(b *podlogsv1.Batch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range b.GetRecords() {
		src := b.GetSources()[r.GetSourceIndex()]
		e, _, err := cri.ParseRecord(cri.FormatCRI, r.GetData(), nil)
		if err != nil {
			return fmt.Errorf("bad record %q: %v", r.GetData(), err)
		}
		a.msgs[string(e.Message)]++
		if r.GetTruncated() {
			if a.truncated == nil {
				a.truncated = map[string]bool{}
			}
			a.truncated[string(e.Message)] = true
		}
		id := src.GetIdentity()
		a.store.Advance(checkpoint.Key{Device: id.GetDevice(), Inode: id.GetInode(), Fingerprint: id.GetFingerprint()}, src.GetPath(), r.GetNextOffset())
	}
	return nil
}

func (a *ackingSubmitter) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.msgs)
}

type rig struct {
	root, ckpt string
	sub        *ackingSubmitter
	reg        *prometheus.Registry
	warnings   *warnLog
	reader     *Reader // read its fields only after stop
	cancel     context.CancelFunc
	done       chan struct{}
}

func startReader(t *testing.T, root, ckpt string, sub *ackingSubmitter, opts ...func(*Config)) *rig {
	t.Helper()
	store, err := checkpoint.Open(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if sub == nil {
		sub = &ackingSubmitter{msgs: map[string]int{}}
	}
	sub.store = store
	cfg := Config{
		PodsRoot: root, ScanInterval: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond, ReadBytes: 4096,
		BatchBytes: 8192, BatchRecords: 50, BatchLinger: 10 * time.Millisecond, MaxRecordBytes: 1 << 20,
		ReadDelay: 10 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	reg, warnings := prometheus.NewRegistry(), &warnLog{}
	r := New(cfg, store, sub, reg, slog.New(warnings))
	ctx, cancel := context.WithCancel(context.Background())
	rg := &rig{root: root, ckpt: ckpt, sub: sub, reg: reg, warnings: warnings, reader: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rg.done)
		if err := r.Run(ctx); err != nil {
			t.Error(err)
		}
		if err := store.Sync(); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(rg.stop)
	return rg
}

func (rg *rig) stop() {
	rg.cancel()
	<-rg.done
}

func (rg *rig) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rg.sub.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d distinct lines, want %d", rg.sub.count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a doubled line would arrive now
	rg.sub.mu.Lock()
	defer rg.sub.mu.Unlock()
	if len(rg.sub.msgs) != n {
		t.Fatalf("read %d distinct lines, want %d", len(rg.sub.msgs), n)
	}
	for m, c := range rg.sub.msgs {
		if c != 1 {
			t.Fatalf("line %q read %d times", m, c)
		}
	}
}

func writeLines(t *testing.T, w *loggen.FileWriter, prefix string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := w.WriteLine(time.Now(), "stdout", fmt.Sprintf("%s line %d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRotationByRenameReadsEveryLineOnce(t *testing.T) {
	t.Run("notifications", func(t *testing.T) { testRotation(t) })
	t.Run("polling", func(t *testing.T) { testRotation(t, func(c *Config) { c.NoWatch = true }) })
}

func testRotation(t *testing.T, opts ...func(*Config)) {
	root := t.TempDir()
	w, err := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u1/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{SplitBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, opts...)
	total := 0
	for round := range 5 {
		writeLines(t, w, fmt.Sprintf("round %d, a line long enough to be split in parts by the runtime", round), 0, 200)
		total += 200
		if _, err := w.Rotate(time.Now().Add(time.Duration(round) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	writeLines(t, w, "after", 0, 10)
	total += 10
	rg.waitFor(t, total)
}

func TestCopyTruncateReadsTheNewContent(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "ui_ui-1_u1/ui/0.log")
	w, err := loggen.OpenFile(path, loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil)
	writeLines(t, w, "before", 0, 100)
	rg.waitFor(t, 100)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, "after truncation", 0, 30)
	rg.waitFor(t, 130)
}

func TestRestartResumesFromCheckpoint(t *testing.T) {
	root := t.TempDir()
	ckpt := filepath.Join(t.TempDir(), "ckpt.json")
	w, err := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u1/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sub := &ackingSubmitter{msgs: map[string]int{}}
	rg := startReader(t, root, ckpt, sub)
	writeLines(t, w, "first", 0, 100)
	rg.waitFor(t, 100)
	rg.stop()

	writeLines(t, w, "while down", 0, 50)
	// The same submitter: a line read again would count twice.
	rg = startReader(t, root, ckpt, sub)
	rg.waitFor(t, 150)
}

func TestPartialLastLineWaits(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "ui_ui-1_u1/ui/0.log")
	os.MkdirAll(filepath.Dir(path), 0o755)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil)
	fmt.Fprintf(f, "2023-11-07T02:05:10.616482913Z stdout F one\n2023-11-07T02:05:10.7Z stdout F tw")
	rg.waitFor(t, 1)
	fmt.Fprintf(f, "o\n")
	rg.waitFor(t, 2)
	rg.sub.mu.Lock()
	defer rg.sub.mu.Unlock()
	if rg.sub.msgs["two"] != 1 {
		t.Fatalf("lines read: %v", rg.sub.msgs)
	}
}

// A file that ends in partial lines (its container was killed mid-line) and
// is rotated away, then deleted: the record they make is sent once, flagged
// truncated, and only the bytes after the last newline are lost.
func TestPartialLinesOfAGoneFileAreSent(t *testing.T) {
	t.Run("notifications", func(t *testing.T) { testPartialLinesOfAGoneFile(t) })
	t.Run("polling", func(t *testing.T) { testPartialLinesOfAGoneFile(t, func(c *Config) { c.NoWatch = true }) })
}

func testPartialLinesOfAGoneFile(t *testing.T, opts ...func(*Config)) {
	root := t.TempDir()
	path := filepath.Join(root, "ui_ui-1_u1/ui/0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	const ts = "2023-11-07T02:05:10.616482913Z"
	unfinished := ts + " stdout F never ended"
	if err := os.WriteFile(path, []byte(ts+" stdout F before\n"+ts+" stdout P killed \n"+ts+" stdout P mid-line\n"+unfinished), 0o644); err != nil {
		t.Fatal(err)
	}
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, opts...)
	rg.waitFor(t, 1)

	rotated := path + ".20231107-020510"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(ts+" stdout F after\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rg.waitFor(t, 2)
	// Rotated, but still there: the final part could still come.
	time.Sleep(100 * time.Millisecond)
	rg.sub.mu.Lock()
	early := rg.sub.msgs["killed mid-line"]
	rg.sub.mu.Unlock()
	if early != 0 {
		t.Fatal("the partial record was sent before its file was gone")
	}

	if err := os.Remove(rotated); err != nil {
		t.Fatal(err)
	}
	rg.waitFor(t, 3) // each exactly once
	rg.sub.mu.Lock()
	got, trunc := rg.sub.msgs["killed mid-line"], rg.sub.truncated
	rg.sub.mu.Unlock()
	if got != 1 || len(trunc) != 1 || !trunc["killed mid-line"] {
		t.Fatalf("partial record sent %d times; truncated records: %v", got, trunc)
	}
	if lost := counterValues(t, rg.reg, "podlogs_forwarder_lost_bytes_total"); lost["unterminated_last_line"] != float64(len(unfinished)) {
		t.Fatalf("lost bytes %v, want %d (the unfinished line only)", lost, len(unfinished))
	}
}

// holdingSubmitter takes batches without acknowledging them while hold is
// set, as a sender whose aggregator is slow, and acknowledges them on release.
type holdingSubmitter struct {
	*ackingSubmitter
	mu   sync.Mutex
	hold bool
	held []*podlogsv1.Batch
}

func (h *holdingSubmitter) TrySubmit(b *podlogsv1.Batch, size int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hold {
		h.held = append(h.held, b)
		return true
	}
	return h.ackingSubmitter.TrySubmit(b, size)
}

func (h *holdingSubmitter) setHold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = true
}

func (h *holdingSubmitter) heldRecords() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, b := range h.held {
		n += len(b.GetRecords())
	}
	return n
}

func (h *holdingSubmitter) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.held {
		h.ackingSubmitter.TrySubmit(b, 0)
	}
	h.held, h.hold = nil, false
}

// A file closed (gone and read to its end) before its last records are
// acknowledged keeps its checkpoint entry until they are: a restart meanwhile
// must read the rest again (from the compressed copy kubelet made).
func TestEntryOfAClosedFileStaysUntilAcknowledged(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "ui_ui-1_u1/ui/0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	const first = "2023-11-07T02:05:10.616482913Z stdout F one\n"
	const rest = "2023-11-07T02:05:11Z stdout F two\n2023-11-07T02:05:12Z stdout P three\n"
	if err := os.WriteFile(path, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	fp, _, _ := tail.Fingerprint([]byte(first))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	key := checkpoint.Key{Device: uint64(st.Dev), Inode: st.Ino, Fingerprint: fp}

	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "ckpt.json"))
	if err != nil {
		t.Fatal(err)
	}
	sub := &holdingSubmitter{ackingSubmitter: &ackingSubmitter{msgs: map[string]int{}, store: store}}
	r := New(Config{
		PodsRoot: root, ScanInterval: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond, ReadBytes: 4096,
		BatchBytes: 8192, BatchRecords: 50, BatchLinger: 10 * time.Millisecond, MaxRecordBytes: 1 << 20,
	}, store, sub, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	rg := &rig{sub: sub.ackingSubmitter}
	rg.waitFor(t, 1)
	if e, ok := store.Get(key); !ok || e.Offset != uint64(len(first)) {
		t.Fatalf("entry %+v, %v after the first ack", e, ok)
	}

	sub.setHold()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(rest)
	f.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return sub.heldRecords() == 2 }) // "two", and "three" flushed
	time.Sleep(200 * time.Millisecond)                          // scans, which forget the entries of gone files
	if e, ok := store.Get(key); !ok || e.Offset != uint64(len(first)) {
		t.Fatalf("entry %+v, %v while the last records are not acknowledged; want it kept at %d", e, ok, len(first))
	}
	sub.release()
	if e, ok := store.Get(key); !ok || e.Offset != uint64(len(first+rest)) {
		t.Fatalf("entry %+v, %v after the acknowledgement, want offset %d", e, ok, len(first+rest))
	}
	waitUntil(t, func() bool { _, ok := store.Get(key); return !ok }) // acknowledged: forgotten
	cancel()
	<-done
	if len(r.closing) != 0 {
		t.Fatalf("closing still holds %v", r.closing)
	}
}

// With notifications, a line written to a file quiet for a while is read at
// once (or after the read delay), although the safety poll is an hour away.
func TestQuietFileIsReadOnWrite(t *testing.T) {
	t.Run("read delay", func(t *testing.T) { testQuietFileIsReadOnWrite(t) })
	t.Run("no read delay", func(t *testing.T) { testQuietFileIsReadOnWrite(t, func(c *Config) { c.ReadDelay = 0 }) })
}

func testQuietFileIsReadOnWrite(t *testing.T, opts ...func(*Config)) {
	root := t.TempDir()
	w, err := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u1/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeLines(t, w, "first", 0, 1)
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, append(opts, func(c *Config) {
		c.PollInterval, c.ScanInterval = time.Hour, time.Hour
	})...)
	rg.waitFor(t, 1)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	writeLines(t, w, "after a pause", 0, 1)
	rg.waitFor(t, 2)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a write to a quiet file took %s to be read", d)
	}
	// A new pod appears: found through the notification, not the hourly scan.
	w2, err := loggen.OpenFile(filepath.Join(root, "carts_carts-1_u2/carts/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	writeLines(t, w2, "new pod", 0, 3)
	rg.waitFor(t, 5)
}

func TestSkipExistingOnFirstStart(t *testing.T) {
	root := t.TempDir()
	old, err := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u1/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	writeLines(t, old, "old", 0, 50)
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, func(c *Config) { c.SkipExisting = true })
	time.Sleep(100 * time.Millisecond)
	writeLines(t, old, "new in an old file", 0, 5)
	fresh, err := loggen.OpenFile(filepath.Join(root, "ui_ui-2_u2/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	writeLines(t, fresh, "new pod", 0, 5) // found later: read from its start
	rg.waitFor(t, 10)
	rg.sub.mu.Lock()
	defer rg.sub.mu.Unlock()
	for m := range rg.sub.msgs {
		if strings.HasPrefix(m, "old ") {
			t.Fatalf("an existing line was shipped: %q", m)
		}
	}
}

func TestFilterSkipsExcludedContainers(t *testing.T) {
	root := t.TempDir()
	flt, err := finder.NewFilter(nil, []string{"kube-system"})
	if err != nil {
		t.Fatal(err)
	}
	sys, _ := loggen.OpenFile(filepath.Join(root, "kube-system_kube-proxy-1_u1/kube-proxy/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	app, _ := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u2/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
	defer sys.Close()
	defer app.Close()
	writeLines(t, sys, "system", 0, 10)
	writeLines(t, app, "app", 0, 10)
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, func(c *Config) { c.Filter = flt })
	rg.waitFor(t, 10)
}

// gatedSubmitter refuses every batch until opened, like a full window.
type gatedSubmitter struct {
	*ackingSubmitter
	mu    sync.Mutex
	open  bool
	space chan struct{}
}

func (g *gatedSubmitter) TrySubmit(b *podlogsv1.Batch, size int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return false
	}
	return g.ackingSubmitter.TrySubmit(b, size)
}

func (g *gatedSubmitter) Space() <-chan struct{} { return g.space }

func (g *gatedSubmitter) release() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
	close(g.space)
}

// While the window is full nothing is read, but files keep being found and
// opened: kubelet deletes rotated files, and an open file stays readable.
func TestFilesOpenedWhileWindowIsFull(t *testing.T) {
	root := t.TempDir()
	w, err := loggen.OpenFile(filepath.Join(root, "ui_ui-1_u1/ui/0.log"), loggen.FormatCRI, loggen.FileOptions{KeepRotated: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sub := &ackingSubmitter{msgs: map[string]int{}}
	gate := &gatedSubmitter{ackingSubmitter: sub, space: make(chan struct{})}
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "ckpt.json"))
	if err != nil {
		t.Fatal(err)
	}
	sub.store = store
	r := New(Config{
		PodsRoot: root, ScanInterval: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond, ReadBytes: 4096,
		BatchBytes: 1024, BatchRecords: 10, BatchLinger: 10 * time.Millisecond, MaxRecordBytes: 1 << 20,
	}, store, gate, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	total := 0
	for round := range 5 {
		writeLines(t, w, fmt.Sprintf("round %d", round), 0, 100)
		total += 100
		time.Sleep(100 * time.Millisecond) // a scan or a notification finds the new file
		if _, err := w.Rotate(time.Now().Add(time.Duration(round) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// The first files are gone from the disk by now.
	if matches, _ := filepath.Glob(filepath.Join(root, "ui_ui-1_u1/ui/*")); len(matches) > 3 {
		t.Fatalf("rotation kept %d files: %v", len(matches), matches)
	}
	gate.release()
	rg := &rig{sub: sub}
	rg.waitFor(t, total)
}

// A file deleted while the forwarder is down and a new one created in its
// place, possibly on the same inode: the checkpoint of the old file must not
// apply to the new one (its first line, hence its fingerprint, differs).
func TestInodeReuseAfterRestart(t *testing.T) {
	root := t.TempDir()
	ckpt := filepath.Join(t.TempDir(), "ckpt.json")
	path := filepath.Join(root, "ui_ui-1_u1/ui/0.log")
	w, err := loggen.OpenFile(path, loggen.FormatCRI, loggen.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, w, "old file", 0, 200)
	w.Close()
	sub := &ackingSubmitter{msgs: map[string]int{}}
	rg := startReader(t, root, ckpt, sub)
	rg.waitFor(t, 200)
	rg.stop()
	oldIno := inode(t, path)

	// Delete and recreate until the filesystem hands out the same inode
	// again (ext4 and tmpfs usually do at once); the test holds either way.
	reused := false
	for attempt := 0; attempt < 20 && !reused; attempt++ {
		os.Remove(path)
		w, err = loggen.OpenFile(path, loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		reused = inode(t, path) == oldIno
		if !reused {
			w.Close()
		}
	}
	if !reused {
		w, _ = loggen.OpenFile(path, loggen.FormatCRI, loggen.FileOptions{})
		t.Log("the filesystem did not reuse the inode; testing delete and recreate only")
	}
	defer w.Close()
	writeLines(t, w, "new file", 0, 50) // shorter than the old checkpoint offset
	rg = startReader(t, root, ckpt, sub)
	rg.waitFor(t, 250)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// A file rotated and compressed while the forwarder was down, before it was
// read to its end: the rest is read from the compressed copy, each line once.
func TestReadsTheRestOfAFileCompressedWhileDown(t *testing.T) {
	root := t.TempDir()
	ckpt := filepath.Join(t.TempDir(), "ckpt.json")
	path := filepath.Join(root, "ui_ui-1_u1/ui/0.log")
	w, err := loggen.OpenFile(path, loggen.FormatCRI, loggen.FileOptions{KeepRotated: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeLines(t, w, "read", 0, 10)
	sub := &ackingSubmitter{msgs: map[string]int{}}
	rg := startReader(t, root, ckpt, sub)
	rg.waitFor(t, 10)
	rg.stop()

	writeLines(t, w, "written while down", 0, 7)
	// Two rotations: the first file is renamed, then compressed and removed.
	for i := range 2 {
		if _, err := w.Rotate(time.Now().Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
		writeLines(t, w, fmt.Sprintf("after rotation %d", i), 0, 3)
	}
	if gz, _ := filepath.Glob(filepath.Join(root, "ui_ui-1_u1/ui/*.gz")); len(gz) != 1 {
		t.Fatalf("want the first file compressed, got %v", gz)
	}
	rg = startReader(t, root, ckpt, sub)
	rg.waitFor(t, 10+7+6)
}

// A pod directory deleted and made again under the same name (a static pod
// restarted with the same uid) is watched again: later writes to its new
// file are read on their notification, the safety nets being an hour away.
func TestDirectoryMadeAgainIsWatched(t *testing.T) {
	root := t.TempDir()
	pod := filepath.Join(root, "ui_ui-1_u1")
	open := func() *loggen.FileWriter {
		w, err := loggen.OpenFile(filepath.Join(pod, "ui/0.log"), loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := open()
	writeLines(t, w, "first", 0, 1)
	rg := startReader(t, root, filepath.Join(t.TempDir(), "ckpt.json"), nil, func(c *Config) {
		c.PollInterval, c.ScanInterval = time.Hour, time.Hour
	})
	rg.waitFor(t, 1)
	w.Close()
	if err := os.RemoveAll(pod); err != nil {
		t.Fatal(err)
	}
	w = open()
	defer w.Close()
	writeLines(t, w, "again", 0, 2)
	rg.waitFor(t, 3)
	time.Sleep(100 * time.Millisecond) // let the notifications of the removal pass
	writeLines(t, w, "later", 0, 2)
	rg.waitFor(t, 5)
}
