package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podlogs/podlogs/aggregator/internal/buffer"
	"github.com/podlogs/podlogs/aggregator/internal/enrich"
	"github.com/podlogs/podlogs/aggregator/internal/metacache"
	"github.com/podlogs/podlogs/internal/cri"
	"github.com/podlogs/podlogs/internal/loggen"
	"github.com/podlogs/podlogs/internal/podpath"
	"github.com/podlogs/podlogs/internal/testkit/natstest"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// BenchmarkIngest is the aggregator alone (issue 7, stage 3): records
// through the converter (parse → enrich from a metadata cache holding
// 10,000 pods, fed by an informer over a fake clientset) and the
// buffer.Publisher into an embedded JetStream file stream whose only
// consumer discards what it is delivered (the null consumer: interest
// retention then drops each document once delivered, as the writers' acks
// do). One op is one record. gRPC is left out: it is the forwarder
// benchmark's share.
//
// records/cpu-s is per CPU-second of the whole process, JetStream server and
// null consumer included: records/s per core. replicas=2 runs two
// aggregators' worth of converters and publishers (own NATS connections) in
// one process against the one JetStream server, as two replicas share one
// stream; the 2:1 ratio of records/s says how the pair scales on this
// machine. On a 2-core machine one replica already keeps both cores partly
// busy (converter, JetStream server, consumer), so 2:1 there measures
// contention as much as scaling; records/cpu-s says whether a second
// replica wastes CPU.
//
//	go test -run '^$' -bench Ingest -benchmem ./aggregator/internal/ingest/
func BenchmarkIngest(b *testing.B) {
	pods := 10000
	if testing.Short() {
		pods = 500
	}
	batches, lines := ingestBatches(b)
	cache := ingestCache(b, pods, batches[0].GetSources())
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("pods=%d/replicas=%d", pods, replicas), func(b *testing.B) {
			benchIngest(b, cache, pods, batches, lines, replicas)
		})
	}
}

// streamsPerReplica is how many forwarder streams each replica serves at
// once: a stream converts its next batch while the previous one's publish
// acks are on their way, as the server's read-ahead lets it.
const streamsPerReplica = 4

func benchIngest(b *testing.B, cache *metacache.Cache, podsCached int, batches []*podlogsv1.Batch, lineBytes int64, replicas int) {
	ns := natstest.Start(b)
	ctx := context.Background()
	_, js := natstest.Connect(b, ns)
	if _, err := buffer.EnsureStream(ctx, js, buffer.StreamConfig{
		Name: "B", SubjectPrefix: "b.docs", MaxBytes: 4 << 30, MaxAge: time.Hour, Duplicates: time.Minute, Replicas: 1,
	}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "B", jetstream.ConsumerConfig{Durable: "null", AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(jetstream.Msg) {}, jetstream.PullMaxMessages(4096))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	log := slog.New(slog.DiscardHandler)
	pubs := make([]*buffer.Publisher, replicas)
	for i := range pubs {
		_, js := natstest.Connect(b, ns, jetstream.WithPublishAsyncMaxPending(4096))
		pubs[i] = buffer.NewPublisher(js, prometheus.NewRegistry(), log)
	}
	m := newMetrics(prometheus.NewRegistry())
	perBatch := len(batches[0].GetRecords())
	b.Logf("dataset: stage=aggregator loggen seed=1 files=10 format=mixed batches=%d records/batch=%d bytes=%d (cycled); pods in cache=%d",
		len(batches), perBatch, lineBytes, podsCached)

	b.SetBytes(lineBytes / int64(len(batches)*perBatch))
	b.ReportAllocs()
	var next atomic.Int64 // batches handed out
	want := (int64(b.N) + int64(perBatch) - 1) / int64(perBatch)
	var wg sync.WaitGroup
	var failed atomic.Bool
	cpu0 := ingestCPU()
	b.ResetTimer()
	for r := range replicas {
		for s := range streamsPerReplica {
			wg.Go(func() {
				conv := converter{node: "node-1", subjectPrefix: "b.docs", enrich: cache, dataFields: 10}
				var own ownBatch
				for {
					n := next.Add(1) - 1
					if n >= want || failed.Load() {
						return
					}
					// Records of each batch get offsets of their own so that
					// no message id repeats within the duplicate window.
					batch := own.fill(batches[n%int64(len(batches))], uint64(n)*uint64(perBatch)*1000)
					msgs, err := conv.convert(ctx, batch, time.Now(), m)
					if err == nil {
						err = pubs[r].Publish(ctx, msgs)
					}
					if err != nil {
						failed.Store(true)
						b.Errorf("replica %d stream %d: %v", r, s, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	b.StopTimer()
	cpu := ingestCPU() - cpu0
	records := float64(want * int64(perBatch))
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(records/cpu.Seconds(), "records/cpu-s")
}

// ownBatch is one stream's batch: the records of a template batch with
// offsets of their own, so that no message id repeats within the
// duplicate window. Reused from batch to batch, as the receiving side of a
// stream would reuse its buffers.
type ownBatch struct {
	batch podlogsv1.Batch
	recs  []podlogsv1.Record
	ptrs  []*podlogsv1.Record
}

func (o *ownBatch) fill(t *podlogsv1.Batch, base uint64) *podlogsv1.Batch {
	if len(o.recs) != len(t.GetRecords()) {
		o.recs = make([]podlogsv1.Record, len(t.GetRecords()))
		o.ptrs = make([]*podlogsv1.Record, len(o.recs))
		for i := range o.recs {
			o.ptrs[i] = &o.recs[i]
		}
	}
	for i, r := range t.GetRecords() {
		off := base + uint64(i)*1000
		o.recs[i].SourceIndex, o.recs[i].Offset, o.recs[i].NextOffset = r.GetSourceIndex(), off, off+uint64(len(r.GetData()))+1
		o.recs[i].Data, o.recs[i].Truncated = r.GetData(), r.GetTruncated()
	}
	o.batch.Sequence, o.batch.Sources, o.batch.Records = t.GetSequence(), t.GetSources(), o.ptrs
	return &o.batch
}

// ingestCPU is the process's user and system CPU time.
func ingestCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ingestBatches writes loggen's realistic mix for 10 pods (seed 1, CRI and
// docker per pod) and cuts the physical lines into batches as a forwarder
// sends them: 1,000 records, 100 from each of the 10 files. It returns
// the batches and their records' total bytes.
func ingestBatches(b *testing.B) ([]*podlogsv1.Batch, int64) {
	root := b.TempDir()
	const files, perFile = 10, 100
	if _, err := loggen.Run(context.Background(), loggen.Config{Root: root, Seed: 1, Pods: files, Format: "mixed", Lines: 2000}); err != nil {
		b.Fatal(err)
	}
	var sources []*podlogsv1.Source
	var lines [][][]byte
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		ls := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		format := podlogsv1.Format_FORMAT_CRI
		if cri.DetectFormat(ls[0]) == cri.FormatDocker {
			format = podlogsv1.Format_FORMAT_DOCKER
		}
		sources = append(sources, &podlogsv1.Source{Path: filepath.ToSlash(rel), Format: format,
			Identity: &podlogsv1.FileIdentity{Fingerprint: uint64(len(sources) + 1)}})
		lines = append(lines, ls)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if len(sources) != files {
		b.Fatalf("loggen wrote %d files, want %d", len(sources), files)
	}
	var batches []*podlogsv1.Batch
	var total int64
	for k := 0; ; k++ {
		batch := &podlogsv1.Batch{Sequence: 1, Sources: sources}
		for f := range files {
			if (k+1)*perFile > len(lines[f]) {
				return batches, total
			}
			for _, l := range lines[f][k*perFile : (k+1)*perFile] {
				batch.Records = append(batch.Records, &podlogsv1.Record{SourceIndex: uint32(f), Data: l})
				total += int64(len(l))
			}
		}
		batches = append(batches, batch)
	}
}

// ingestCache returns a synced metadata cache holding n pods: the pods of
// sources and others like them, as an API server lists them.
func ingestCache(b *testing.B, n int, sources []*podlogsv1.Source) *metacache.Cache {
	objs := make([]runtime.Object, 0, n)
	for _, src := range sources {
		ref, err := podpath.Parse(src.GetPath())
		if err != nil {
			b.Fatal(err)
		}
		objs = append(objs, ingestPod(ref.Namespace, ref.Pod, ref.PodUID, ref.Container))
	}
	for i := len(objs); i < n; i++ {
		ns := loggen.DefaultNamespaces()[i%5]
		objs = append(objs, ingestPod(ns, fmt.Sprintf("%s-7d9f8b6c5-%05d", ns, i), fmt.Sprintf("0b6e6f0a-1c2d-4e5f-8a9b-%012d", i), ns))
	}
	c := metacache.New(metacache.Config{Enrich: enrich.Options{Labels: true, Annotations: true, MaxDataFields: 10},
		TombstoneTTL: time.Minute, GetQPS: 1, GetBurst: 1, GetTimeout: time.Second, MissingTTL: time.Minute},
		fake.NewClientset(objs...), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // ends with cancel at cleanup
		defer close(done)
		c.Run(ctx)
	}()
	b.Cleanup(func() { cancel(); <-done })
	if !c.WaitForSync(ctx) {
		b.Fatal("metadata cache did not sync")
	}
	// The informer's store is synced before its handler has rendered every
	// pod: wait until the benchmark's pods are hits.
	deadline := time.Now().Add(time.Minute)
	for _, src := range sources {
		ref, _ := podpath.Parse(src.GetPath())
		for c.Lookup(ctx, &ref).Source != metacache.Live {
			if time.Now().After(deadline) {
				b.Fatalf("pod of %s is not in the cache after a minute", src.GetPath())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// ingestPod is a Deployment's pod with the labels, annotations and status
// enrichment reads, plus what the informer's transform trims.
func ingestPod(ns, name, uid, container string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, UID: types.UID(uid), ResourceVersion: "123456",
			Labels: map[string]string{
				"app.kubernetes.io/name": ns, "app.kubernetes.io/instance": ns, "app.kubernetes.io/component": "service",
				"app.kubernetes.io/owner": "retail-store-sample", "pod-template-hash": "7d9f8b6c5",
			},
			Annotations: map[string]string{
				"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics",
				"kubectl.kubernetes.io/last-applied-configuration": string(make([]byte, 1024)),
			},
		},
		Spec: corev1.PodSpec{
			NodeName: "ip-10-42-11-23.us-west-2.compute.internal",
			Containers: []corev1.Container{{Name: container, Image: "public.ecr.aws/aws-containers/retail-store-sample-" + ns + ":0.4.0",
				Env: []corev1.EnvVar{{Name: "DB_USER", Value: ns}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.42.1.2",
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: container, Ready: true,
				ContainerID: "containerd://9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1e9c1e5f0a7b3d2c1e",
				Image:       "public.ecr.aws/aws-containers/retail-store-sample-" + ns + ":0.4.0",
				ImageID:     "public.ecr.aws/aws-containers/retail-store-sample-" + ns + "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			}},
		},
	}
}
