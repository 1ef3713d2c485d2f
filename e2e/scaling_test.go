package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/testkit/natstest"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

// TestScaling runs 8 forwarders streaming to 2 aggregators behind one DNS
// name, as behind a headless Service, then scales out to 4: within the
// connection-age period each new replica carries at least 20% of the
// records. Then one replica stops gracefully, and every line ends up in
// OpenSearch exactly once.
//
// The name is served by a small DNS server in the test, and the forwarders
// are given --aggregator=dns://<that server>/aggregators.podlogs.test:<port>:
// the production code path (gRPC's dns resolver, re-resolving when a
// connection ends) with no change to the forwarder and no /etc/hosts edit.
// The aggregators listen on 127.0.0.1-4, one port, as pods of a Service do.
func TestScaling(t *testing.T) {
	if testing.Short() {
		t.Skip("long test")
	}
	const (
		forwarders = 8
		rate       = 100 // lines/s per forwarder
		age        = 4 * time.Second
	)
	bins := fastBinaries(t)
	osURL := ostest.URL(t)
	s := search{url: osURL, index: "scaling"}
	ns := natstest.Start(t)
	port := freePortOn(t, "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
	dns := startDNS(t, "aggregators.podlogs.test.")

	type agg struct {
		*proctest.Proc
		ip, admin string
	}
	startAgg := func(i int) *agg {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		admin := proctest.FreeAddr(t)
		name := fmt.Sprintf("aggregator-%d", i)
		p := startFrom(t, bins, name, "--id="+name, "--listen="+net.JoinHostPort(ip, port), "--admin-addr="+admin,
			"--data-dir="+proctest.TempDir(t, name), "--nats-url="+ns.ClientURL(), "--opensearch-url="+osURL, "--index="+s.index,
			"--flush-interval=100ms", "--max-connection-age="+age.String(), "--shutdown-grace=10s", "--log.format=text")
		p.WaitReady(t, admin)
		return &agg{Proc: p, ip: ip, admin: admin}
	}
	acked := func(a *agg) float64 {
		return metric(t, "http://"+a.admin+"/metrics", "podlogs_aggregator_records_acked_total")
	}
	streams := func(a *agg) float64 {
		return metric(t, "http://"+a.admin+"/metrics", "podlogs_aggregator_streams")
	}
	aggs := []*agg{startAgg(0), startAgg(1)}
	dns.set(aggs[0].ip, aggs[1].ip)

	// Every forwarder has one pod writing rate lines per second.
	ctx, stopWriting := context.WithCancel(context.Background())
	defer stopWriting()
	var written atomic.Int64
	var wg sync.WaitGroup
	var fwds []*proctest.Proc
	for i := range forwarders {
		root := proctest.TempDir(t, fmt.Sprintf("pods-%d", i))
		w, err := loggen.OpenFile(filepath.Join(root, fmt.Sprintf("ui_ui-%d_3f0e6c5a-0d3b-4a8e-9a51-%012d/ui/0.log", i, i)), loggen.FormatCRI, loggen.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer w.Close()
			tick := time.NewTicker(time.Second / 20)
			defer tick.Stop()
			for n := 0; ; {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for range rate / 20 {
					if _, err := w.WriteLine(time.Now(), "stdout", fmt.Sprintf("forwarder %d line %d", i, n)); err != nil {
						t.Error(err)
						return
					}
					n++
					written.Add(1)
				}
			}
		})
		admin := proctest.FreeAddr(t)
		name := fmt.Sprintf("forwarder-%d", i)
		p := startFrom(t, bins, name, "--pods-root="+root, "--data-dir="+proctest.TempDir(t, name),
			"--aggregator=dns://"+dns.addr+"/aggregators.podlogs.test:"+port, "--node-name=node-"+fmt.Sprint(i),
			"--admin-addr="+admin, "--batch-linger=50ms", "--log.format=text")
		p.WaitReady(t, admin)
		fwds = append(fwds, p)
	}
	time.Sleep(2 * time.Second)

	// Scale out: two more replicas, and the name now lists all four.
	aggs = append(aggs, startAgg(2), startAgg(3))
	dns.set(aggs[0].ip, aggs[1].ip, aggs[2].ip, aggs[3].ip)
	scaled := time.Now()
	// gRPC re-resolves at most every 30 s; then the next aged streams move.
	deadline := scaled.Add(60 * time.Second)
	for streams(aggs[2]) == 0 || streams(aggs[3]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("new replicas got no stream within 60s of scaling out (streams %v, %v)", streams(aggs[2]), streams(aggs[3]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	found := time.Since(scaled)
	// One connection-age period later, the share of records per replica
	// over the next period.
	time.Sleep(age)
	before := make([]float64, len(aggs))
	for i, a := range aggs {
		before[i] = acked(a)
	}
	const window = 8 * age
	time.Sleep(window)
	var total float64
	delta := make([]float64, len(aggs))
	for i, a := range aggs {
		delta[i] = acked(a) - before[i]
		total += delta[i]
	}
	var shares []string
	for i := range aggs {
		shares = append(shares, fmt.Sprintf("%s %.1f%%", aggs[i].Name, 100*delta[i]/total))
	}
	t.Logf("new replicas had streams %s after scaling out; records acknowledged over %s: %.0f, %s",
		found.Round(time.Second), window, total, strings.Join(shares, ", "))
	for _, i := range []int{2, 3} {
		if delta[i]/total < 0.20 {
			t.Errorf("new replica %s carried %.1f%% of the records, want at least 20%%", aggs[i].Name, 100*delta[i]/total)
		}
	}

	// Scale in: one replica stops gracefully while lines keep coming; its
	// forwarders resend elsewhere.
	aggs[1].StopClean(t)
	dns.set(aggs[0].ip, aggs[2].ip, aggs[3].ip)
	time.Sleep(3 * time.Second)
	stopWriting()
	wg.Wait()
	s.waitCount(t, int(written.Load()), 90*time.Second)
	// Exactly once: no line twice (waitCount fails above the count, and ids
	// are per line), none missing.
	seen := map[string]bool{}
	for _, d := range s.all(t) {
		if seen[d.Log] {
			t.Fatalf("line %q stored twice", d.Log)
		}
		seen[d.Log] = true
	}
	if len(seen) != int(written.Load()) {
		t.Fatalf("%d distinct lines stored, %d written", len(seen), written.Load())
	}
	for _, p := range fwds {
		p.StopClean(t)
	}
}

// freePortOn returns a port free on every one of the addresses.
func freePortOn(t *testing.T, ips ...string) string {
	t.Helper()
	for range 50 {
		_, port, _ := net.SplitHostPort(proctest.FreeAddr(t))
		ok := true
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return ""
}

// dnsServer answers A queries for one name with a settable set of
// addresses, like a headless Service's record; anything else is NXDOMAIN.
type dnsServer struct {
	addr string
	name dnsmessage.Name
	mu   sync.Mutex // guards ips
	ips  []netip.Addr
}

func (d *dnsServer) set(ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ips = d.ips[:0]
	for _, ip := range ips {
		d.ips = append(d.ips, netip.MustParseAddr(ip))
	}
}

func startDNS(t *testing.T, name string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), name: dnsmessage.MustNewName(name)}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := d.answer(buf[:n]); err == nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	return d
}

func (d *dnsServer) answer(req []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	known := strings.EqualFold(q.Name.String(), d.name.String())
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if known && q.Type == dnsmessage.TypeA {
		d.mu.Lock()
		ips := append([]netip.Addr(nil), d.ips...)
		d.mu.Unlock()
		for _, ip := range ips {
			rr := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 1}
			if err := b.AResource(rr, dnsmessage.AResource{A: ip.As4()}); err != nil {
				return nil, err
			}
		}
	}
	return b.Finish()
}
