// Package proctest runs the project's binaries as processes for tests and
// benchmarks (e2e, bench): each with its output in a file whose tail is
// logged when the test fails, stopped with SIGTERM or killed, and waited on
// until its admin /readyz answers.
package proctest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Proc is a running process whose output goes to a file.
type Proc struct {
	Name string    // in messages and the name of the output file
	Cmd  *exec.Cmd // started
	Out  string    // the file holding its stdout and stderr
	done chan struct{}
	err  error
}

// Start starts cmd with its stdout and stderr in the file Name.log of a
// temporary directory of tb, killed with SIGKILL if the test binary dies
// first. At the end of the test the process is killed unless it has ended,
// and if the test failed the tail of its output is logged.
func Start(tb testing.TB, name string, cmd *exec.Cmd) *Proc {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), name+".log")
	f, err := os.Create(out)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Out: out, done: make(chan struct{})}
	go func() { // ends when the process does; Kill ensures it does
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("--- %s output (tail) ---\n%s", name, p.Tail(8000))
		}
	})
	return p
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed once the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil for exit status 0); valid once Done is
// closed.
func (p *Proc) Err() error { return p.err }

// Output is the output so far.
func (p *Proc) Output() []byte {
	b, _ := os.ReadFile(p.Out)
	return b
}

// Tail is the last n bytes of the output so far.
func (p *Proc) Tail(n int) []byte {
	b := p.Output()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// Stop sends SIGTERM and waits up to a minute for the process to end,
// however it ends.
func (p *Proc) Stop(tb testing.TB) {
	tb.Helper()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		tb.Fatalf("%s did not stop within a minute of SIGTERM", p.Name)
	}
}

// StopClean is Stop, failing with the whole output unless the process
// exited with status 0.
func (p *Proc) StopClean(tb testing.TB) {
	tb.Helper()
	p.Stop(tb)
	if p.err != nil {
		tb.Fatalf("%s exited with %v:\n%s", p.Name, p.err, p.Output())
	}
}

// Kill kills the process (SIGKILL) unless it has ended, and waits for it.
func (p *Proc) Kill() {
	select {
	case <-p.done:
	default:
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// WaitReady polls the process's admin /readyz at adminAddr until it
// answers 200, failing after a minute or, with the whole output, if the
// process ends first.
func (p *Proc) WaitReady(tb testing.TB, adminAddr string) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			tb.Fatalf("%s exited during start-up (%v):\n%s", p.Name, p.err, p.Output())
		default:
		}
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("%s not ready within a minute", p.Name)
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TempDir is a directory called name in a temporary directory of tb: a
// readable name in process logs.
func TempDir(tb testing.TB, name string) string {
	tb.Helper()
	d := filepath.Join(tb.TempDir(), name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		tb.Fatal(err)
	}
	return d
}
