package loggen

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"
)

// collect returns an Observe func and the lines it saw.
func collect() (func(Line), func() []Line) {
	var mu sync.Mutex
	var lines []Line
	return func(l Line) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, l)
		}, func() []Line {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(lines)
		}
}

// readContainer reads back every logical line of a container's log files,
// rotated ones (oldest first, gzipped or not) then the live one.
func readContainer(t *testing.T, format Format, live string) []record {
	t.Helper()
	dir := filepath.Dir(live)
	var rotated []string
	for _, name := range listDir(t, dir) {
		if strings.HasPrefix(name, filepath.Base(live)+".") {
			rotated = append(rotated, name)
		}
	}
	slices.Sort(rotated)
	var out []record
	for _, name := range append(rotated, filepath.Base(live)) {
		out = append(out, parseLog(t, format, readMaybeGzip(t, filepath.Join(dir, name)))...)
	}
	return out
}

var podDirRE = regexp.MustCompile(`^([a-z0-9-]+)_([a-z0-9-]+-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5})_([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})$`)

// TestRunObserve checks that Observe sees every logical line once, with
// the file it went to, and that the files hold exactly those lines.
func TestRunObserve(t *testing.T) {
	for _, format := range []string{"cri", "docker", "mixed"} {
		t.Run(format, func(t *testing.T) {
			root := t.TempDir()
			observe, observed := collect()
			const pods, lines = 5, 120
			cfg := Config{
				Root:        root,
				Seed:        7,
				Pods:        pods,
				Format:      format,
				Lines:       lines,
				RotateBytes: 64 << 10,
				RotateKeep:  100,
				Mix:         Mix{Text: 1, JSON: 1, Stderr: 0.2, StackTrace: 0.05, Long: 0.03},
				Observe:     observe,
			}
			formats := map[string]Format{}
			for _, p := range planPods(cfg.withDefaults()) {
				formats[p.File] = p.Format
			}
			st, err := Run(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := observed()
			if st.Lines != pods*lines || int64(len(got)) != st.Lines {
				t.Fatalf("Stats.Lines = %d, observed %d, want %d", st.Lines, len(got), pods*lines)
			}
			if st.Rotations == 0 {
				t.Error("no rotation with RotateBytes 64 KiB")
			}
			byFile := map[string][]Line{}
			for _, l := range got {
				byFile[l.File] = append(byFile[l.File], l)
			}
			if len(byFile) != pods {
				t.Fatalf("lines went to %d files, want %d", len(byFile), pods)
			}
			var total int64
			for file, want := range byFile {
				m := podDirRE.FindStringSubmatch(strings.Split(file, string(filepath.Separator))[0])
				if m == nil || file != filepath.Join(m[0], m[1], "0.log") {
					t.Fatalf("file %q does not follow <ns>_<pod>_<uid>/<container>/0.log", file)
				}
				if want[0].Namespace != m[1] || want[0].Pod != m[2] || want[0].PodUID != m[3] || want[0].Container != m[1] {
					t.Errorf("line metadata %+v does not match path %s", want[0], file)
				}
				f := formats[file]
				if (format == "cri" && f != FormatCRI) || (format == "docker" && f != FormatDocker) {
					t.Errorf("%s is %v, want %s", file, f, format)
				}
				recs := readContainer(t, f, filepath.Join(root, file))
				if len(recs) != len(want) {
					t.Fatalf("%s: read %d lines, observed %d", file, len(recs), len(want))
				}
				for i, r := range recs {
					w := want[i]
					if r.msg != w.Message || r.stream != w.Stream || !r.time.Equal(w.Time) {
						t.Fatalf("%s line %d:\nread     %s %v %.200q\nobserved %s %v %.200q", file, i, r.stream, r.time, r.msg, w.Stream, w.Time, w.Message)
					}
				}
			}
			filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					total += int64(len(readMaybeGzip(t, path)))
				}
				return err
			})
			if total != st.Bytes {
				t.Errorf("Stats.Bytes = %d, files hold %d", st.Bytes, total)
			}
		})
	}
}

// snapshot returns every file under root by relative path.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(root, path)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestRunDeterministic(t *testing.T) {
	run := func(seed int64) map[string]string {
		root := t.TempDir()
		// In a synctest bubble the clock starts at the same instant and
		// stands still while nothing sleeps: the file bytes, timestamps
		// included, depend on the seed alone.
		synctest.Test(t, func(t *testing.T) {
			_, err := Run(t.Context(), Config{
				Root: root, Seed: seed, Pods: 7, Format: "mixed", Lines: 150,
				Mix: Mix{Text: 1, JSON: 1, Stderr: 0.2, StackTrace: 0.05, Long: 0.02},
			})
			if err != nil {
				t.Fatal(err)
			}
		})
		return snapshot(t, root)
	}
	a, b, c := run(42), run(42), run(43)
	if len(a) != 7 {
		t.Fatalf("%d files, want 7", len(a))
	}
	for name, content := range a {
		if b[name] != content {
			t.Errorf("seed 42 twice: %s differs", name)
		}
	}
	for name := range c {
		if _, ok := a[name]; ok {
			t.Errorf("seeds 42 and 43 both named %s", name)
		}
	}
}

func TestRunRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		st, err := Run(t.Context(), Config{
			Root: t.TempDir(), Pods: 2, Lines: 30, Rate: 10,
			Namespaces: []string{"catalog", "ui"},
		})
		if err != nil {
			t.Fatal(err)
		}
		// Line n is due n/Rate after the start; the last, 29, at 2.9s.
		// Multi-line events (the Spring banner) are written at once.
		if d := time.Since(start); d < 2*time.Second || d > 3500*time.Millisecond {
			t.Errorf("30 lines at 10/s took %v, want about 2.9s", d)
		}
		if st.Lines != 60 {
			t.Errorf("Stats.Lines = %d, want 60", st.Lines)
		}
	})
}

func TestRunUntilCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		observe, observed := collect()
		st, err := Run(ctx, Config{
			Root: t.TempDir(), Pods: 3, Rate: 20, Observe: observe,
			Namespaces: []string{"catalog", "ui", "checkout"},
		})
		if err != nil {
			t.Fatalf("a done context is not an error: %v", err)
		}
		perPod := map[string]int{}
		for _, l := range observed() {
			perPod[l.Pod]++
		}
		for pod, n := range perPod {
			if n < 150 || n > 260 {
				t.Errorf("%s wrote %d lines in 10s at 20/s", pod, n)
			}
		}
		if len(perPod) != 3 || st.Lines != int64(len(observed())) {
			t.Errorf("pods %v, Stats %+v", perPod, st)
		}
	})
}

// TestRunRateRealTime checks pacing with the real clock, loosely.
func TestRunRateRealTime(t *testing.T) {
	start := time.Now()
	_, err := Run(t.Context(), Config{Root: t.TempDir(), Pods: 1, Lines: 20, Rate: 100, Namespaces: []string{"catalog"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 10*time.Second {
		t.Errorf("20 lines at 100/s took %v", d)
	}
}

func TestRunContent(t *testing.T) {
	observe, observed := collect()
	_, err := Run(t.Context(), Config{
		Root: t.TempDir(), Seed: 3, Pods: 5, Lines: 400, Observe: observe,
		Mix: Mix{Text: 1, JSON: 1, Stderr: 0.1, StackTrace: 0.03, Long: 0.02},
	})
	if err != nil {
		t.Fatal(err)
	}
	byNS := map[string][]Line{}
	for _, l := range observed() {
		byNS[l.Namespace] = append(byNS[l.Namespace], l)
	}
	has := func(lines []Line, ok func(Line) bool) bool { return slices.ContainsFunc(lines, ok) }

	ui := byNS["ui"]
	for _, want := range []string{
		"  .   ____          _            __ _ _",
		" :: Spring Boot ::                (v3.2.0)",
	} {
		if !has(ui[:20], func(l Line) bool { return l.Message == want }) {
			t.Errorf("ui start-up lacks banner line %q", want)
		}
	}
	springRE := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR| WARN| INFO|DEBUG) 1 --- \[[ a-z0-9-]{15}\] .{40} : `)
	for _, want := range []string{
		"] c.a.s.u.UiApplication                    : Starting UiApplication v0.4.0 using Java 17",
		"] o.s.b.w.embedded.tomcat.TomcatWebServer  : Tomcat initialized with port 8080 (http)",
		"] c.a.s.u.UiApplication                    : Started UiApplication in ",
	} {
		if !has(ui[:30], func(l Line) bool { return strings.Contains(l.Message, want) && springRE.MatchString(l.Message) }) {
			t.Errorf("ui start-up lacks %q", want)
		}
	}
	if !has(ui, func(l Line) bool { return strings.HasPrefix(l.Message, "\tat com.amazon.sample.ui.") }) ||
		!has(ui, func(l Line) bool {
			return strings.HasPrefix(l.Message, "java.lang.") || strings.HasPrefix(l.Message, "org.springframework.")
		}) {
		t.Error("ui has no Java stack trace")
	}
	for _, l := range byNS["catalog"] {
		if l.Stream == "stdout" && !json.Valid([]byte(l.Message)) {
			t.Errorf("catalog stdout line is not JSON: %.200q", l.Message)
		}
	}
	if !has(byNS["catalog"], func(l Line) bool {
		return strings.Contains(l.Message, `"msg":"request","method":"GET","path":"/catalogue"`)
	}) {
		t.Error("catalog has no request line")
	}
	var long, unicode, stderr bool
	for _, l := range observed() {
		if !utf8.ValidString(l.Message) || strings.Contains(l.Message, "\n") {
			t.Errorf("bad message %.100q", l.Message)
		}
		if len(l.Message) > longMax {
			t.Errorf("%s: line of %d bytes, longer than %d", l.Namespace, len(l.Message), longMax)
		}
		long = long || len(l.Message) > DefaultSplitBytes
		stderr = stderr || l.Stream == "stderr"
		unicode = unicode || strings.ContainsFunc(l.Message, func(r rune) bool { return r >= 0x3000 })
	}
	if !long || !unicode || !stderr {
		t.Errorf("long lines %v, CJK/emoji %v, stderr %v: want all", long, unicode, stderr)
	}
}

func TestRunRetention(t *testing.T) {
	root := t.TempDir()
	st, err := Run(t.Context(), Config{
		Root: root, Pods: 2, Lines: 300, RotateBytes: 4096, RotateKeep: 2,
		Namespaces: []string{"catalog", "ui"}, Mix: Mix{Text: 1, JSON: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rotations < 4 {
		t.Fatalf("%d rotations", st.Rotations)
	}
	rotatedRE := regexp.MustCompile(`^0\.log\.\d{8}-\d{6}(\.gz)?$`)
	for rel := range snapshot(t, root) {
		if dir := filepath.Dir(rel); filepath.Base(rel) == "0.log" {
			names := listDir(t, filepath.Join(root, dir))
			// The live file, one gzipped, one not.
			if len(names) != 3 || !strings.HasSuffix(names[1], ".gz") || !rotatedRE.MatchString(names[1]) || !rotatedRE.MatchString(names[2]) {
				t.Errorf("%s holds %q", dir, names)
			}
		}
	}
}

func TestRunError(t *testing.T) {
	root := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(root, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), Config{Root: root, Pods: 2, Lines: 10}); err == nil {
		t.Error("root is a file: want error")
	}
}

func TestConfigValidate(t *testing.T) {
	f := func(c Config, want ...string) {
		t.Helper()
		err := c.Validate()
		if len(want) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", c, err)
			}
			return
		}
		if err == nil {
			t.Errorf("%+v: want error", c)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q lacks %q", c, err, w)
			}
		}
	}
	ok := NewConfig()
	ok.Root = "/tmp/x"
	f(ok)
	f(Config{Root: "r", Pods: 1})
	f(Config{}, "root", "pods")
	f(Config{Root: "r", Pods: 1, Format: "json"}, "format")
	f(Config{Root: "r", Pods: 1, Lines: -1, Rate: -2, RotateBytes: -3, RotateKeep: -4}, "lines", "rate", "rotate-bytes", "rotate-keep")
	f(Config{Root: "r", Pods: 1, Namespaces: []string{"ok", "Bad", "a_b", strings.Repeat("x", 47)}}, `"Bad"`, `"a_b"`, `"xxx`)
	f(Config{Root: "r", Pods: 1, Mix: Mix{Text: -1}}, "mix")
}

func TestPlanPods(t *testing.T) {
	cfg := Config{Seed: 1, Pods: 40, Format: "mixed"}.withDefaults()
	pods := planPods(cfg)
	names := map[string]bool{}
	formats := map[Format]int{}
	perNS := map[string]int{}
	hashes := map[string]string{}
	for _, p := range pods {
		m := podDirRE.FindStringSubmatch(strings.Split(p.File, string(filepath.Separator))[0])
		if m == nil || m[1] != p.Namespace || m[2] != p.Name || m[3] != p.UID {
			t.Errorf("pod %+v: bad path", p)
		}
		if names[p.Name] {
			t.Errorf("duplicate pod %s", p.Name)
		}
		names[p.Name] = true
		formats[p.Format]++
		perNS[p.Namespace]++
		if h, ok := hashes[p.Namespace]; ok && h != p.Hash {
			t.Errorf("namespace %s has two pod-template-hashes", p.Namespace)
		}
		hashes[p.Namespace] = p.Hash
	}
	if formats[FormatCRI] == 0 || formats[FormatDocker] == 0 {
		t.Errorf("mixed formats: %v", formats)
	}
	for ns, n := range perNS {
		if n != 8 {
			t.Errorf("namespace %s has %d pods, want 8", ns, n)
		}
	}
	if !slices.EqualFunc(pods, planPods(cfg), func(a, b podSpec) bool { return a == b }) {
		t.Error("planPods is not deterministic")
	}
}
