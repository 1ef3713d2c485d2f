package reader

import (
	"errors"
	"io/fs"
	"log/slog"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// unreadablePaths reports the paths under the pods root that scans cannot
// read or watch: a symbolic link loop, a directory without permission. Such a
// path fails at every scan, so it is warned about and counted once, and
// forgotten when it stops failing (fixed, or gone): a new problem there later
// is reported again.
type unreadablePaths struct {
	log   *slog.Logger
	count *prometheus.CounterVec // by reason: unreadableReasons
	scans uint64
	// failing holds the paths reported, with the last scan they failed at.
	failing map[string]uint64
}

// unreadableReasons are the values of the reason label.
var unreadableReasons = []string{"symlink_loop", "permission", "other"}

func newUnreadablePaths(count *prometheus.CounterVec, log *slog.Logger) *unreadablePaths {
	for _, r := range unreadableReasons {
		count.WithLabelValues(r)
	}
	return &unreadablePaths{log: log, count: count, failing: map[string]uint64{}}
}

// update takes what failed at one scan: paths the finder could not read
// (log files under them are not followed) and directories that could not be
// watched (polling covers them). A path in both is reported once.
func (u *unreadablePaths) update(notRead, notWatched []*fs.PathError) {
	u.scans++
	report := func(errs []*fs.PathError, msg string) {
		for _, e := range errs {
			if _, known := u.failing[e.Path]; !known {
				reason := unreadableReason(e)
				u.count.WithLabelValues(reason).Inc()
				u.log.Warn(msg, "path", e.Path, "reason", reason, "err", e, "fix", unreadableFix(e))
			}
			u.failing[e.Path] = u.scans
		}
	}
	report(notRead, "cannot read a path under the pods root; log files under it are not followed")
	report(notWatched, "cannot watch a directory under the pods root; polling covers it")
	for p, last := range u.failing {
		if last != u.scans {
			delete(u.failing, p)
			u.log.Info("a path under the pods root that could not be read no longer fails (fixed or gone)", "path", p)
		}
	}
}

// unreadableReason classifies a failure for the bounded reason label.
func unreadableReason(err error) string {
	switch {
	case errors.Is(err, syscall.ELOOP):
		return "symlink_loop"
	case errors.Is(err, fs.ErrPermission):
		return "permission"
	}
	return "other"
}

// unreadableFix says what the operator can do about a failure.
func unreadableFix(err error) string {
	switch {
	case errors.Is(err, syscall.ELOOP):
		return "remove the symbolic link: kubelet makes none under the pods root, and the forwarder follows none"
	case errors.Is(err, fs.ErrPermission):
		return "let the forwarder read it: run it as root, and check the path's owner, mode and SELinux or AppArmor label"
	case errors.Is(err, syscall.ENOSPC):
		return "raise the fs.inotify.max_user_watches sysctl: every pod and container directory takes a watch"
	}
	return "check the path on the node"
}
