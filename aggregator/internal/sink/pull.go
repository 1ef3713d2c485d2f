package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/podlogs/podlogs/internal/docmsg"
)

// pull cuts batches from one continuous pull on the consumer and hands
// them to the workers that ask (want) until ctx is done. A batch closes at
// BulkDocs documents, at about BulkBytes of bulk body, or FlushInterval
// after its first message (a message is never split). The iterator
// prefetches in the background, at most PullBytes. It returns an error
// only if the consumer is gone.
func (s *Sink) pull(ctx context.Context, want <-chan struct{}, batches chan<- []*held) error {
	backoff := s.cfg.BackoffMin
	pullBytes := cmp.Or(s.cfg.PullBytes, max(s.cfg.BulkBytes, 2<<20))
	for ctx.Err() == nil {
		it, err := s.cons.Messages(jetstream.PullMaxBytes(pullBytes))
		if err == nil {
			err = s.cut(ctx, it, want, batches)
			if ctx.Err() != nil {
				s.release(it)
				return nil
			}
			it.Stop()
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("the writers' consumer is gone (deleted?); a restart creates it again: %w", err)
		}
		s.log.Warn("pull from JetStream failed; retrying", "err", err, "retry_in", backoff)
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
	return nil
}

// cut reads it into batches, one for each want, until ctx is done or it
// fails.
func (s *Sink) cut(ctx context.Context, it jetstream.MessagesContext, want <-chan struct{}, batches chan<- []*held) error {
	var next *held // read, but past the limits of the batch before
	for {
		select {
		case <-want:
		case <-ctx.Done():
			if next != nil {
				s.nakAll([]*held{next}, s.cfg.BackoffMin)
			}
			return ctx.Err()
		}
		if next == nil {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				return fmt.Errorf("next message: %w", err)
			}
			next = hold(m)
		}
		batch := []*held{next}
		docs, size := next.count(), next.bulkSize()
		next = nil
		flushCtx, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval)
		for docs < s.cfg.BulkDocs {
			m, err := it.Next(jetstream.NextContext(flushCtx))
			if err != nil {
				if ctx.Err() == nil && flushCtx.Err() != nil {
					break // flush interval over
				}
				cancel()
				s.nakAll(batch, s.cfg.BackoffMin)
				return fmt.Errorf("next message: %w", err)
			}
			h := hold(m)
			if n, b := h.count(), h.bulkSize(); docs+n <= s.cfg.BulkDocs && size+b <= s.cfg.BulkBytes {
				batch, docs, size = append(batch, h), docs+n, size+b
				continue
			}
			next = h
			break
		}
		cancel()
		select {
		case batches <- batch:
		case <-ctx.Done():
			s.nakAll(batch, s.cfg.BackoffMin)
			if next != nil {
				s.nakAll([]*held{next}, s.cfg.BackoffMin)
			}
			return ctx.Err()
		}
	}
}

// held is a message pulled from the consumer, with its documents.
type held struct {
	msg  jetstream.Msg
	docs []docmsg.Doc
	bad  error // the message could not be read: it goes to the dead-letter index whole
	// letter is the reason ingest gave for sending the documents to the
	// dead-letter index (the buffer refused them as they were).
	letter string
	// retry is set when one of the documents is to be written again: the
	// message is nak'ed, not acked.
	retry bool
}

func hold(m jetstream.Msg) *held {
	h := &held{msg: m, letter: m.Headers().Get(docmsg.HeaderDeadLetter)}
	// The header's count sizes the slice, within what the data can hold.
	n := min(docmsg.Count(m.Headers()), len(m.Data())/docmsg.EntrySize(0, 0)+1)
	h.docs, h.bad = docmsg.Append(make([]docmsg.Doc, 0, n), m.Headers(), m.Data())
	return h
}

// indexed tells whether h's documents go to the index (not straight to
// the dead-letter index).
func (h *held) indexed() bool { return h.bad == nil && h.letter == "" }

// count is how many documents h adds to a batch (a message that cannot be
// read counts as one).
func (h *held) count() int { return max(len(h.docs), 1) }

// bulkSize is about what h adds to a bulk body.
func (h *held) bulkSize() int { return len(h.msg.Data()) + 128*h.count() }

// release gives back what the iterator has prefetched: nak'ed, it goes to
// whichever writer pulls next instead of waiting out ack_wait.
func (s *Sink) release(it jetstream.MessagesContext) {
	it.Drain()
	for {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		if err := m.NakWithDelay(jitter(s.cfg.BackoffMin)); err != nil {
			s.log.Debug("nak failed", "err", err)
		}
	}
}
