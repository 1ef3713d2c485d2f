package reader

import (
	"context"
	"time"
)

// loop is what Run keeps between turns: the timers that pace scans and
// reads, and what the next turn must do. It belongs to Run's goroutine.
type loop struct {
	r *Reader
	// events and watchErrs come from the watcher; nil without
	// notifications, or once they failed.
	events    <-chan []byte
	watchErrs <-chan error
	// scan and poll are the safety nets: rescan the tree, read every file.
	scan, poll *time.Ticker
	// scanSoon is a scan shortly after creations and renames: a burst of
	// them gets one; scanPending says it is set.
	scanSoon    *time.Timer
	scanPending bool
	// readSoon is the read delay that the first write event after a turn
	// starts; readArmed says it runs.
	readSoon  *time.Timer
	readArmed bool
	// readAll makes the next turn read every file, not only those written.
	readAll bool
}

// scanSoonDelay gathers a burst of creations and renames into one scan.
const scanSoonDelay = 50 * time.Millisecond

func (r *Reader) newLoop() *loop {
	l := &loop{r: r, readAll: true}
	if r.watch != nil {
		l.events, l.watchErrs = r.watch.Chunks(), r.watch.Errs()
	}
	scanEvery, pollEvery := r.cfg.ScanInterval, r.cfg.PollInterval
	if r.watch != nil && r.cfg.ResyncInterval > 0 {
		scanEvery, pollEvery = r.cfg.ResyncInterval, r.cfg.ResyncInterval
	}
	l.scan, l.poll = time.NewTicker(scanEvery), time.NewTicker(pollEvery)
	l.scanSoon, l.readSoon = time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	l.scanSoon.Stop()
	l.readSoon.Stop()
	return l
}

func (l *loop) stop() {
	l.scan.Stop()
	l.poll.Stop()
	l.scanSoon.Stop()
	l.readSoon.Stop()
}

// wait handles what happened since the last turn and tells whether to take
// the next one (false: ctx is done). block says whether to sleep until
// something happens: until the read delay after a write ends, or at once
// without a delay. A busy reader still handles events and scans every turn:
// a new file after a rotation must be opened before kubelet compresses and
// deletes the one we are still reading.
func (l *loop) wait(ctx context.Context, block bool) bool {
	r := l.r
	var space <-chan struct{}
	if r.held != nil {
		space = r.out.Space()
		if r.submitHeld() {
			block, space = false, nil
		}
	}
	for handled := 0; ; handled++ {
		idle := l.idle(block, handled)
		// While the read delay runs, events wait in their queue: taken in
		// one go when it ends, they cost no wake-up each.
		events := l.events
		if l.readArmed {
			events = nil
		}
		select {
		case <-ctx.Done():
			return false
		case <-space:
			if r.submitHeld() {
				return true
			}
			space = r.out.Space()
		case chunk := <-events:
			l.onEvents(chunk)
		case err := <-l.watchErrs:
			l.watchFailed(err)
		case <-l.scanSoon.C:
			l.scanPending = false
			r.scanAndLog()
		case <-l.scan.C:
			r.scanAndLog()
		case <-l.poll.C:
			l.readAll = true
		case <-l.readSoon.C:
			l.readArmed = false
			l.drainEvents()
			return true
		case <-idle:
			return true
		}
		if r.rescan {
			r.rescan = false
			l.requestScan()
		}
		if handled > maxEvents {
			return true // keep reading even under a storm of events
		}
	}
}

// idle is what ends a wait that has nothing to handle: at once when not
// blocking (or once something was handled, without a read delay), never
// (nil) while the read delay or the window is awaited. Files written since
// the last turn start the read delay.
func (l *loop) idle(block bool, handled int) <-chan time.Time {
	r := l.r
	if !block || (handled > 0 && (r.cfg.ReadDelay <= 0 || l.readAll)) {
		return closedTimeChan // don't sleep: drain what is there
	}
	if len(r.dirty) > 0 && !l.readArmed && r.held == nil {
		// (While a batch waits for the window, Space ends the wait.)
		l.readArmed = true
		l.readSoon.Reset(r.cfg.ReadDelay)
	}
	return nil
}

// onEvents marks written files dirty and asks for a scan after creations
// and renames. Events lost by the kernel make the next turn read every file,
// after a scan.
func (l *loop) onEvents(chunk []byte) {
	err := l.r.watch.Decode(chunk, func(name []byte, mask uint32) {
		if l.r.handleEvent(name, mask) {
			l.requestScan()
		}
	})
	if err != nil {
		l.r.metrics.watchOverflows.Inc()
		l.r.log.Debug("filesystem notifications lost; reading every file and scanning", "err", err)
		l.readAll = true
		l.requestScan()
	}
}

// drainEvents takes every event queued while the read delay ran (a select
// that may also take idle would take only some); events left behind would
// delay the next ones more and more.
func (l *loop) drainEvents() {
	for range maxEvents {
		select {
		case chunk := <-l.events:
			l.onEvents(chunk)
		default:
			return
		}
	}
}

// watchFailed falls back to polling as without notifications.
func (l *loop) watchFailed(err error) {
	l.r.log.Warn("filesystem notifications failed; relying on polling", "err", err, "poll_interval", l.r.cfg.PollInterval)
	l.events, l.watchErrs = nil, nil
	l.scan.Reset(l.r.cfg.ScanInterval)
	l.poll.Reset(l.r.cfg.PollInterval)
	l.readAll = true
}

// requestScan scans soon, once for a burst of requests.
func (l *loop) requestScan() {
	if !l.scanPending {
		l.scanPending = true
		l.scanSoon.Reset(scanSoonDelay)
	}
}
