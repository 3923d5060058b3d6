package ws

import (
	"errors"
	"github.com/coder/websocket"
	"sync/atomic"

	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
)

// subscribeSince subscribes with a resume cursor and returns the reply.
func (c *client) subscribeSince(since string, channels ...string) msg {
	c.t.Helper()
	id := c.request("subscribe", map[string]any{"channels": channels, "since": since})
	m := c.expect("subscribed")
	if m["id"] != id {
		c.t.Fatalf("subscribed id %v, want %v", m["id"], id)
	}
	return m
}

// eventIDs reads n event frames and returns their ids and channel lists.
func (c *client) events(n int) (ids []string, chans []string) {
	c.t.Helper()
	for range n {
		m := c.expect("event")
		ids = append(ids, m["event"].(map[string]any)["eventId"].(string))
		chans = append(chans, strings.Join(m.strs("channels"), ","))
	}
	return ids, chans
}

func idsOf(evs []broadcaster.Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].ID.String()
	}
	return out
}

func TestResumeReplaysThenLive(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	before := e.appendEvents(3, "class:1")
	missed := e.appendEvents(5, "class:1")
	c := e.connect("19", "teacher")
	c.subscribeSince(before[2].ID.String(), "class:1")
	got, _ := c.events(5)
	if strings.Join(got, " ") != strings.Join(idsOf(missed), " ") {
		t.Fatalf("replay %v, want %v", got, idsOf(missed))
	}
	live := e.appendEvents(2, "class:1")
	got, _ = c.events(2)
	if strings.Join(got, " ") != strings.Join(idsOf(live), " ") {
		t.Fatalf("live %v, want %v", got, idsOf(live))
	}
	if extra := c.ping(); len(extra) != 0 {
		t.Fatalf("unexpected frames: %v", extra)
	}
	if st := e.srv.Stats(); st.Resumes != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestResumeWhileEventsArrive resumes a long replay (far more than the
// queue holds) while a writer keeps appending: every event exactly once, in
// order.
func TestResumeWhileEventsArrive(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.SendQueue = 16 })
	e.acc.grant("19", "class:1")
	start := e.appendEvents(1, "class:1")
	var (
		mu   sync.Mutex
		want = idsOf(e.appendEvents(2000, "class:1"))
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			evs := e.makeEvents(10, "", "class:1", "other")
			mu.Lock()
			e.appendBatch(evs)
			want = append(want, idsOf(evs)...)
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	c := e.connect("19", "teacher")
	c.subscribeSince(start[0].ID.String(), "class:1")
	<-done
	mu.Lock()
	n := len(want)
	mu.Unlock()
	got, _ := c.events(n)
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("event %d is %s, want %s", i, got[i], want[i])
		}
	}
	if extra := c.ping(); len(extra) != 0 {
		t.Fatalf("%d frames after the last event, first %v", len(extra), extra[0])
	}
}

func TestResumeExpiredCursorGetsReset(t *testing.T) {
	small := eventlog.NewMemory(eventlog.Options{MaxEvents: 5})
	e2 := newEnv(t, func(o *Options) { o.Log = small })
	e2.log = small
	e2.acc.grant("19", "class:1")
	old := e2.appendEvents(10, "class:1")
	// The hub must have passed the old events first: a subscription made
	// before it reaches them is rightly served the retained ones.
	waitFor(t, "the hub at the head", func() bool { return !e2.srv.hub.position().Before(old[9].ID) })
	c := e2.connect("19", "teacher")
	c.request("subscribe", map[string]any{"channels": []string{"class:1"}, "since": old[0].ID.String()})
	c.expect("subscribed")
	r := c.expect("reset")
	if strings.Join(r.strs("channels"), ",") != "class:1" || r.str("reason") != "cursor_expired" {
		t.Fatalf("reset %v", r)
	}
	live := e2.appendEvents(1, "class:1")
	if got, _ := c.events(1); got[0] != live[0].ID.String() {
		t.Fatalf("after reset got %v, want the live %s", got, live[0].ID)
	}
	if st := e2.srv.Stats(); st.Resets != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestResumeOverlappingChannel: resuming a second channel must not send
// again the events the first one already delivered, and must send each
// event once, listing the channels it is due on.
func TestResumeOverlappingChannel(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1", "exam:7")
	start := e.appendEvents(1, "class:1")
	c := e.connect("19", "teacher")
	c.subscribe("class:1")
	both := e.appendEvents(2, "class:1", "exam:7")
	examOnly := e.appendEvents(2, "exam:7")
	got, _ := c.events(2)
	if strings.Join(got, " ") != strings.Join(idsOf(both), " ") {
		t.Fatalf("live %v", got)
	}
	c.subscribeSince(start[0].ID.String(), "exam:7")
	got, chans := c.events(2)
	if strings.Join(got, " ") != strings.Join(idsOf(examOnly), " ") || chans[0] != "exam:7" {
		t.Fatalf("replay %v on %v, want only the exam-only events %v", got, chans, idsOf(examOnly))
	}
	after := e.appendEvents(1, "class:1", "exam:7")
	got, chans = c.events(1)
	if got[0] != after[0].ID.String() || chans[0] != "class:1,exam:7" {
		t.Fatalf("live after resume: %v on %v", got, chans)
	}
	if extra := c.ping(); len(extra) != 0 {
		t.Fatalf("duplicates: %v", extra)
	}
}

// TestResumeAheadOfTheLog: a client whose cursor is ahead of the log (the
// broadcaster restarted and is still rebuilding) gets nothing twice.
func TestResumeAheadOfTheLog(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	first := e.makeEvents(4, "", "class:1")
	e.appendBatch(first[:2])
	c := e.connect("19", "teacher")
	c.subscribeSince(first[2].ID.String(), "class:1")
	e.appendBatch(first[2:])
	got, _ := c.events(1)
	if got[0] != first[3].ID.String() {
		t.Fatalf("got %v, want only %s", got, first[3].ID)
	}
	if extra := c.ping(); len(extra) != 0 {
		t.Fatalf("extra: %v", extra)
	}
}

// TestResumeFarAheadOfTheLog: a cursor past anything the log has or is
// rebuilding (another database's, or made up) does not mute the channel:
// the client is told to reset, and gets the live events.
func TestResumeFarAheadOfTheLog(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	e.appendEvents(1, "class:1")
	c := e.connect("19", "teacher")
	ahead := broadcaster.Cursor{LSN: envHorizon + 1, Pos: 1}.String()
	c.request("subscribe", map[string]any{"channels": []string{"class:1"}, "since": ahead})
	c.expect("subscribed")
	if m := c.expect("reset"); m.str("reason") != "cursor_expired" || strings.Join(m.strs("channels"), ",") != "class:1" {
		t.Fatalf("got %v, want reset of class:1", m)
	}
	live := e.appendEvents(1, "class:1")
	if got, _ := c.events(1); got[0] != live[0].ID.String() {
		t.Fatalf("got %v, want the live event %s", got, live[0].ID)
	}
	req, _ := http.NewRequest("GET", e.hs.URL+"/api/realtime/sync?channels=class:1&since="+ahead, nil)
	req.Header.Set("Authorization", "Bearer "+e.token("19", "teacher"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("/sync since a cursor ahead: %d, want 410", resp.StatusCode)
	}
}

func TestResumeMalformedCursor(t *testing.T) {
	e := newEnv(t, nil)
	e.acc.grant("19", "class:1")
	c := e.connect("19", "teacher")
	for _, bad := range []string{"1764403200123", "xyz", "0000000016B3748C-0000000G", ""} {
		id := c.request("subscribe", map[string]any{"channels": []string{"class:1"}, "since": bad})
		m := c.expect("error")
		if m.str("code") != "bad_request" || m["id"] != id {
			t.Fatalf("since %q: %v", bad, m)
		}
	}
	c.subscribe("class:1")
}

// TestBurstLargerThanRetention: one batch of more events than the log
// retains (a rebuild after a restart, a million-row transaction) reaches a
// subscribed client whole: the hub pins the log, so the burst waits for the
// fan-out instead of evicting events the hub has not sent (which told every
// client to reset).
func TestBurstLargerThanRetention(t *testing.T) {
	small := eventlog.NewMemory(eventlog.Options{MaxEvents: 5})
	e2 := newEnv(t, func(o *Options) { o.Log = small })
	e2.log = small
	e2.acc.grant("19", "class:1")
	c := e2.connect("19", "teacher")
	c.subscribe("class:1")
	burst := e2.appendEvents(50, "class:1")
	got, _ := c.events(len(burst))
	for i := range got {
		if got[i] != burst[i].ID.String() {
			t.Fatalf("event %d is %s, want %s", i, got[i], burst[i].ID)
		}
	}
	if st := e2.srv.Stats(); st.Resets != 0 {
		t.Fatalf("%d resets: the hub fell behind the burst", st.Resets)
	}
}

// TestBurstPastQueueAndRetention: a burst far larger than both the send
// queue and the retention, appended as one batch, reaches a client that
// reads promptly whole and in order, and a client that subscribes while it
// is being fanned out gets everything after its subscribed cursor: the log
// keeps what a catching-up connection still needs (its hold) past the
// retention. The held events go once the clients have read them.
func TestBurstPastQueueAndRetention(t *testing.T) {
	small := eventlog.NewMemory(eventlog.Options{MaxEvents: 300})
	e := newEnv(t, func(o *Options) {
		o.Log = small
		o.Limits.SendQueue = 64
	})
	e.log = small
	e.acc.grant("19", "class:1")
	e.acc.grant("20", "class:1")
	c := e.connect("19", "teacher")
	c.subscribe("class:1")
	late := e.connect("20", "teacher")

	// The burst goes in as two batches, the second only once the late
	// client subscribed: it subscribes while the first is fanned out (or
	// just after, on a busy machine), never after the whole burst.
	burst := e.makeEvents(20000, "", "class:1")
	appended := make(chan struct{})
	subscribed := make(chan struct{})
	go func() {
		defer close(appended)
		e.appendBatch(burst[:10000])
		<-subscribed
		e.appendBatch(burst[10000:])
	}()
	// The late client subscribes in the middle of the fan-out.
	waitFor(t, "the fan-out under way", func() bool { return e.srv.Stats().EventsDelivered > 2000 })
	lateAt, err := broadcaster.ParseCursor(late.subscribe("class:1").str("cursor"))
	close(subscribed)
	if err != nil {
		t.Fatal(err)
	}

	got, _ := c.events(len(burst))
	for i := range got {
		if got[i] != burst[i].ID.String() {
			t.Fatalf("event %d is %s, want %s", i, got[i], burst[i].ID)
		}
	}
	<-appended
	var want []string
	for i := range burst {
		if lateAt.Before(burst[i].ID) {
			want = append(want, burst[i].ID.String())
		}
	}
	if len(want) == 0 || len(want) == len(burst) {
		t.Fatalf("the late client subscribed at %v, not during the burst", lateAt)
	}
	lateGot, _ := late.events(len(want))
	if strings.Join(lateGot, " ") != strings.Join(want, " ") {
		t.Fatalf("the late client got %d events, not the %d after its cursor in order", len(lateGot), len(want))
	}
	for _, cl := range []*client{c, late} {
		if extra := cl.ping(); len(extra) != 0 {
			t.Fatalf("extra frames: %v", extra)
		}
	}
	if st := e.srv.Stats(); st.Overflows != 0 || st.Resets != 0 || st.CatchUps == 0 {
		t.Fatalf("stats %+v: want catch-ups, no 4009 and no reset", st)
	}
	waitFor(t, "the held events released", func() bool { st := small.Stats(); return st.Held == 0 && st.Holds == 0 && st.Events == 300 })
}

// TestHeldBudgetClosesTheSlowest: a connection that falls behind a burst
// by more than the log's budget for held events (MaxHeldBytes) is closed
// 4009 (it can resume), not one that keeps up; the budget's memory is
// given back.
func TestHeldBudgetClosesTheSlowest(t *testing.T) {
	// Events of 4 KiB, more of them than the sockets' buffers take, so the
	// lagging reader's catch-up falls behind in the log. The stall timeout
	// is out of the way: the budget closes it.
	pad := strings.Repeat("x", 4096)
	evs := (&env{lsn: 0x1000}).makeEvents(1, pad)
	size := eventlog.EventSize(&evs[0])
	small := eventlog.NewMemory(eventlog.Options{MaxEvents: 50, MaxHeldBytes: 2000 * size})
	e := newEnv(t, func(o *Options) {
		o.Log = small
		o.Limits.SendQueue = 8
		o.StallTimeout = time.Minute
	})
	e.log = small
	e.acc.grant("19", "class:1")
	e.acc.grant("20", "class:1")
	lagging := e.connect("19", "teacher")
	lagging.subscribe("class:1")
	prompt := e.connect("20", "teacher")
	prompt.subscribe("class:1")

	// 48 MiB: more than the budget (8 MiB) and the sockets' buffers take.
	burst := e.makeEvents(12000, pad, "class:1") // a multiple of 50
	promptDone := make(chan []string, 1)
	var promptRead atomic.Int64
	go func() {
		var got []string
		for range burst {
			m, err := prompt.tryRead(10 * time.Second)
			if err != nil {
				break
			}
			if m.str("type") == "event" {
				got = append(got, m["event"].(map[string]any)["eventId"].(string))
				promptRead.Add(1)
			}
		}
		promptDone <- got
	}()
	// Up to 2,500 events a second, but never more than 1,000 (half the
	// budget) ahead of the prompt reader: however busy the machine, the
	// prompt reader stays within the budget and the lagging one, at 200
	// frames a second, does not.
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := 0; i < len(burst); i += 50 {
			for deadline := time.Now().Add(10 * time.Second); promptRead.Load() < int64(i-1000) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			e.appendBatch(burst[i : i+50])
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// The lagging reader reads, but 200 frames a second until the budget
	// is spent: its writes never stay blocked (that would be a stall), its
	// catch-up falls behind.
	read, code := 0, websocket.StatusCode(-1)
	for {
		m, err := lagging.tryRead(10 * time.Second)
		if err != nil {
			code = websocket.CloseStatus(err)
			break
		}
		if m.str("type") == "event" {
			read++
		}
		if small.Stats().OverBudget == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	<-appended
	// The close frame waits behind the data the reader had not read: it
	// sees 4009, or the connection dropped.
	if (code != statusSlowConsumer && code != -1) || read >= len(burst) {
		t.Fatalf("lagging reader: close %d after %d of %d events, want 4009 before the end", code, read, len(burst))
	}
	waitFor(t, "the slow-consumer close counted", func() bool { return e.srv.Stats().Overflows == 1 })
	if got := <-promptDone; len(got) != len(burst) || got[len(got)-1] != burst[len(burst)-1].ID.String() {
		t.Fatalf("the prompt reader got %d of %d events", len(got), len(burst))
	}
	if st := small.Stats(); st.OverBudget == 0 {
		t.Fatalf("log stats %+v: nothing was dropped over the budget", st)
	}
	waitFor(t, "the held events given back", func() bool { st := small.Stats(); return st.Held == 0 && st.Holds == 0 })
}

// failingLog fails Since while failing is set, as a log on a stream does
// while NATS is away.
type failingLog struct {
	*eventlog.Memory
	failing atomic.Bool
	calls   atomic.Int64
}

func (l *failingLog) Since(c broadcaster.Cursor, limit int) ([]broadcaster.Event, bool, error) {
	if l.failing.Load() {
		l.calls.Add(1)
		return nil, false, errors.New("nats: no responders available for request")
	}
	return l.Memory.Since(c, limit)
}

// TestHubOutlastsLogErrors: a log that fails to read for a while does not
// end the gateway; the hub tries again and delivers everything once the log
// answers, in order.
func TestHubOutlastsLogErrors(t *testing.T) {
	mem := eventlog.NewMemory(eventlog.Options{Horizon: envHorizon})
	fl := &failingLog{Memory: mem}
	e := newEnv(t, func(o *Options) { o.Log = fl })
	e.log = mem
	e.acc.grant("19", "class:1")
	c := e.connect("19", "teacher")
	c.subscribe("class:1")
	fl.failing.Store(true)
	evs := e.makeEvents(3, "", "class:1")
	e.appendBatch(evs)
	waitFor(t, "the hub to try again", func() bool { return fl.calls.Load() >= 3 })
	select {
	case err := <-e.runErr:
		t.Fatalf("the hub ended on a log error: %v", err)
	default:
	}
	fl.failing.Store(false)
	got, _ := c.events(3)
	for i := range got {
		if got[i] != evs[i].ID.String() {
			t.Fatalf("event %d is %s, want %s", i, got[i], evs[i].ID)
		}
	}
	if !strings.Contains(e.logs.String(), "cannot read the log; trying again") {
		t.Errorf("no warning logged:\n%s", e.logs.String())
	}
}
