package bench

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/podlogs/podlogs/internal/ostest"
	"github.com/podlogs/podlogs/internal/repo"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// Shared helpers of the process-level benchmarks of package bench. Files of
// this package prefix their own helpers (e2e*, fwd*, …); what more than one
// file needs lives here.

// TestMain stops the shared OpenSearch node (ostest) and removes the
// binaries of buildBinaries once every benchmark has run.
func TestMain(m *testing.M) {
	ostest.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// buildBinaries builds ./forwarder/cmd/forwarder, ./aggregator/cmd/aggregator
// and ./cmd/loggen once per test binary, without the race detector (it would
// measure the detector), and returns the directory holding them. Every
// benchmark of the binary shares them; TestMain removes them at the end.
func buildBinaries(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		root, err := repo.Root()
		if err != nil {
			binErr = err
			return
		}
		binDir, err = os.MkdirTemp("", "podlogs-bench-bin-")
		if err != nil {
			binErr = err
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", binDir+"/",
			"./forwarder/cmd/forwarder", "./aggregator/cmd/aggregator", "./cmd/loggen")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build binaries: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binDir
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is a snapshot of a process's CPU time and memory from /proc.
type procStat struct {
	CPU time.Duration // utime + stime, user and system CPU time so far
	RSS int64         // VmRSS, resident set now, bytes
	HWM int64         // VmHWM, peak resident set, bytes
}

// procStats reads utime+stime from /proc/<pid>/stat and VmRSS and VmHWM
// from /proc/<pid>/status.
func procStats(pid int) (procStat, error) {
	var s procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: split after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("stat of %d: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return s, fmt.Errorf("stat of %d: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("stat of %d: utime %q stime %q", pid, f[11], f[12])
	}
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return s, fmt.Errorf("status of %d: %s %q", pid, k, v)
		}
		if k == "VmRSS" {
			s.RSS = kb << 10
		} else {
			s.HWM = kb << 10
		}
	}
	return s, nil
}

// benchProc is a running binary of buildBinaries whose output goes to a
// file, shown (its tail) when the benchmark fails.
type benchProc struct {
	name string
	cmd  *exec.Cmd
	out  string
	done chan struct{}
	err  error
}

// startProc starts bin (a name in dir) with args; the process is killed at
// the end of the benchmark unless stopped before. Pdeathsig kills it if the
// test binary dies first.
func startProc(tb testing.TB, dir, name, bin string, args ...string) *benchProc {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), name+".log")
	f, err := os.Create(out)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, bin), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("start %s: %v", name, err)
	}
	p := &benchProc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { // ends when the process does; kill ensures it does
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.kill()
		if tb.Failed() {
			tb.Logf("--- %s output (tail) ---\n%s", name, p.tail(8000))
		}
	})
	return p
}

func (p *benchProc) pid() int { return p.cmd.Process.Pid }

func (p *benchProc) tail(n int) []byte {
	b, _ := os.ReadFile(p.out)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// stop sends SIGTERM and waits up to a minute for the exit.
func (p *benchProc) stop(tb testing.TB) {
	tb.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		tb.Fatalf("%s did not stop within a minute of SIGTERM", p.name)
	}
}

func (p *benchProc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// freeAddr returns a loopback address free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitReady polls the admin /readyz of p until it answers 200.
func waitReady(tb testing.TB, p *benchProc, adminAddr string) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			tb.Fatalf("%s exited during start-up (%v):\n%s", p.name, p.err, p.tail(8000))
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
	tb.Fatalf("%s not ready within a minute", p.name)
}

// discardServer is an aggregator that acknowledges every batch at once and
// counts its records: what the forwarder costs without the aggregator's.
type discardServer struct {
	podlogsv1.UnimplementedIngestServiceServer
	records atomic.Int64
	bytes   atomic.Int64 // record data bytes received
}

func (d *discardServer) Stream(s grpc.BidiStreamingServer[podlogsv1.StreamRequest, podlogsv1.StreamResponse]) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	if err := s.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Welcome{Welcome: &podlogsv1.Welcome{
		ProtocolVersion: 1, AggregatorId: "discard", MaxMessageBytes: 4 << 20}}}); err != nil {
		return err
	}
	for {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		b := req.GetBatch()
		d.records.Add(int64(len(b.GetRecords())))
		var n int
		for _, r := range b.GetRecords() {
			n += len(r.GetData())
		}
		d.bytes.Add(int64(n))
		if err := s.Send(&podlogsv1.StreamResponse{Message: &podlogsv1.StreamResponse_Ack{Ack: &podlogsv1.Ack{ThroughSequence: b.GetSequence()}}}); err != nil {
			return err
		}
	}
}

// startDiscardServer serves a discardServer on a loopback port until the
// benchmark ends and returns its address and the server (for its counts).
func startDiscardServer(tb testing.TB) (string, *discardServer) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &discardServer{}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(8 << 20))
	podlogsv1.RegisterIngestServiceServer(gs, srv)
	done := make(chan struct{})
	go func() { // ends with Stop at cleanup
		defer close(done)
		gs.Serve(ln)
	}()
	tb.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String(), srv
}
