package accounting

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// Counts are one row's lines per stage.
type Counts struct {
	Received     uint64 `json:"received"`
	Excluded     uint64 `json:"excluded"`
	Published    uint64 `json:"published"`
	Indexed      uint64 `json:"indexed"`
	Duplicate    uint64 `json:"duplicate"`
	DeadLettered uint64 `json:"dead_lettered"`
}

// Plus returns the sum of c and d.
func (c Counts) Plus(d Counts) Counts {
	return Counts{
		Received: c.Received + d.Received, Excluded: c.Excluded + d.Excluded, Published: c.Published + d.Published,
		Indexed: c.Indexed + d.Indexed, Duplicate: c.Duplicate + d.Duplicate, DeadLettered: c.DeadLettered + d.DeadLettered,
	}
}

func countsOf(a *[numStages]uint64) Counts {
	return Counts{
		Received: a[Received], Excluded: a[Excluded], Published: a[Published],
		Indexed: a[Indexed], Duplicate: a[Duplicate], DeadLettered: a[DeadLettered],
	}
}

// Row is one pod (or a marker row: OverflowPod, UnknownPod) of a report.
type Row struct {
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Counts
}

// Report is what /debug/accounting answers: one replica's rows, sorted by
// namespace and pod.
type Report struct {
	Replica   string    `json:"replica"`
	Started   time.Time `json:"started"` // counts cover lines since then at most
	Now       time.Time `json:"now"`
	Retention string    `json:"retention"`
	MaxPods   int       `json:"max_pods"`
	Pods      int       `json:"pods"` // rows held, marker rows not included
	Rows      []Row     `json:"rows"`
}

// Snapshot returns the rows of namespace ns, or of every namespace for "".
func (l *Ledger) Snapshot(ns string) Report {
	l.mu.Lock()
	now := l.now()
	l.sweep(now)
	rep := Report{
		Replica: l.cfg.Replica, Started: l.started.UTC(), Now: now.UTC(), Retention: l.cfg.Retention.String(),
		MaxPods: l.cfg.MaxPods, Pods: l.rows, Rows: []Row{},
	}
	add := func(name, pod string, r *row) {
		rep.Rows = append(rep.Rows, Row{Namespace: name, Pod: pod, FirstSeen: r.first.UTC(), LastSeen: r.last.UTC(), Counts: countsOf(&r.counts)})
	}
	for name, n := range l.namespaces {
		if ns != "" && name != ns {
			continue
		}
		for pod, r := range n.pods {
			add(name, pod, r)
		}
		if n.overflow != nil {
			add(name, OverflowPod, n.overflow)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(rep.Rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	return rep
}

// HandlerPath is where the aggregator's admin server serves Handler.
const HandlerPath = "/debug/accounting"

// Handler serves Snapshot as JSON; ?namespace= narrows it to one namespace.
func (l *Ledger) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := l.Snapshot(r.URL.Query().Get("namespace"))
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		_ = enc.Encode(rep) // the client went away
	})
}
