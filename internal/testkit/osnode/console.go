package osnode

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

const (
	tailLines   = 100
	maxLineSize = 4096 // longer lines are cut in the tail, not in the copy to Config.Stdout
)

// console receives the JVM's stdout and stderr: it copies them to w and keeps the last lines.
type console struct {
	mu      sync.Mutex // guards all below
	w       io.Writer  // nil: discard
	lines   []string   // the last tailLines complete lines
	partial []byte     // the line being written
}

// Write never fails: an error from w must not stop the copy, or the JVM would block on a full pipe.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w != nil {
		_, _ = c.w.Write(p)
	}
	for rest := p; len(rest) > 0; {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		if room := maxLineSize - len(c.partial); room > 0 {
			c.partial = append(c.partial, line[:min(len(line), room)]...)
		}
		if !found {
			break
		}
		c.lines = append(c.lines, string(c.partial))
		if len(c.lines) > tailLines {
			c.lines = c.lines[1:]
		}
		c.partial = c.partial[:0]
		rest = after
	}
	return len(p), nil
}

// tail returns the last lines written, the unfinished one included.
func (c *console) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.lines
	if len(c.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(c.partial))
	}
	return strings.Join(lines, "\n")
}
