// Package docmsg is the format of the JetStream messages between ingest and
// the bulk writers. A message carries the documents of one forwarder batch
// that share a subject (a namespace), each with its own id:
//
//	entry   = id length (uint32, big endian), id, document length (uint32), document
//	message = entry…, header Podlogs-Docs: <number of entries>
//
// One message per batch and namespace, not per document, because JetStream's
// cost is per message (a store write, an ack, a delete once acked): BenchmarkPublish
// in package buffer measures the difference. Exactly-once does not depend
// on it. The message's Nats-Msg-Id is a hash of its documents' ids, so a
// publish retried after a lost ack is dropped by JetStream's duplicate
// window; a line resent in a batch cut differently gets a message of its own
// and dies at OpenSearch, whose create answers 409 for an id it holds.
//
// A message with a Podlogs-Dead-Letter header carries documents that could
// not be published as they were (the buffer refused them for good): its
// entries hold each document's id and its first bytes, and the writers put
// them in the dead-letter index with the header's reason.
package docmsg

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Header names.
const (
	// HeaderDocs holds the number of documents of a batch message.
	HeaderDocs = "Podlogs-Docs"
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderDeadLetter holds the reason the documents of a message are
	// bound for the dead-letter index.
	HeaderDeadLetter = "Podlogs-Dead-Letter"
)

// HeaderBytes bounds what the headers of a message take (Msg's, and
// DeadLetter's with a reason of up to 200 bytes): a message's size as the
// NATS server's max_payload counts it is its data plus at most this.
const HeaderBytes = 512

// entryOverhead is what an entry adds to its id and document.
const entryOverhead = 8

// idEnd follows each id in the message id's hash, so that ids of any length
// hash apart.
var idEnd = []byte{0}

// Writer builds one message. The zero Writer is ready; Reset it to reuse its
// buffer for the next message once the last one is published.
type Writer struct {
	data []byte
	docs int
	ids  hash.Hash
	mark int // where the open document's length goes
	last int // where the last entry starts
}

// Reset starts a new message in buf (its contents are dropped).
func (w *Writer) Reset(buf []byte) {
	w.data, w.docs = buf[:0], 0
	if w.ids == nil {
		w.ids = sha256.New()
	}
	w.ids.Reset()
}

// Begin opens an entry for the document with this id and returns the
// buffer to append the document to; pass what the append returned to End.
func (w *Writer) Begin(id []byte) []byte {
	if w.ids == nil {
		w.Reset(w.data)
	}
	w.last = len(w.data)
	w.data = binary.BigEndian.AppendUint32(w.data, uint32(len(id)))
	w.data = append(w.data, id...)
	w.ids.Write(id)
	w.ids.Write(idEnd)
	w.mark = len(w.data)
	return append(w.data, 0, 0, 0, 0)
}

// End closes the entry Begin opened; data is Begin's buffer with the
// document appended.
func (w *Writer) End(data []byte) {
	binary.BigEndian.PutUint32(data[w.mark:], uint32(len(data)-w.mark-4))
	w.data = data
	w.docs++
}

// CutLast removes the last entry from the message and returns it, to be
// added to another message with AddEntry. The result aliases the writer's
// buffer past Len: use it before the buffer is written again. Cutting is
// for the rare entry that takes a message past its limit, so the message
// id's hash is rebuilt from the entries left.
func (w *Writer) CutLast() []byte {
	if w.docs == 0 {
		panic("BUG: docmsg.Writer.CutLast on an empty message")
	}
	entry := w.data[w.last:]
	w.data, w.docs = w.data[:w.last], w.docs-1
	w.ids.Reset()
	for rest := w.data; len(rest) > 0; {
		id, r, _ := field(rest)
		_, rest, _ = field(r)
		w.ids.Write(id)
		w.ids.Write(idEnd)
	}
	return entry
}

// AddEntry appends an entry that CutLast returned.
func (w *Writer) AddEntry(entry []byte) {
	if w.ids == nil {
		w.Reset(w.data)
	}
	id, _, ok := field(entry)
	if !ok {
		panic("BUG: docmsg.Writer.AddEntry: not an entry")
	}
	w.last = len(w.data)
	w.data = append(w.data, entry...)
	w.ids.Write(id)
	w.ids.Write(idEnd)
	w.docs++
}

// Len is the message's size so far.
func (w *Writer) Len() int { return len(w.data) }

// Docs is the number of documents in the message so far.
func (w *Writer) Docs() int { return w.docs }

// Buffer is the message's data; it belongs to the writer again after Reset.
func (w *Writer) Buffer() []byte { return w.data }

// Msg returns the message for subject. Its data is the writer's buffer:
// publish it before the next Reset.
func (w *Writer) Msg(subject string) *nats.Msg {
	var sum [sha256.Size]byte
	id := base64.RawURLEncoding.EncodeToString(w.ids.Sum(sum[:0])[:16])
	return &nats.Msg{
		Subject: subject,
		Header:  nats.Header{HeaderMsgID: []string{id}, HeaderDocs: []string{strconv.Itoa(w.docs)}},
		Data:    w.data,
	}
}

// EntrySize is what a document of docLen bytes with an id of idLen bytes
// adds to a message.
func EntrySize(idLen, docLen int) int { return entryOverhead + idLen + docLen }

// Doc is one document of a message; ID and Data point into the message.
type Doc struct {
	ID   []byte
	Data []byte
}

// ErrMalformed is returned for a message whose entries do not add up.
var ErrMalformed = errors.New("malformed document message")

// Count is the number of documents a message says it holds (0 for an
// unreadable count).
func Count(hdr nats.Header) int {
	n, err := strconv.Atoi(hdr.Get(HeaderDocs))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Append appends the documents of the message with hdr and data to docs.
// On an error docs is returned as it was.
func Append(docs []Doc, hdr nats.Header, data []byte) ([]Doc, error) {
	count := hdr.Get(HeaderDocs)
	want, err := strconv.Atoi(count)
	if err != nil || want < 0 {
		return docs, fmt.Errorf("%w: %s %q", ErrMalformed, HeaderDocs, count)
	}
	start := len(docs)
	for rest := data; len(rest) > 0; {
		id, r, ok := field(rest)
		if !ok {
			return docs[:start], fmt.Errorf("%w: entry %d: id runs past the end", ErrMalformed, len(docs)-start)
		}
		doc, r, ok := field(r)
		if !ok {
			return docs[:start], fmt.Errorf("%w: entry %d: document runs past the end", ErrMalformed, len(docs)-start)
		}
		docs, rest = append(docs, Doc{ID: id, Data: doc}), r
	}
	if got := len(docs) - start; got != want {
		return docs[:start], fmt.Errorf("%w: %d documents, header says %d", ErrMalformed, got, want)
	}
	return docs, nil
}

// DeadLetter returns a message that sends the documents of msg to the
// dead-letter index for reason, each cut to its first keep bytes: what
// stays of a message the buffer refused for good (too large for it, say).
// It has its own id, so it is never taken for msg.
func DeadLetter(msg *nats.Msg, reason string, keep int) (*nats.Msg, error) {
	docs, err := Append(nil, msg.Header, msg.Data)
	if err != nil {
		return nil, err
	}
	var w Writer
	w.Reset(make([]byte, 0, len(docs)*(entryOverhead+64+keep)))
	for _, d := range docs {
		w.End(append(w.Begin(d.ID), d.Data[:min(len(d.Data), keep)]...))
	}
	w.ids.Write([]byte(HeaderDeadLetter))
	m := w.Msg(msg.Subject)
	// A header value is one line.
	reason = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, reason)
	m.Header.Set(HeaderDeadLetter, strings.ToValidUTF8(reason[:min(len(reason), 200)], ""))
	return m, nil
}

// field reads a length-prefixed field; the result's capacity ends with it,
// so that appending to it never writes over the next entry.
func field(b []byte) (f, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, false
	}
	return b[:n:n], b[n:], true
}
