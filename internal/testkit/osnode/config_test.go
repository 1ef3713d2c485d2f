package osnode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenderSettings(t *testing.T) {
	f := func(cfg Config, want ...string) {
		t.Helper()
		cfg.setDefaults()
		got := renderSettings(cfg.settings())
		for _, w := range want {
			if !strings.Contains(got, "\n"+w+"\n") {
				t.Errorf("opensearch.yml lacks line %q:\n%s", w, got)
			}
		}
	}
	f(Config{Dir: "/n"},
		"cluster.name: podlogs",
		"discovery.type: single-node",
		"network.host: 127.0.0.1",
		"http.port: 0",
		"transport.port: 0",
		"node.portsfile: true",
		"path.data: /n/data",
		"path.logs: /n/logs",
		"cluster.routing.allocation.disk.threshold_enabled: false",
		"action.auto_create_index: true",
		"bootstrap.memory_lock: false",
	)
	f(Config{Dir: "/n", HTTPPort: 9201}, "http.port: 9201")
	// Extra settings override the defaults and are quoted where YAML would misread them.
	f(Config{Dir: "/n", ExtraSettings: map[string]string{
		"action.auto_create_index": "false",
		"node.attr.note":           "a: b # c",
		"node.attr.list":           "[a, b]",
		"node.attr.empty":          "",
	}},
		"action.auto_create_index: false",
		`node.attr.note: "a: b # c"`,
		"node.attr.list: [a, b]",
		`node.attr.empty: ""`,
	)

	// Keys are sorted, so the file is stable.
	cfg := Config{Dir: "/n"}
	if a, b := renderSettings(cfg.settings()), renderSettings(cfg.settings()); a != b {
		t.Errorf("rendering is not stable:\n%s\n%s", a, b)
	}
}

func TestYAMLValue(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := yamlValue(in); got != want {
			t.Errorf("yamlValue(%q) = %s, want %s", in, got, want)
		}
	}
	f("127.0.0.1", "127.0.0.1")
	f("/tmp/x y", `"/tmp/x y"`)
	f("/tmp/node-1/data", "/tmp/node-1/data")
	f("90%", `"90%"`)
	f("-1", `"-1"`)
	f("*", `"*"`)
	f("logs-*", "logs-*")
	f(`say "hi"`, `"say \"hi\""`)
	f("{a: 1}", "{a: 1}")
}

func TestRenderJVMOptions(t *testing.T) {
	cfg := Config{Dir: "/n", HeapMB: 256}
	got := cfg.renderJVMOptions()
	for _, w := range []string{"-Xms256m", "-Xmx256m", "-XX:+UseSerialGC", "-Djava.io.tmpdir=/n/tmp", "-XX:ErrorFile=/n/logs/hs_err_pid%p.log"} {
		if !strings.Contains(got, "\n"+w+"\n") {
			t.Errorf("jvm.options lacks %q:\n%s", w, got)
		}
	}
	cfg = Config{Dir: "/n"}
	cfg.setDefaults()
	if got := cfg.renderJVMOptions(); !strings.Contains(got, "\n-Xmx512m\n") {
		t.Errorf("default heap is not 512 MB:\n%s", got)
	}
}

func TestConsoleTail(t *testing.T) {
	c := &console{}
	c.Write([]byte("one\ntw"))
	c.Write([]byte("o\nthr"))
	if got, want := c.tail(), "one\ntwo\nthr"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
	var sb strings.Builder
	c = &console{w: &sb}
	for i := range 250 {
		c.Write([]byte(strings.Repeat("x", i) + "\n"))
	}
	c.Write([]byte(strings.Repeat("y", 3*maxLineSize) + "\n"))
	lines := strings.Split(c.tail(), "\n")
	if len(lines) != tailLines {
		t.Fatalf("tail has %d lines, want %d", len(lines), tailLines)
	}
	if got := lines[0]; len(got) != 151 {
		t.Errorf("first kept line has %d bytes, want 151", len(got))
	}
	if got := lines[len(lines)-1]; len(got) != maxLineSize {
		t.Errorf("long line kept with %d bytes, want it cut to %d", len(got), maxLineSize)
	}
	if !strings.HasSuffix(sb.String(), strings.Repeat("y", 3*maxLineSize)+"\n") {
		t.Error("Stdout did not get the long line whole")
	}
}

func TestJavaMajor(t *testing.T) {
	f := func(release string, want int) {
		t.Helper()
		home := t.TempDir()
		os.MkdirAll(filepath.Join(home, "bin"), 0o755)
		os.WriteFile(filepath.Join(home, "bin", "java"), nil, 0o755)
		os.WriteFile(filepath.Join(home, "release"), []byte(release), 0o644)
		if got := javaMajor(home); got != want {
			t.Errorf("javaMajor(%q) = %d, want %d", release, got, want)
		}
	}
	f("IMPLEMENTOR=\"Debian\"\nJAVA_VERSION=\"17.0.15\"\n", 17)
	f("JAVA_VERSION=\"25\"\n", 25)
	f("JAVA_VERSION=\"23-ea\"\n", 23)
	f("JAVA_VERSION=\"1.8.0_392\"\n", 8)
	f("nothing\n", 0)
}
