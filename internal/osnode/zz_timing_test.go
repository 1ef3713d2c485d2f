package osnode

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestZZTiming(t *testing.T) {
	for i := 0; i < 3; i++ {
		dir, _ := os.MkdirTemp("", "timing-")
		defer os.RemoveAll(dir)
		t0 := time.Now()
		n, err := Start(context.Background(), Config{Dir: dir, NoClassCache: os.Getenv("NOCDS") != ""})
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		n.Kill()
		t2 := time.Now()
		if err := n.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		t3 := time.Now()
		n.Stop()
		t.Logf("start %v restart-empty %v stop %v", t1.Sub(t0).Round(time.Millisecond), t3.Sub(t2).Round(time.Millisecond), time.Since(t3).Round(time.Millisecond))
	}
}
