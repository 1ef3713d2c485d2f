// Package natsproc runs a real nats-server process for tests that kill and
// restart NATS: the binary is built once from the nats-server module at the
// version go.mod pins, into $PODLOGS_CACHE_DIR/bin when that is set (the
// Makefile sets it), else into a temporary directory per test binary.
//
//	srv := natsproc.Start(t)           // JetStream, file storage in a temp dir
//	... srv.URL() ...
//	srv.Kill()                          // SIGKILL, as a crash would
//	srv.Restart(t)                      // same port, same store
package natsproc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podlogs/podlogs/internal/testkit/binaries"
)

// Server is a nats-server process with JetStream and file storage.
type Server struct {
	bin, dir, logFile string
	conf              string // configuration file, if any
	port              int

	mu   sync.Mutex // guards cmd, done
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a server on a free port of 127.0.0.1 with its store in a
// temporary directory; it is killed when the test ends. conf, if given, is
// the text of a configuration file (for example "max_payload: 1MB").
func Start(t testing.TB, conf ...string) *Server {
	t.Helper()
	s := &Server{bin: binaries.NATSServer(t), dir: t.TempDir(), port: freePort(t)}
	if len(conf) > 0 {
		s.conf = filepath.Join(s.dir, "nats-server.conf")
		if err := os.WriteFile(s.conf, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.logFile = filepath.Join(s.dir, "nats-server.log")
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(s.logFile)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- nats-server log (tail) ---\n%s", b)
		}
	})
	s.start(t)
	return s
}

// URL is the client URL; it stays the same across restarts.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// StoreDir is the JetStream store directory.
func (s *Server) StoreDir() string { return filepath.Join(s.dir, "jetstream") }

func (s *Server) start(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", s.StoreDir(), "-n", "podlogs-test"}
	if s.conf != "" {
		args = append([]string{"-c", s.conf}, args...)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("natsproc: start nats-server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.waitReady(done, 30*time.Second); err != nil {
		s.Kill()
		t.Fatalf("natsproc: %v\n%s", err, tail(s.logFile))
	}
}

// waitReady waits until JetStream answers an account info request.
func (s *Server) waitReady(done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("nats-server exited during start-up")
		default:
		}
		nc, err := nats.Connect(s.URL(), nats.Timeout(time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := contextTimeout(2 * time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nats-server not ready within %s: %v", timeout, last)
}

// Kill sends SIGKILL and waits for the process to be gone. Killing a killed
// server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		cmd.Process.Kill()
		<-done
	}
}

// Restart kills the server if it runs and starts it again on the same port
// and store.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.start(t)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 30 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func contextTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
