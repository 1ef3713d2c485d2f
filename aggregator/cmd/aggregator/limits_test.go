package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podlogs/podlogs/internal/testkit/natsproc"
	"github.com/podlogs/podlogs/internal/testkit/ostest"
	"github.com/podlogs/podlogs/internal/testkit/proctest"
)

func TestMain(m *testing.M) { ostest.Main(m) }

// Flag combinations under which a maximal record could not be written are
// refused by the flags, naming them.
func TestLimitsMustFitTogether(t *testing.T) {
	f := func(args []string, want ...string) {
		t.Helper()
		_, err := parseConfig(append([]string{"--id=a1"}, args...))
		if err == nil {
			t.Fatalf("%v: accepted", args)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not name %s", args, err, w)
			}
		}
	}
	f([]string{"--max-document-bytes=8388608"}, "--bulk-bytes", "--max-document-bytes")
	f([]string{"--max-document-bytes=1000"}, "--max-document-bytes", "16384")
	f([]string{"--nats-message-bytes=1048576", "--nats-stream-max-bytes=2097152"}, "--nats-stream-max-bytes", "--nats-message-bytes", "--max-document-bytes")
	if _, err := parseConfig([]string{"--id=a1"}); err != nil {
		t.Fatalf("the defaults do not fit together: %v", err)
	}
}

// Start-up refuses a NATS server whose max_payload cannot take the largest
// message, naming the flags, before anything is served (an external
// nats-server with max_payload: 1MB); the defaults fit it. The embedded
// server is set to what the flags need.
func TestStartupChecksMaxPayload(t *testing.T) {
	srv := natsproc.Start(t, "max_payload: 1MB")
	common := []string{"--id=a1", "--listen=127.0.0.1:0", "--data-dir=" + t.TempDir(), "--enrichment=off", "--log.level=error",
		"--opensearch-url=" + ostest.URL(t)}
	err := run(append(common, "--admin-addr=127.0.0.1:0", "--nats-url="+srv.URL(), "--max-document-bytes=2097152", "--bulk-bytes=4194304"))
	if err == nil {
		t.Fatal("started with documents of 2 MiB against a max_payload of 1 MB")
	}
	for _, want := range []string{"max_payload is 1048576", "--max-document-bytes 2097152", "--nats-message-bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	admin := proctest.FreeAddr(t)
	stop := runAggregator(t, append(common, "--admin-addr="+admin, "--nats-url="+srv.URL()), admin)
	if err := stop(); err != nil {
		t.Fatalf("defaults against max_payload 1MB: %v", err)
	}
	admin = proctest.FreeAddr(t)
	stop = runAggregator(t, append(common, "--admin-addr="+admin, "--max-document-bytes=4194304", "--bulk-bytes=8388608"), admin)
	if err := stop(); err != nil {
		t.Fatalf("embedded server, documents of 4 MiB: %v", err)
	}
}

// A component that fails stops the process with its error: here the bulk
// writer, whose durable consumer an operator deleted (a restart creates it
// again).
func TestFailingComponentStopsTheProcess(t *testing.T) {
	srv := natsproc.Start(t)
	admin := proctest.FreeAddr(t)
	stop := runAggregator(t, []string{"--id=a1", "--listen=127.0.0.1:0", "--admin-addr=" + admin, "--data-dir=" + t.TempDir(),
		"--enrichment=off", "--log.level=error", "--opensearch-url=" + ostest.URL(t), "--nats-url=" + srv.URL(),
		"--nats-consumer=writers"}, admin)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The writer pulls once its templates are installed.
	for {
		c, err := js.Consumer(ctx, "PODLOGS", "writers")
		if err == nil {
			if ci, err := c.Info(ctx); err == nil && ci.NumWaiting > 0 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the writer never pulled")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := js.DeleteConsumer(ctx, "PODLOGS", "writers"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- stop() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "consumer") || errors.Is(err, context.Canceled) {
			t.Fatalf("run returned %v, want the writer's error", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the aggregator did not stop")
	}
}
