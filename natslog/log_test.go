package natslog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// testTx returns transaction i: n events at commit LSN i*0x100, committed
// at base + i seconds.
func testTx(i, n int, base time.Time) broadcaster.Batch {
	lsn := broadcaster.LSN(i * 0x100)
	b := broadcaster.Batch{TxEnd: lsn + 0x30}
	for p := 1; p <= n; p++ {
		b.Events = append(b.Events, broadcaster.Event{
			ID: broadcaster.Cursor{LSN: lsn, Pos: uint32(p)}, Type: "exam.updated", Table: "exams", Op: broadcaster.OpUpdate,
			Data:      broadcaster.Row{{Name: "id", Value: int64(i*100 + p)}},
			Timestamp: base.Add(time.Duration(i) * time.Second), TxID: uint32(i), Channels: []string{"class:1"},
		})
	}
	return b
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ids(evs []broadcaster.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].ID.String()
	}
	return out
}

// TestWriterFollower: the writer publishes transactions in order and lets
// the source confirm each once the stream has it whole; a second writer
// goes on after the stream's last event (replays skipped); a follower
// with a small cache has the newest events in memory and serves older
// cursors, and times, from the stream.
func TestWriterFollower(t *testing.T) {
	srv := startServer(t)
	js, st, o := srv.open(t, "T1")
	ctx := context.Background()
	w, err := NewWriter(ctx, js, st, o)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 11, 29, 8, 0, 0, 0, time.UTC)
	var all []broadcaster.Event
	for i := 1; i <= 30; i++ {
		b := testTx(i, 1+i%3, base)
		if i == 7 {
			b.Events = nil // a transaction with no event
		}
		all = append(all, b.Events...)
		if err := w.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "every transaction acknowledged", func() bool { return w.Confirmable() == broadcaster.MaxLSN })
	if w.Head() != all[len(all)-1].ID {
		t.Fatalf("head %v, want %v", w.Head(), all[len(all)-1].ID)
	}
	w.Close()
	info, _ := st.Info(ctx)
	if info.State.Msgs != uint64(len(all)) {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, len(all))
	}

	// A new writer (a restart) skips what the stream has.
	w2, err := NewWriter(ctx, js, st, o)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := w2.Append(ctx, testTx(30, 1+30%3, base)); err != nil {
		t.Fatal(err)
	}
	next := testTx(31, 2, base)
	all = append(all, next.Events...)
	if err := w2.Append(ctx, next); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the next transaction acknowledged", func() bool { return w2.Confirmable() == broadcaster.MaxLSN })
	if info, _ := st.Info(ctx); info.State.Msgs != uint64(len(all)) {
		t.Fatalf("after a replay: %d messages, want %d", info.State.Msgs, len(all))
	}

	f := NewFollower(st, 10, o)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, "the follower at the end", func() bool { return f.Head() == all[len(all)-1].ID })
	if f.Len() != 10 {
		t.Fatalf("cache of %d events, want 10", f.Len())
	}
	for _, from := range []int{0, 5, len(all) - 12, len(all) - 10, len(all) - 3} {
		got, _, err := f.Since(all[from].ID, 0)
		if err != nil {
			t.Fatalf("since event %d: %v", from, err)
		}
		if fmt.Sprint(ids(got)) != fmt.Sprint(ids(all[from+1:])) {
			t.Fatalf("since event %d: %v, want %v", from, ids(got), ids(all[from+1:]))
		}
	}
	page, more, err := f.Since(all[0].ID, 5)
	if err != nil || len(page) != 5 || !more || page[0].ID != all[1].ID {
		t.Fatalf("a page from the stream: %v more %v err %v", ids(page), more, err)
	}
	if _, _, err := f.Since(broadcaster.Cursor{LSN: 1}, 0); !errors.Is(err, broadcaster.ErrCursorExpired) {
		t.Fatalf("a cursor before the stream: %v, want expired", err)
	}
	c, err := f.SinceTime(base.Add(3 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, _, _ := f.Since(c, 1)
	if len(got) != 1 || got[0].TxID != 3 {
		t.Fatalf("since 8:00:03: %v, want the events of transaction 3", ids(got))
	}
	if string(mustJSON(t, got[0])) != string(mustJSON(t, all[findID(all, got[0].ID)])) {
		t.Fatalf("an event read from the stream differs from the one written")
	}
	// Live: a new event reaches the cache.
	live := testTx(32, 1, base)
	if err := w2.Append(ctx, live); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the live event in the cache", func() bool { return f.Head() == live.Events[0].ID })
}

// TestWriterFenced: once another writer began its term, no publish the
// first one may still have in flight can land, whatever sequence it
// expects, and the first one's next append reports ErrFenced.
func TestWriterFenced(t *testing.T) {
	srv := startServer(t)
	js, st, o := srv.open(t, "T2")
	ctx := context.Background()
	base := time.Now()
	begin := func() *Writer { return beginWriter(t, js, st, o) }
	a := begin()
	var all []broadcaster.Event
	for i := 1; i <= 2; i++ {
		b := testTx(i, 1, base)
		all = append(all, b.Events...)
		if err := a.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a's events", func() bool { return a.Confirmable() == broadcaster.MaxLSN })
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aSeq := info.State.LastSeq
	b := begin()
	// a's publishes in flight when b took over expect at most maxInFlight
	// sequences past the end a knew: not one lands.
	for k := range uint64(maxInFlight + 1) {
		ev := testTx(3, 1, base).Events[0]
		msg, err := Encode(o.withDefaults().SubjectPrefix, &ev)
		if err != nil {
			t.Fatal(err)
		}
		msg.Header.Set(HeaderWriter, a.epoch)
		msg.Header.Del(nats.MsgIdHdr)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.PublishMsg(pctx, msg, jetstream.WithExpectLastSequence(aSeq+k))
		cancel()
		if err == nil {
			t.Fatalf("a publish of the deposed writer expecting sequence %d (its end was %d) landed", aSeq+k, aSeq)
		}
		if !strings.Contains(err.Error(), "wrong last sequence") {
			t.Fatalf("a publish of the deposed writer expecting sequence %d: %v, want a wrong last sequence", aSeq+k, err)
		}
	}
	if err := a.Append(ctx, testTx(3, 1, base)); err != nil && !errors.Is(err, broadcaster.ErrFenced) {
		t.Fatal(err)
	}
	waitUntil(t, "a fenced", func() bool {
		return errors.Is(a.Append(ctx, testTx(4, 1, base)), broadcaster.ErrFenced)
	})
	b3 := testTx(3, 1, base)
	all = append(all, b3.Events...)
	if err := b.Append(ctx, b3); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "b's event", func() bool { return b.Confirmable() == broadcaster.MaxLSN })
	expectStream(t, st, o, all)
}

// TestWriterSurvivesServerRestart: publishes that fail while the server is
// down are made again once it is back, nothing twice and nothing lost, and
// nothing is confirmed before the stream has it.
func TestWriterSurvivesServerRestart(t *testing.T) {
	srv := startServer(t)
	js, st, o := srv.open(t, "T3")
	ctx := context.Background()
	base := time.Now()
	w, err := NewWriter(ctx, js, st, o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var all []broadcaster.Event
	for i := 1; i <= 20; i++ {
		all = append(all, testTx(i, 2, base).Events...)
	}
	appendTx := func(i int) error {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return w.Append(actx, testTx(i, 2, base))
	}
	for i := 1; i <= 10; i++ {
		if err := appendTx(i); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the first ten", func() bool { return w.Confirmable() == broadcaster.MaxLSN })
	srv.kill()
	// Append may wait while the server is down (once the writer noticed
	// the failure it publishes nothing new before the stream is read
	// again): the next five go in from the side.
	appended := make(chan error, 1)
	go func() {
		for i := 11; i <= 15; i++ {
			if err := appendTx(i); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	waitUntil(t, "the failure noticed", func() bool { return w.Stats().Failures > 0 })
	if got := w.Confirmable(); got == broadcaster.MaxLSN || got > broadcaster.LSN(10*0x100+0x30) {
		t.Fatalf("confirmable %v with the server down, want at most the end of transaction 10", got)
	}
	srv.start()
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	for i := 16; i <= 20; i++ {
		if err := appendTx(i); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "everything acknowledged", func() bool { return w.Confirmable() == broadcaster.MaxLSN })
	expectStream(t, st, o, all)
}

func mustJSON(t *testing.T, ev broadcaster.Event) []byte {
	t.Helper()
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func findID(evs []broadcaster.Event, id broadcaster.Cursor) int {
	for i := range evs {
		if evs[i].ID == id {
			return i
		}
	}
	return -1
}

// TestWriterTerms: a writer that begins a term fences the one before it,
// whether that one publishes (its publish is refused) or idles (it finds
// the other's marker); the stream holds each event once, in order, and a
// follower sees events only, not the markers.
func TestWriterTerms(t *testing.T) {
	srv := startServer(t)
	js, st, o := srv.open(t, "T4")
	ctx := context.Background()
	base := time.Now()
	newTermWriter := func(name string) *Writer {
		o := o
		o.Name = name
		return beginWriter(t, js, st, o)
	}
	var all []broadcaster.Event
	appendTx := func(w *Writer, i int) error {
		b := testTx(i, 2, base)
		err := w.Append(ctx, b)
		if err == nil {
			all = append(all, b.Events...)
		}
		return err
	}
	a := newTermWriter("a")
	for i := 1; i <= 3; i++ {
		if err := appendTx(a, i); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a's events acknowledged", func() bool { return a.Confirmable() == broadcaster.MaxLSN })

	// b takes over while a is idle: a finds out by itself.
	b := newTermWriter("b")
	if b.Head() != all[len(all)-1].ID {
		t.Fatalf("b begins after %v, want a's last event %v", b.Head(), all[len(all)-1].ID)
	}
	select {
	case <-a.Deposed():
	case <-time.After(10 * time.Second):
		t.Fatal("a, idle, was not deposed after b began")
	}
	if err := a.Append(ctx, testTx(4, 1, base)); !errors.Is(err, broadcaster.ErrFenced) {
		t.Fatalf("a's append after b began: %v, want ErrFenced", err)
	}
	// b replays what it is given again (as a new leader does from the
	// slot): what the stream has is skipped.
	if err := b.Append(ctx, testTx(3, 2, base)); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 5; i++ {
		if err := appendTx(b, i); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "b's events acknowledged", func() bool { return b.Confirmable() == broadcaster.MaxLSN })

	// a begins a new term while b publishes: b's publishes are refused.
	if err := a.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	_ = b.Append(ctx, testTx(6, 2, base))
	waitUntil(t, "b fenced", func() bool {
		select {
		case <-b.Deposed():
			return true
		default:
			return false
		}
	})
	for i := 6; i <= 7; i++ {
		if err := appendTx(a, i); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "a's new events acknowledged", func() bool { return a.Confirmable() == broadcaster.MaxLSN })
	a.End()
	if err := a.Append(ctx, testTx(8, 1, base)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("append after End: %v, want ErrNotLeader", err)
	}

	expectStream(t, st, o, all)
	// From the stream too (older than a small cache).
	small := NewFollower(st, 2, o)
	if err := small.Prime(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, err := small.streamSince(ctx, all[0].ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint(ids(all[1:])) {
		t.Fatalf("read from the stream: %v, want %v", ids(got), ids(all[1:]))
	}
}

// TestPrimeStartsAtTheCache: a follower primed on a long stream starts a
// cache-full before its end, so that a gateway made then does not read the
// whole stream first.
func TestPrimeStartsAtTheCache(t *testing.T) {
	srv := startServer(t)
	js, st, o := srv.open(t, "T5")
	ctx := context.Background()
	w, err := NewWriter(ctx, js, st, o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var all []broadcaster.Event
	base := time.Now()
	for i := 1; i <= 25; i++ {
		b := testTx(i, 2, base)
		all = append(all, b.Events...)
		if err := w.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "acknowledged", func() bool { return w.Confirmable() == broadcaster.MaxLSN })
	f := NewFollower(st, 10, o)
	if err := f.Prime(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Head(), all[len(all)-11].ID; got != want {
		t.Fatalf("primed at %v, want %v (the event before the last 10)", got, want)
	}
	// What is before the cache is read from the stream.
	got, _, err := f.Since(all[len(all)-13].ID, 0)
	if err != nil || len(got) < 2 || got[0].ID != all[len(all)-12].ID {
		t.Fatalf("since before the cache: %v %v", ids(got), err)
	}
}

// expectStream follows the stream with a new Follower and checks that it
// holds exactly the events all, in order (markers and fences skipped).
func expectStream(t *testing.T, st jetstream.Stream, o Options, all []broadcaster.Event) {
	t.Helper()
	f := NewFollower(st, 1000, o)
	fctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, "the follower at the end", func() bool { return f.Head() == all[len(all)-1].ID })
	got, _, err := f.Since(broadcaster.Cursor{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint(ids(all)) {
		t.Fatalf("the stream holds %v, want %v", ids(got), ids(all))
	}
}

// beginWriter returns a Writer on st that has begun a term.
func beginWriter(t *testing.T, js jetstream.JetStream, st jetstream.Stream, o Options) *Writer {
	t.Helper()
	w, err := NewWriter(context.Background(), js, st, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if err := w.Begin(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w
}
