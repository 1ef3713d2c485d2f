// Package binaries builds the programs that tests and benchmarks run as
// processes: the project's commands, and nats-server from the module go.mod
// requires. It is the one place they are built, once per test binary and
// kind of build.
package binaries

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/podlogs/podlogs/internal/testkit/repo"
)

// The project's commands, by the name of their binary.
const (
	Forwarder  = "forwarder/cmd/forwarder"
	Aggregator = "aggregator/cmd/aggregator"
	Loggen     = "cmd/loggen"
)

// Kind is how the commands are built.
type Kind int

const (
	// Fast is a plain build (static, -trimpath), as released: for load
	// tests and benchmarks, which the race detector would slow 5-10x.
	Fast Kind = iota
	// Race has the race detector where the platform supports it (halt
	// the process at its first report with GORACE=halt_on_error=1).
	Race
)

type build struct {
	once sync.Once
	dir  string
	err  error
}

var (
	mu     sync.Mutex // guards builds
	builds = map[string]*build{}
)

// Commands returns a directory holding the binaries of cmds (paths of the
// repository, such as Forwarder), built once per test binary and kind; Clean
// removes them when the test binary ends.
func Commands(tb testing.TB, kind Kind, cmds ...string) string {
	tb.Helper()
	key := fmt.Sprint(kind, slices.Sorted(slices.Values(cmds)))
	mu.Lock()
	b := builds[key]
	if b == nil {
		b = &build{}
		builds[key] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.dir, b.err = buildCommands(kind, cmds) })
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.dir
}

func buildCommands(kind Kind, cmds []string) (string, error) {
	root, err := repo.Root()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "podlogs-bin-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-trimpath", "-o", dir + "/"}
	env := append(os.Environ(), "CGO_ENABLED=0")
	if kind == Race && runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		args = append(args, "-race")
		env = append(os.Environ(), "CGO_ENABLED=1")
	}
	for _, c := range cmds {
		args = append(args, "./"+c)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = root, env
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return dir, nil
}

// Clean removes the commands built; call it from TestMain after the tests.
func Clean() {
	mu.Lock()
	defer mu.Unlock()
	for _, b := range builds {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
}

// natsServer is the package built into nats-server.
const natsServer = "github.com/nats-io/nats-server/v2"

var natsOnce build

// NATSServer returns the path of a nats-server binary built from the module
// version go.mod requires. It is kept under $PODLOGS_CACHE_DIR/bin (when
// set) across runs, named after the version.
func NATSServer(tb testing.TB) string {
	tb.Helper()
	natsOnce.once.Do(func() { natsOnce.dir, natsOnce.err = buildNATSServer() })
	if natsOnce.err != nil {
		tb.Fatal(natsOnce.err)
	}
	return natsOnce.dir
}

func buildNATSServer() (string, error) {
	dir := os.Getenv("PODLOGS_CACHE_DIR")
	if dir != "" {
		dir = filepath.Join(dir, "bin")
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "podlogs-nats-"); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", natsServer).Output()
	if err != nil {
		return "", fmt.Errorf("find the nats-server version in go.mod: %w", err)
	}
	bin := filepath.Join(dir, "nats-server-"+strings.TrimSpace(string(out)))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Build beside the target and rename: test binaries may build at once.
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	if out, err := exec.Command("go", "build", "-o", tmp, natsServer).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", natsServer, err, out)
	}
	return bin, os.Rename(tmp, bin)
}
