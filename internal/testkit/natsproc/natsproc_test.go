package natsproc

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A stream with file storage keeps what it acknowledged across a SIGKILL.
func TestKillRestartKeepsStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs nats-server")
	}
	srv := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := js.Publish(ctx, "s.x", []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	srv.Kill()
	srv.Restart(t)
	for {
		st, err := js.Stream(ctx, "S")
		if err == nil {
			info, err := st.Info(ctx)
			if err == nil {
				if info.State.Msgs != 100 {
					t.Fatalf("stream holds %d messages after a restart, want 100", info.State.Msgs)
				}
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("stream not back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
