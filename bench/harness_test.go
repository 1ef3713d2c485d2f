package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/podlogs/podlogs/internal/testkit/binaries"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// Shared helpers of the process-level benchmarks of package bench. Files of
// this package prefix their own helpers (e2e*, fwd*, …); what more than one
// file needs lives here.

// TestMain stops the shared OpenSearch node (ostest) and removes the
// binaries of buildBinaries once every benchmark has run.
func TestMain(m *testing.M) {
	ostest.Main(m)
	binaries.Clean()
}

// buildBinaries returns the directory of the plain (not race) builds of
// the forwarder, the aggregator and loggen, shared by every benchmark of
// the test binary: the race detector would measure itself.
func buildBinaries(tb testing.TB) string {
	tb.Helper()
	return binaries.Commands(tb, binaries.Fast, binaries.Forwarder, binaries.Aggregator, binaries.Loggen)
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

// startProc starts bin, a binary in dir, with args; see proctest.Start.
func startProc(tb testing.TB, dir, name, bin string, args ...string) *proctest.Proc {
	tb.Helper()
	return proctest.Start(tb, name, exec.Command(filepath.Join(dir, bin), args...))
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
