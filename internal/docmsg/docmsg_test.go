package docmsg

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

func build(docs ...Doc) *nats.Msg {
	var w Writer
	w.Reset(nil)
	for _, d := range docs {
		buf := w.Begin(d.ID)
		w.End(append(buf, d.Data...))
	}
	return w.Msg("p.docs.ui")
}

func TestRoundTrip(t *testing.T) {
	f := func(docs ...Doc) {
		t.Helper()
		m := build(docs...)
		if Count(m.Header) != len(docs) {
			t.Fatalf("Count = %d, want %d", Count(m.Header), len(docs))
		}
		got, err := Append([]Doc{{ID: []byte("before")}}, m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		got = got[1:]
		if len(got) != len(docs) {
			t.Fatalf("%d documents back, want %d", len(got), len(docs))
		}
		for i := range docs {
			if !bytes.Equal(got[i].ID, docs[i].ID) || !bytes.Equal(got[i].Data, docs[i].Data) {
				t.Fatalf("document %d: %q %q, want %q %q", i, got[i].ID, got[i].Data, docs[i].ID, docs[i].Data)
			}
		}
		size := 0
		for _, d := range docs {
			size += EntrySize(len(d.ID), len(d.Data))
		}
		if size != len(m.Data) {
			t.Fatalf("EntrySize adds up to %d, message is %d bytes", size, len(m.Data))
		}
	}
	f()
	f(Doc{ID: []byte("a"), Data: []byte(`{"log":"one"}`)})
	f(Doc{ID: []byte("a"), Data: []byte(`{"log":"one"}`)}, Doc{ID: []byte("bb"), Data: nil}, Doc{ID: nil, Data: []byte("{}")})
	f(Doc{ID: []byte("x"), Data: bytes.Repeat([]byte("y"), 70000)})
}

// The message id is a function of the ids alone, in order: the same documents
// resent give the same id (JetStream drops the copy); any other set gives
// another.
func TestMessageID(t *testing.T) {
	id := func(ids ...string) string {
		var docs []Doc
		for _, s := range ids {
			docs = append(docs, Doc{ID: []byte(s), Data: []byte(`{"log":"` + s + `"}`)})
		}
		m := build(docs...)
		if got := m.Header.Get(HeaderMsgID); len(got) != 22 {
			t.Fatalf("message id %q, want 22 characters", got)
		}
		return m.Header.Get(HeaderMsgID)
	}
	first, resent := id("a", "b"), id("a", "b")
	if first != resent {
		t.Fatal("the same documents got two message ids")
	}
	seen := map[string]string{}
	for _, ids := range [][]string{{"a", "b"}, {"b", "a"}, {"a"}, {"ab"}, {"a", "b", "c"}, {"a", "bc"}, {"ab", "c"}} {
		m := id(ids...)
		if prev, dup := seen[m]; dup {
			t.Fatalf("%v and %s share message id %s", ids, prev, m)
		}
		seen[m] = fmt.Sprint(ids)
	}
}

// A reused writer starts over: nothing of the previous message leaks.
func TestWriterReset(t *testing.T) {
	var w Writer
	w.Reset(nil)
	w.End(append(w.Begin([]byte("a")), "first"...))
	first := w.Msg("s").Header.Get(HeaderMsgID)
	w.Reset(w.Buffer())
	w.End(append(w.Begin([]byte("b")), "second"...))
	m := w.Msg("s")
	docs, err := Append(nil, m.Header, m.Data)
	if err != nil || len(docs) != 1 || string(docs[0].ID) != "b" || string(docs[0].Data) != "second" {
		t.Fatalf("after Reset: %q, %v", docs, err)
	}
	if m.Header.Get(HeaderMsgID) == first || w.Docs() != 1 {
		t.Fatalf("after Reset: message id %s (first %s), %d docs", m.Header.Get(HeaderMsgID), first, w.Docs())
	}
}

// An entry cut from one message and added to another leaves both as if
// they had been written that way, ids and message ids included.
func TestCutLastAddEntry(t *testing.T) {
	a, b, c := Doc{ID: []byte("a"), Data: []byte("one")}, Doc{ID: []byte("bb"), Data: []byte("two")}, Doc{ID: []byte("c"), Data: []byte("three")}
	var w Writer
	w.Reset(nil)
	for _, d := range []Doc{a, b, c} {
		w.End(append(w.Begin(d.ID), d.Data...))
	}
	entry := w.CutLast()
	first := w.Msg("s")
	if want := build(a, b); !bytes.Equal(first.Data, want.Data) || first.Header.Get(HeaderMsgID) != want.Header.Get(HeaderMsgID) || Count(first.Header) != 2 {
		t.Fatalf("after CutLast: %q %v, want %q %v", first.Data, first.Header, want.Data, want.Header)
	}
	var w2 Writer
	w2.Reset(nil)
	w2.AddEntry(entry)
	second := w2.Msg("s")
	if want := build(c); !bytes.Equal(second.Data, want.Data) || second.Header.Get(HeaderMsgID) != want.Header.Get(HeaderMsgID) || Count(second.Header) != 1 {
		t.Fatalf("after AddEntry: %q %v, want %q %v", second.Data, second.Header, want.Data, want.Header)
	}
}

// A dead-letter message keeps every id and the first bytes of each
// document, says why, and never shares the refused message's id.
func TestDeadLetter(t *testing.T) {
	refused := build(Doc{ID: []byte("a"), Data: bytes.Repeat([]byte("x"), 100)}, Doc{ID: []byte("b"), Data: []byte("short")})
	m, err := DeadLetter(refused, "payload too large:\r\nmaximum", 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(HeaderDeadLetter); got != "payload too large:  maximum" {
		t.Fatalf("reason %q", got)
	}
	if m.Header.Get(HeaderMsgID) == refused.Header.Get(HeaderMsgID) || m.Subject != refused.Subject {
		t.Fatalf("dead letter %v on %s, refused %v", m.Header, m.Subject, refused.Header)
	}
	docs, err := Append(nil, m.Header, m.Data)
	if err != nil || len(docs) != 2 || string(docs[0].ID) != "a" || string(docs[0].Data) != "xxxxxxxxxx" || string(docs[1].Data) != "short" {
		t.Fatalf("got %q, %v", docs, err)
	}
	if size := len(m.Data); size > len(refused.Data) {
		t.Fatalf("dead letter of %d bytes, refused message %d", size, len(refused.Data))
	}
	for k, v := range m.Header {
		if n := len(k) + len(v[0]) + 4; n > HeaderBytes/3 {
			t.Fatalf("header %s takes %d bytes", k, n)
		}
	}
}

func TestAppendRejectsMalformed(t *testing.T) {
	good := build(Doc{ID: []byte("a"), Data: []byte("{}")}, Doc{ID: []byte("b"), Data: []byte("[]")})
	f := func(name, count string, data []byte) {
		t.Helper()
		hdr := nats.Header{HeaderDocs: []string{count}}
		docs, err := Append([]Doc{{}}, hdr, data)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: err %v, want ErrMalformed", name, err)
		}
		if len(docs) != 1 {
			t.Fatalf("%s: %d documents returned, want the one passed in", name, len(docs))
		}
	}
	f("no count", "", good.Data)
	f("count too high", "3", good.Data)
	f("count too low", "1", good.Data)
	f("count not a number", "two", good.Data)
	f("negative count", "-1", good.Data)
	f("cut in a length", "2", good.Data[:len(good.Data)-5])
	f("cut in a document", "2", good.Data[:len(good.Data)-1])
	f("length past the end", "1", []byte{0, 0, 0, 1, 'a', 0xff, 0, 0, 0})
}

// Documents decoded from a message cannot be appended into the next one.
func TestFieldsAreCapped(t *testing.T) {
	m := build(Doc{ID: []byte("a"), Data: []byte("one")}, Doc{ID: []byte("b"), Data: []byte("two")})
	docs, _ := Append(nil, m.Header, m.Data)
	_ = append(docs[0].Data, "XXXXXXXX"...)
	if again, _ := Append(nil, m.Header, m.Data); string(again[1].ID) != "b" {
		t.Fatalf("an append to a document wrote over the next entry: %q", again[1].ID)
	}
}

func FuzzAppend(f *testing.F) {
	f.Add(build(Doc{ID: []byte("Yp3kZ0cQeXh0aW5nLWlkMA"), Data: []byte(`{"log":"x"}`)}).Data, 1)
	f.Add(build(Doc{ID: []byte("a"), Data: nil}, Doc{ID: []byte("b"), Data: []byte("{}")}).Data, 2)
	f.Add([]byte{0, 0, 0, 9}, 1)
	f.Fuzz(func(t *testing.T, data []byte, count int) {
		hdr := nats.Header{HeaderDocs: []string{fmt.Sprint(count)}}
		docs, err := Append(nil, hdr, data)
		if err != nil {
			return
		}
		// What reads cleanly is what a writer writes back, byte for byte.
		var w Writer
		w.Reset(nil)
		for _, d := range docs {
			w.End(append(w.Begin(d.ID), d.Data...))
		}
		if !bytes.Equal(w.Buffer(), data) || w.Docs() != count {
			t.Fatalf("read %d documents that write back as %q, not %q", len(docs), w.Buffer(), data)
		}
	})
}

// BenchmarkWriter: building a message allocates nothing per document.
func BenchmarkWriter(b *testing.B) {
	id := []byte("Yp3kZ0cQeXh0aW5nLWlkMA")
	doc := bytes.Repeat([]byte("d"), 700)
	var w Writer
	w.Reset(make([]byte, 0, 400*EntrySize(len(id), len(doc))))
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%400 == 0 {
			w.Reset(w.Buffer())
		}
		w.End(append(w.Begin(id), doc...))
	}
}
