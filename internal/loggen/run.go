package loggen

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"
)

// Line is one logical line as written, for tests that check delivery line
// for line.
type Line struct {
	Namespace string
	Pod       string
	PodUID    string
	Container string
	Stream    string    // "stdout" or "stderr"
	Time      time.Time // as in the file, UTC
	Message   string    // whole, however many physical lines it took
	File      string    // path relative to the root when written: .../0.log
}

// Mix weighs the kinds of log events. Weights are relative; a pod's events
// are drawn from the weights that apply to its application.
type Mix struct {
	// Text weighs request lines of Java apps in Spring Boot's console layout.
	Text float64
	// JSON weighs request lines of JSON-logging apps (Go with zap, Node.js
	// with pino).
	JSON float64
	// Stderr weighs warnings on stderr: JVM and agent warnings, Go's log
	// package, Node.js warnings.
	Stderr float64
	// StackTrace weighs errors with a stack: Java exceptions written one
	// line per frame, Node.js errors likewise on stderr, zap error lines
	// with a "stacktrace" field.
	StackTrace float64
	// Long weighs lines longer than 16 KiB (at most 100 KiB): logged
	// response bodies.
	Long float64
}

// DefaultMix returns the default weights: mostly requests, a few warnings,
// rare stack traces and long lines.
func DefaultMix() Mix {
	return Mix{Text: 0.9, JSON: 0.9, Stderr: 0.06, StackTrace: 0.01, Long: 0.003}
}

// DefaultNamespaces are the services of the AWS retail-store sample app.
func DefaultNamespaces() []string {
	return []string{"ui", "catalog", "carts", "checkout", "orders"}
}

// Config configures Run.
type Config struct {
	// Root is the directory that plays /var/log/pods.
	Root string
	// Seed determines pod names, uids, formats and every message.
	Seed int64
	// Namespaces hold one Deployment each, named after the namespace.
	// Empty means DefaultNamespaces.
	Namespaces []string
	// Pods is the number of pods, spread round robin over Namespaces.
	Pods int
	// Format is "cri", "docker", or "mixed" (chosen per pod from Seed).
	// Empty means "cri".
	Format string
	// Lines is the number of logical lines each pod writes before it
	// stops; 0 means until the context is done.
	Lines int64
	// Rate is the number of lines per second per pod; 0 means as fast as
	// possible. Events of several lines (banner, stack trace) are written
	// at once and the pod then waits for them.
	Rate float64
	// RotateBytes rotates a pod's file once it reaches this size; 0 never
	// rotates.
	RotateBytes int64
	// RotateKeep is how many rotated files are kept per container
	// (kubelet's containerLogMaxFiles minus one): the newest uncompressed,
	// the older ones gzipped, the rest deleted. 0 means 4, kubelet's
	// default.
	RotateKeep int
	// Mix weighs the kinds of events; the zero Mix means DefaultMix.
	Mix Mix
	// Observe, when set, is called once for every logical line after it
	// was written. Calls are serialized; it must be cheap.
	Observe func(Line)
}

// NewConfig returns a Config with defaults: 5 pods over the default
// namespaces, CRI, 10 lines per second per pod, no rotation. Root is left
// to the caller.
func NewConfig() Config {
	return Config{
		Seed:       1,
		Namespaces: DefaultNamespaces(),
		Pods:       5,
		Format:     "cri",
		Rate:       10,
		RotateKeep: 4,
		Mix:        DefaultMix(),
	}
}

func (c Config) withDefaults() Config {
	if len(c.Namespaces) == 0 {
		c.Namespaces = DefaultNamespaces()
	}
	if c.Format == "" {
		c.Format = "cri"
	}
	if c.RotateKeep == 0 {
		c.RotateKeep = 4
	}
	if c.Mix == (Mix{}) {
		c.Mix = DefaultMix()
	}
	return c
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Validate reports every problem of c, with the defaults of Run applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Root == "" {
		errs = append(errs, errors.New("root must be set"))
	}
	if c.Pods < 1 {
		errs = append(errs, fmt.Errorf("pods must be at least 1, got %d", c.Pods))
	}
	switch c.Format {
	case "cri", "docker", "mixed":
	default:
		errs = append(errs, fmt.Errorf("format must be cri, docker or mixed, got %q", c.Format))
	}
	if c.Lines < 0 {
		errs = append(errs, fmt.Errorf("lines must not be negative, got %d", c.Lines))
	}
	if c.Rate < 0 || c.Rate != c.Rate {
		errs = append(errs, fmt.Errorf("rate must not be negative, got %v", c.Rate))
	}
	if c.RotateBytes < 0 {
		errs = append(errs, fmt.Errorf("rotate-bytes must not be negative, got %d", c.RotateBytes))
	}
	if c.RotateKeep < 1 {
		errs = append(errs, fmt.Errorf("rotate-keep must be at least 1, got %d", c.RotateKeep))
	}
	for _, ns := range c.Namespaces {
		// Pod names are <namespace>-<10>-<5>, and must stay DNS subdomains.
		if len(ns) > 63-17 || !dnsLabel.MatchString(ns) {
			errs = append(errs, fmt.Errorf("namespace %q must be a DNS label of at most 46 characters", ns))
		}
	}
	m := c.Mix
	for _, w := range []float64{m.Text, m.JSON, m.Stderr, m.StackTrace, m.Long} {
		if w < 0 || w != w {
			errs = append(errs, fmt.Errorf("mix weights must not be negative, got %+v", m))
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("loggen: invalid config: %w", err)
	}
	return nil
}

// Stats counts what Run wrote.
type Stats struct {
	Lines     int64 // logical lines
	Bytes     int64 // bytes written to files
	Rotations int64
}

type counters struct {
	lines, bytes, rotations atomic.Int64
}

// Run writes the pods' logs under cfg.Root, one goroutine per pod, until
// every pod has written cfg.Lines lines or ctx is done; a done context is
// not an error. Files are appended to if they exist. On a write error the
// other pods stop too and Run returns the error.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return Stats{}, err
	}
	pods := planPods(cfg)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		c     counters
		wg    sync.WaitGroup
		obsMu sync.Mutex // serializes cfg.Observe
		errs  = make([]error, len(pods))
	)
	observe := func(Line) {}
	if cfg.Observe != nil {
		observe = func(l Line) {
			obsMu.Lock()
			defer obsMu.Unlock()
			cfg.Observe(l)
		}
	}
	for i := range pods {
		wg.Go(func() {
			if err := runPod(ctx, &cfg, &pods[i], &c, observe); err != nil {
				errs[i] = err
				cancel()
			}
		})
	}
	wg.Wait()
	st := Stats{Lines: c.lines.Load(), Bytes: c.bytes.Load(), Rotations: c.rotations.Load()}
	return st, errors.Join(errs...)
}

// runPod writes one pod's log, pacing events to cfg.Rate.
func runPod(ctx context.Context, cfg *Config, p *podSpec, c *counters, observe func(Line)) (err error) {
	w, err := OpenFile(filepath.Join(cfg.Root, p.File), p.Format, FileOptions{KeepRotated: cfg.RotateKeep})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}()
	gen := newGenerator(cfg.Seed, cfg.Mix, p)
	var (
		written int64
		batch   []logLine
		timer   *time.Timer
		// The schedule: line n is due at base + (n-baseN)/Rate.
		base  = time.Now()
		baseN int64
	)
	if cfg.Rate > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
	}
	for cfg.Lines == 0 || written < cfg.Lines {
		if cfg.Rate > 0 {
			due := base.Add(time.Duration(float64(written-baseN) / cfg.Rate * float64(time.Second)))
			switch d := time.Until(due); {
			case d > 0:
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			case d < -time.Second:
				// Far behind (a stalled disk, a suspended process):
				// start a new schedule rather than burst to catch up.
				base, baseN = time.Now(), written
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		batch = gen.next(time.Now(), batch[:0])
		for _, l := range batch {
			if cfg.Lines > 0 && written >= cfg.Lines {
				break
			}
			t := time.Now().UTC()
			n, err := w.WriteLine(t, l.stream, l.msg)
			c.bytes.Add(int64(n))
			if err != nil {
				return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
			}
			written++
			c.lines.Add(1)
			observe(Line{
				Namespace: p.Namespace,
				Pod:       p.Name,
				PodUID:    p.UID,
				Container: p.Container,
				Stream:    l.stream,
				Time:      t,
				Message:   l.msg,
				File:      p.File,
			})
			if cfg.RotateBytes > 0 && w.Size() >= cfg.RotateBytes {
				if _, err := w.Rotate(time.Now()); err != nil {
					return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
				}
				c.rotations.Add(1)
			}
		}
	}
	return nil
}
