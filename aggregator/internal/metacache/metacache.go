// Package metacache is the aggregator's one shared cache of pod metadata:
// a client-go shared informer on pods (and on namespaces when their labels
// are wanted), started once per process and read by every forwarder stream.
//
// Invariants and hard cases:
//   - One watch per replica: every stream reads the same informer; the API
//     server sees one pod watch per aggregator process, never one per node.
//   - Render once: the informer's transform renders each pod (enrich.Render)
//     when it changes and hands the informer a small podObject in its place,
//     so the informer's store holds renderings, not pods; the event handlers
//     publish them, and a lookup is a map read under a read lock.
//   - Memory: what pods have in common (the labels, annotations and images
//     of a ReplicaSet's pods) is rendered once and shared (see enrich.Pod);
//     BenchmarkCacheMemory measures the bytes per pod.
//   - A pod the informer has not seen yet (created a moment ago): the lookup
//     waits up to MissWait for the informer, then GETs the pod by name, at
//     most GetQPS per second per replica (never waiting for the limiter). A
//     pod that is not there is remembered as missing for a while, so that the
//     lines of a long-gone pod do not GET once per batch.
//   - A deleted pod: its rendering stays as a tombstone for TombstoneTTL, so
//     lines read after the deletion still carry its metadata.
//   - A restarted container: the log file's restart count picks the
//     container id (the current one, or the last terminated one); a newer
//     restart than the informer knows waits up to MissWait for its update.
//   - Static pods: kubelet names their log directory after the static pod's
//     uid, which the API's mirror pod carries in kubernetes.io/config.mirror;
//     the cache indexes mirror pods by that uid too.
package metacache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/internal/podpath"
)

// Config tunes the cache.
type Config struct {
	Enrich enrich.Options
	// TombstoneTTL is how long a deleted pod's metadata is kept for its late
	// lines.
	TombstoneTTL time.Duration
	// MissWait is how long a lookup waits for the informer before it GETs.
	MissWait time.Duration
	// GetQPS and GetBurst limit direct GETs per replica.
	GetQPS   float64
	GetBurst int
	// GetTimeout bounds one GET.
	GetTimeout time.Duration
	// MissingTTL is how long a pod a GET did not find is not asked for again.
	MissingTTL time.Duration
	// ResyncPeriod is the informers' resync period (0: none).
	ResyncPeriod time.Duration
}

// Source says where a lookup's answer came from.
type Source int

const (
	// Miss: no metadata; the document has what its path says.
	Miss Source = iota
	// Live: the informer's current view of the pod.
	Live
	// Tombstone: a pod deleted less than TombstoneTTL ago.
	Tombstone
	// Fetched: a direct GET, for a pod the informer had not delivered yet.
	Fetched
)

var sourceNames = [...]string{"miss", "hit", "tombstone", "fetched"}

func (s Source) String() string { return sourceNames[s] }

// Result is a lookup's answer. Pod, ContainerExtra and ImageExtra are
// shared and must not be modified (see enrich.Pod.Container).
type Result struct {
	Source         Source
	Pod            *enrich.Pod // nil on a miss
	ContainerExtra []byte
	ImageExtra     []byte
}

// Cache is the shared metadata cache.
type Cache struct {
	cfg     Config
	client  kubernetes.Interface
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	pods cache.SharedIndexInformer
	nss  cache.SharedIndexInformer // nil unless namespace labels are wanted
	// synced report whether the handlers have had every listed object.
	synced []cache.InformerSynced

	limiter *rate.Limiter
	gets    singleflight.Group

	mu sync.RWMutex
	// byUID holds live pods by uid, and mirror pods also by their static
	// pod's uid; guarded by mu.
	byUID map[string]*enrich.Pod
	// tombstones holds deleted pods until their expiry; guarded by mu.
	tombstones map[string]tombstone
	// fetched holds pods from GETs until the informer has them; guarded by mu.
	fetched map[string]tombstone
	// missing holds uids a GET did not find, until expiry; guarded by mu.
	missing map[string]time.Time
	// namespaces holds rendered namespace labels by name; guarded by mu.
	namespaces map[string]enrich.Namespace
	// changed is closed and replaced whenever a pod is added or updated, to
	// wake lookups waiting for the informer; guarded by mu.
	changed chan struct{}

	started chan struct{} // closed by Run once the informers run
}

type tombstone struct {
	pod   *enrich.Pod
	until time.Time
}

// New returns a cache reading pods through client. Run starts it.
func New(cfg Config, client kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger) *Cache {
	c := &Cache{
		cfg: cfg, client: client, log: log, metrics: newMetrics(reg), now: time.Now,
		limiter:    rate.NewLimiter(rate.Limit(cfg.GetQPS), max(cfg.GetBurst, 1)),
		byUID:      map[string]*enrich.Pod{},
		tombstones: map[string]tombstone{},
		fetched:    map[string]tombstone{},
		missing:    map[string]time.Time{},
		namespaces: map[string]enrich.Namespace{},
		changed:    make(chan struct{}),
		started:    make(chan struct{}),
	}
	// The wrapper lets a client that cannot stream lists (the fake clientset
	// of unit tests) say so; a real API server gets watch-list semantics.
	c.pods = cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
		},
	}, client), &corev1.Pod{}, cache.SharedIndexInformerOptions{
		// No namespace index: it would cost every pod an entry for the
		// rare change of a namespace's labels.
		ResyncPeriod: cfg.ResyncPeriod,
	})
	mustOK(c.pods.SetTransform(c.transformPod))
	mustOK(c.pods.SetWatchErrorHandlerWithContext(c.watchError("pods")))
	podsReg, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.podChanged(nil, obj) },
		UpdateFunc: c.podChanged,
		DeleteFunc: c.podDeleted,
	})
	mustOK(err)
	c.synced = append(c.synced, podsReg.HasSynced)
	if cfg.Enrich.NamespaceLabels {
		c.nss = cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return client.CoreV1().Namespaces().List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return client.CoreV1().Namespaces().Watch(ctx, o)
			},
		}, client), &corev1.Namespace{}, cache.SharedIndexInformerOptions{ResyncPeriod: cfg.ResyncPeriod})
		mustOK(c.nss.SetTransform(TrimNamespace))
		mustOK(c.nss.SetWatchErrorHandlerWithContext(c.watchError("namespaces")))
		reg, err := c.nss.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.namespaceChanged(nil, obj) },
			UpdateFunc: c.namespaceChanged,
			DeleteFunc: c.namespaceDeleted,
		})
		mustOK(err)
		c.synced = append(c.synced, reg.HasSynced)
	}
	return c
}

func mustOK(err error) {
	if err != nil {
		// Only possible once an informer runs; New has not started them.
		panic("BUG: configure informer before it runs: " + err.Error())
	}
}

// Run runs the informers and the tombstone sweeper until ctx ends, and
// returns once they have stopped.
func (c *Cache) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { c.pods.RunWithContext(ctx) })
	if c.nss != nil {
		wg.Go(func() { c.nss.RunWithContext(ctx) })
	}
	wg.Go(func() { c.sweep(ctx) })
	close(c.started)
	wg.Wait()
	return nil
}

// WaitForSync waits until the informers have listed every pod (and
// namespace) and the cache holds them, or ctx ends; it reports whether they
// have.
func (c *Cache) WaitForSync(ctx context.Context) bool {
	select {
	case <-c.started:
	case <-ctx.Done():
		return false
	}
	return cache.WaitForCacheSync(ctx.Done(), c.synced...)
}

// AwaitSync waits up to timeout for WaitForSync and logs how it went. A
// cache not synced in time serves anyway: its lookups wait for a pod they
// do not know yet and GET it, so streams need not wait for a slow API.
func (c *Cache) AwaitSync(ctx context.Context, timeout time.Duration) {
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	begin := time.Now()
	switch {
	case c.WaitForSync(syncCtx):
		c.log.Info("pod metadata cache synced", "took", time.Since(begin).Round(time.Millisecond), "cache", c.String())
	case ctx.Err() == nil:
		c.log.Warn("pod metadata cache not synced in time; taking streams anyway (lookups wait and GET until it is)", "timeout", timeout)
	}
}

// Synced reports whether the informers have listed everything once and the
// cache holds it.
func (c *Cache) Synced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

func (c *Cache) watchError(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		c.metrics.watchErrors.WithLabelValues(resource).Inc()
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return
		}
		// The reflector re-watches (or re-lists) by itself, with backoff.
		c.log.Warn("Kubernetes watch ended; re-watching", "resource", resource, "err", err)
	}
}

// Lookup returns the metadata for the container whose log file path says
// ref. It may wait (MissWait, then one GET); ctx bounds the wait.
func (c *Cache) Lookup(ctx context.Context, ref *podpath.Ref) Result {
	start := c.now()
	r := c.lookup(ctx, ref)
	c.metrics.lookupsBy[r.Source].Inc()
	c.metrics.lookupSeconds.Observe(c.now().Sub(start).Seconds())
	return r
}

func (c *Cache) lookup(ctx context.Context, ref *podpath.Ref) Result {
	var deadline <-chan time.Time
	for {
		c.mu.RLock()
		r, settled := c.find(ref)
		changed := c.changed
		c.mu.RUnlock()
		if settled {
			return r
		}
		if deadline == nil {
			if c.cfg.MissWait <= 0 {
				if r.Pod != nil {
					return r
				}
				break
			}
			t := time.NewTimer(c.cfg.MissWait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-changed:
			continue
		case <-deadline:
		case <-ctx.Done():
			return r
		}
		// One last look after the wait.
		c.mu.RLock()
		r, settled = c.find(ref)
		c.mu.RUnlock()
		if settled || r.Pod != nil {
			// A known pod whose status lags (a new restart): what is known.
			return r
		}
		break
	}
	return c.fetch(ctx, ref)
}

// find looks ref up; settled is false when waiting for the informer could
// give a better answer. Called with mu held.
func (c *Cache) find(ref *podpath.Ref) (r Result, settled bool) {
	now := c.now()
	if p := c.byUID[ref.PodUID]; p != nil {
		id, image, exact := p.Container(ref.Container, ref.Restart)
		r = Result{Source: Live, Pod: p, ContainerExtra: id, ImageExtra: image}
		// Waiting helps only for a restart (or container) newer than the
		// status the informer has.
		return r, exact || p.Restarts(ref.Container, ref.Restart)
	}
	if t, ok := c.tombstones[ref.PodUID]; ok && now.Before(t.until) {
		id, image, _ := t.pod.Container(ref.Container, ref.Restart)
		return Result{Source: Tombstone, Pod: t.pod, ContainerExtra: id, ImageExtra: image}, true
	}
	if t, ok := c.fetched[ref.PodUID]; ok && now.Before(t.until) {
		id, image, _ := t.pod.Container(ref.Container, ref.Restart)
		return Result{Source: Fetched, Pod: t.pod, ContainerExtra: id, ImageExtra: image}, true
	}
	if until, ok := c.missing[ref.PodUID]; ok && now.Before(until) {
		return Result{}, true
	}
	return Result{}, false
}

// fetch GETs the pod by name, once per pod at a time, within the rate limit.
func (c *Cache) fetch(ctx context.Context, ref *podpath.Ref) Result {
	if !c.limiter.Allow() {
		c.metrics.gets.WithLabelValues("throttled").Inc()
		return Result{}
	}
	key := ref.Namespace + "/" + ref.Pod + "/" + ref.PodUID
	v, _, _ := c.gets.Do(key, func() (any, error) {
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.GetTimeout)
		defer cancel()
		pod, err := c.client.CoreV1().Pods(ref.Namespace).Get(gctx, ref.Pod, metav1.GetOptions{})
		now := c.now()
		switch {
		case apierrors.IsNotFound(err):
			c.metrics.gets.WithLabelValues("not_found").Inc()
		case err != nil:
			c.metrics.gets.WithLabelValues("error").Inc()
			c.log.Warn("could not get a pod the cache does not have; its lines get metadata from their path only",
				"namespace", ref.Namespace, "pod", ref.Pod, "err", err)
			return nil, nil
		case string(pod.UID) != ref.PodUID && pod.Annotations[enrich.AnnotationMirror] != ref.PodUID:
			// Same name, another pod (a StatefulSet pod recreated).
			c.metrics.gets.WithLabelValues("other_uid").Inc()
		default:
			c.metrics.gets.WithLabelValues("found").Inc()
			p := c.render(pod)
			c.mu.Lock()
			if c.byUID[ref.PodUID] == nil {
				c.fetched[ref.PodUID] = tombstone{pod: p, until: now.Add(c.cfg.TombstoneTTL)}
			}
			c.mu.Unlock()
			return p, nil
		}
		c.mu.Lock()
		c.missing[ref.PodUID] = now.Add(c.cfg.MissingTTL)
		c.mu.Unlock()
		return nil, nil
	})
	p, _ := v.(*enrich.Pod)
	if p == nil {
		return Result{}
	}
	id, image, _ := p.Container(ref.Container, ref.Restart)
	return Result{Source: Fetched, Pod: p, ContainerExtra: id, ImageExtra: image}
}

// transformPod is the pod informer's transform: it renders the pod and
// returns a podObject in its place (see podObject).
func (c *Cache) transformPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a podObject already, or a DeletedFinalStateUnknown
	}
	// A relist hands over the pods the store has: keep their renderings.
	key := pod.Namespace + "/" + pod.Name
	if old, ok, _ := c.pods.GetStore().GetByKey(key); ok {
		if o, ok := old.(*podObject); ok && o.resourceVersion == pod.ResourceVersion && o.pod.Load().UID == string(pod.UID) {
			return o, nil
		}
	}
	return newPodObject(c.render(pod), strings.Clone(pod.ResourceVersion)), nil
}

func (c *Cache) render(pod *corev1.Pod) *enrich.Pod {
	var ns enrich.Namespace
	if c.cfg.Enrich.NamespaceLabels {
		c.mu.RLock()
		ns = c.namespaces[pod.Namespace]
		c.mu.RUnlock()
	}
	p := enrich.RenderWith(pod, ns, c.cfg.Enrich)
	if cut := p.KeysCut(); cut > 0 {
		c.metrics.keysCut.Add(float64(cut))
	}
	return p
}

func (c *Cache) podChanged(oldObj, newObj any) {
	o, ok := newObj.(*podObject)
	if !ok {
		return
	}
	old, _ := oldObj.(*podObject)
	if old != nil && old.resourceVersion == o.resourceVersion {
		c.metrics.resyncs.Inc() // a periodic resync: nothing changed
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := o.pod.Load()
	if old != nil && old.pod.Load().UID != p.UID {
		// Another pod of the same name (a StatefulSet's, recreated while
		// the watch was down): the informer's store is keyed by name.
		c.deleteLocked(old.pod.Load().UID)
	}
	if c.cfg.Enrich.NamespaceLabels {
		// The namespace's labels changed since the transform rendered p.
		if ns := c.namespaces[p.Namespace]; !p.HasNamespace(ns) {
			p = p.WithNamespace(ns)
			o.pod.Store(p)
		}
	}
	c.putLocked(p)
}

// putLocked stores a live pod and wakes waiting lookups. Called with mu held.
func (c *Cache) putLocked(p *enrich.Pod) {
	if _, had := c.byUID[p.UID]; !had {
		c.metrics.pods.Inc()
	}
	c.byUID[p.UID] = p
	if mirrorOf := p.MirrorOf(); mirrorOf != "" {
		c.byUID[mirrorOf] = p
		delete(c.fetched, mirrorOf)
		delete(c.missing, mirrorOf)
	}
	delete(c.fetched, p.UID)
	delete(c.missing, p.UID)
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Cache) podDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(*podObject)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked(o.pod.Load().UID)
}

// deleteLocked turns a live pod into a tombstone. Called with mu held.
func (c *Cache) deleteLocked(uid string) {
	p := c.byUID[uid]
	if p == nil {
		return
	}
	c.metrics.pods.Dec()
	delete(c.byUID, uid)
	t := tombstone{pod: p, until: c.now().Add(c.cfg.TombstoneTTL)}
	if _, had := c.tombstones[uid]; !had {
		c.metrics.tombstones.Inc()
	}
	c.tombstones[uid] = t
	if mirrorOf := p.MirrorOf(); mirrorOf != "" && c.byUID[mirrorOf] == p {
		delete(c.byUID, mirrorOf)
		c.tombstones[mirrorOf] = t // not counted: the same pod
	}
}

func (c *Cache) namespaceChanged(oldObj, newObj any) {
	ns, ok := newObj.(*corev1.Namespace)
	if !ok {
		return
	}
	if old, ok := oldObj.(*corev1.Namespace); ok && old.ResourceVersion == ns.ResourceVersion {
		c.metrics.resyncs.Inc()
		return
	}
	r := enrich.RenderNamespace(ns.Labels, c.cfg.Enrich)
	c.mu.Lock()
	c.namespaces[ns.Name] = r
	c.mu.Unlock()
	c.rerenderNamespace(ns.Name)
}

func (c *Cache) namespaceDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if ns, ok := obj.(*corev1.Namespace); ok {
		c.mu.Lock()
		delete(c.namespaces, ns.Name)
		c.mu.Unlock()
	}
}

// rerenderNamespace renders the pods of a namespace again (its labels
// changed). Rare; proportional to all pods, a few milliseconds for 50,000.
func (c *Cache) rerenderNamespace(name string) {
	for _, obj := range c.pods.GetStore().List() {
		o, ok := obj.(*podObject)
		if !ok || o.pod.Load().Namespace != name {
			continue
		}
		c.mu.Lock()
		if p := o.pod.Load(); !p.HasNamespace(c.namespaces[name]) {
			q := p.WithNamespace(c.namespaces[name])
			o.pod.Store(q)
			// A pod deleted meanwhile stays deleted; one whose handler has
			// not run yet gets q from o then.
			if c.byUID[p.UID] == p {
				c.putLocked(q)
			}
		}
		c.mu.Unlock()
	}
}

// sweep drops expired tombstones, fetched pods and missing marks.
func (c *Cache) sweep(ctx context.Context) {
	every := min(max(c.cfg.TombstoneTTL/4, time.Second), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sweepOnce()
		}
	}
}

func (c *Cache) sweepOnce() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid, t := range c.tombstones {
		if !now.Before(t.until) {
			delete(c.tombstones, uid)
			if t.pod.UID == uid {
				c.metrics.tombstones.Dec()
			}
		}
	}
	for uid, t := range c.fetched {
		if !now.Before(t.until) {
			delete(c.fetched, uid)
		}
	}
	for uid, until := range c.missing {
		if !now.Before(until) {
			delete(c.missing, uid)
		}
	}
}

// String is for logs.
func (c *Cache) String() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return fmt.Sprintf("metacache: %d pods, %d tombstones", len(c.byUID), len(c.tombstones))
}
