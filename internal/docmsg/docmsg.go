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
// A message without the Podlogs-Docs header is in the format of versions
// before batches: one document, its id in Nats-Msg-Id. Writers read both, so
// a stream that holds documents across an upgrade drains.
package docmsg

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Header names.
const (
	// HeaderDocs holds the number of documents of a batch message.
	HeaderDocs = "Podlogs-Docs"
	// HeaderMsgID is JetStream's de-duplication header.
	HeaderMsgID = "Nats-Msg-Id"
)

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

// ErrMalformed is returned for a batch message whose entries do not add up.
var ErrMalformed = errors.New("malformed document message")

// Count is the number of documents a message says it holds (1 for a message
// of the format before batches, 0 for an unreadable count).
func Count(hdr nats.Header) int {
	v := hdr.Get(HeaderDocs)
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Append appends the documents of the message with hdr and data to docs.
// On an error docs is returned as it was.
func Append(docs []Doc, hdr nats.Header, data []byte) ([]Doc, error) {
	count := hdr.Get(HeaderDocs)
	if count == "" {
		return append(docs, Doc{ID: []byte(hdr.Get(HeaderMsgID)), Data: data}), nil
	}
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
