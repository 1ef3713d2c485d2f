package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podlogs/podlogs/aggregator/internal/document"
	"github.com/podlogs/podlogs/internal/docmsg"
	podlogsv1 "github.com/podlogs/podlogs/proto/podlogs/v1"
)

// criLine is a CRI line whose message is msg ('\n' would end the line, so
// it is not in msg).
func criLine(msg []byte) string {
	return "2026-12-05T10:00:00.000000000Z stdout F " + string(msg)
}

// randomMessage is n random bytes without '\n', the worst case for JSON
// escaping (control characters, invalid UTF-8).
func randomMessage(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		if b[i] = byte(r.UintN(256)); b[i] == '\n' {
			b[i] = 0
		}
	}
	return b
}

// checkFits fails the test unless every message fits the largest message
// and every document its limit, as valid JSON.
func checkFits(t *testing.T, msgs []*nats.Msg, messageBytes, maxDoc int) (docs []docmsg.Doc) {
	t.Helper()
	for i, m := range msgs {
		if n := len(m.Data); n > LargestMessage(messageBytes, maxDoc) {
			t.Fatalf("message %d: %d bytes, the largest message is %d", i, n, LargestMessage(messageBytes, maxDoc))
		}
		hdr := 0
		for k, v := range m.Header {
			hdr += len(k) + len(v[0]) + 4
		}
		if hdr > docmsg.HeaderBytes {
			t.Fatalf("message %d: headers of %d bytes", i, hdr)
		}
		got, err := docmsg.Append(nil, m.Header, m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(got) > 1 && len(m.Data) > messageBytes {
			t.Fatalf("message %d: %d documents in %d bytes, over the message limit %d", i, len(got), len(m.Data), messageBytes)
		}
		for _, d := range got {
			if len(d.Data) > maxDoc || !json.Valid(d.Data) {
				t.Fatalf("message %d: a document of %d bytes (limit %d), valid JSON %v", i, len(d.Data), maxDoc, json.Valid(d.Data))
			}
		}
		docs = append(docs, got...)
	}
	return docs
}

func convertOne(t *testing.T, c *converter, lines ...[]byte) []*nats.Msg {
	t.Helper()
	b := &podlogsv1.Batch{Sequence: 1, Sources: []*podlogsv1.Source{{
		Path: podPath, Identity: &podlogsv1.FileIdentity{Device: 1, Inode: 2, Fingerprint: 3}, Format: podlogsv1.Format_FORMAT_CRI,
	}}}
	off := uint64(0)
	for _, l := range lines {
		b.Records = append(b.Records, &podlogsv1.Record{Offset: off, NextOffset: off + 20<<20, Data: l, Truncated: len(l) >= 1<<20})
		off += 20 << 20
	}
	msgs, err := c.convert(context.Background(), b, time.Unix(0, 0), newMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// With the default limits, a record of --max-record-bytes (1 MiB) of the
// worst bytes, cut by the forwarder, fits NATS's default max_payload
// (1 MiB) in a message of its own, cut further and flagged; the lines
// around it keep their messages.
func TestMaximalRecordFitsTheDefaults(t *testing.T) {
	c := &converter{node: "n", subjectPrefix: "t.docs", messageBytes: DefaultMessageBytes, maxDocBytes: DefaultMaxDocumentBytes}
	worst := []byte(criLine(bytes.Repeat([]byte{1}, 1<<20)))[:1<<20] // six bytes a character escaped
	random := []byte(criLine(randomMessage(1, 1<<20)))[:1<<20]
	base64ish := []byte(criLine(bytes.Repeat([]byte("QUJD"), 1<<18)))[:1<<20]
	var lines [][]byte
	for i := range 300 {
		lines = append(lines, []byte(criLine([]byte(strings.Repeat("ordinary line ", 1+i%40)))))
		switch i {
		case 10:
			lines = append(lines, worst)
		case 150:
			lines = append(lines, random)
		case 299:
			lines = append(lines, base64ish)
		}
	}
	msgs := convertOne(t, c, lines...)
	for _, m := range msgs {
		if n := len(m.Data) + docmsg.HeaderBytes; n > 1<<20 {
			t.Fatalf("a message of %d bytes with its headers: over NATS's default max_payload", n)
		}
	}
	docs := checkFits(t, msgs, DefaultMessageBytes, DefaultMaxDocumentBytes)
	if len(docs) != len(lines) {
		t.Fatalf("%d documents for %d records", len(docs), len(lines))
	}
	cut := 0
	for _, d := range docs {
		var doc struct {
			Log     string
			Podlogs struct {
				Truncated     bool   `json:"truncated"`
				OriginalBytes uint64 `json:"original_bytes"`
			}
		}
		json.Unmarshal(d.Data, &doc)
		switch {
		case doc.Podlogs.Truncated:
			cut++
			if doc.Podlogs.OriginalBytes != 20<<20 {
				t.Fatalf("a cut document says original_bytes %d, want the record's %d", doc.Podlogs.OriginalBytes, 20<<20)
			}
		case !strings.HasPrefix(doc.Log, "ordinary line"):
			t.Fatalf("an uncut document of %d bytes: %.80s", len(d.Data), d.Data)
		}
	}
	if cut != 3 {
		t.Fatalf("%d documents cut, want the 3 long ones", cut)
	}
}

// FuzzConvertFitsLimits: whatever the bytes of the records of a batch, up
// to the record limit (64 KiB here, to be quick), each document fits the
// document limit and each message the largest message.
func FuzzConvertFitsLimits(f *testing.F) {
	f.Add([]byte("2026-12-05T10:00:00.000000000Z stdout F hello"), uint16(1), uint8(3))
	f.Add([]byte{0, 1, 2, 0xff, '"', '\\'}, uint16(5000), uint8(1))
	f.Add([]byte("2026-12-05T10:00:00.000000000Z stderr P \xe2\x80\xa8"), uint16(20000), uint8(7))
	const recordLimit, messageBytes, maxDoc = 64 << 10, 8 << 10, document.MinLimit
	f.Fuzz(func(t *testing.T, data []byte, repeat uint16, records uint8) {
		c := &converter{node: "n", subjectPrefix: "t.docs", messageBytes: messageBytes, maxDocBytes: maxDoc}
		record := bytes.Repeat(data, int(repeat)+1)
		record = record[:min(len(record), recordLimit)]
		lines := make([][]byte, int(records%16)+1)
		for i := range lines {
			lines[i] = record[:len(record)*(i+1)/len(lines)]
		}
		checkFits(t, convertOne(t, c, lines...), messageBytes, maxDoc)
	})
}

// A message the buffer refuses for good (here: over the stream's
// max_msg_size) does not hold the stream: its documents go on as a dead
// letter with the reason, the batch is acknowledged, and the next batch is
// published as usual.
func TestRefusedMessageBecomesADeadLetter(t *testing.T) {
	e := setupConfig(t, Config{AggregatorID: "agg-0", MaxMessageBytes: 8 << 20, ReadAheadBatches: 2, SubjectPrefix: "t.docs",
		MessageBytes: 16 << 10}, nil)
	ctx := context.Background()
	info, err := e.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgSize = 64 << 10
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s := open(t, e)
	if err := s.Send(hello()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	long := criLine(bytes.Repeat([]byte("x"), 200<<10))
	if err := s.Send(batch(1, criLine([]byte("before")), long, criLine([]byte("after")))); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 1 {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	next := batch(2, criLine([]byte("next batch")))
	next.GetBatch().Records[0].Offset, next.GetBatch().Records[0].NextOffset = 1<<30, 1<<30+50 // further down the file
	if err := s.Send(next); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); err != nil || resp.GetAck().GetThroughSequence() != 2 {
		t.Fatalf("ack = %v, %v", resp, err)
	}
	letters, ordinary := 0, 0
	info, _ = e.stream.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := e.stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		docs, _ := docmsg.Append(nil, m.Header, m.Data)
		if reason := m.Header.Get(docmsg.HeaderDeadLetter); reason != "" {
			letters += len(docs)
			if !strings.Contains(reason, "payload_too_large") || len(docs[0].Data) > deadLetterKeepMax {
				t.Fatalf("dead letter: reason %q, %d bytes kept", reason, len(docs[0].Data))
			}
			continue
		}
		ordinary += len(docs)
	}
	if letters != 1 || ordinary != 3 {
		t.Fatalf("stream holds %d dead letters and %d documents, want 1 and 3", letters, ordinary)
	}
	if got := testutilCounter(t, e, "podlogs_aggregator_publish_refused_total"); got != 1 {
		t.Fatalf("refused counter %v, want 1", got)
	}
}
