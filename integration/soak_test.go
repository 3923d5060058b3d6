package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The soak (issue 7): `serve` under a steady stream of single-row commits
// while many clients churn (connect, resume with their cursor, read for a
// while, disconnect cleanly or abruptly, come back). At the end every
// client has every committed row of its channel once and in commit order,
// and serve's goroutines, connections and heap are back where they were.
//
// The full run is
//
//	CDC_SOAK=30m CDC_SOAK_RATE=500 CDC_SOAK_CLIENTS=1000 CDC_SOAK_REPORT=soak.md \
//	    go test -count=1 -timeout 45m -run '^TestSoak$' -v ./integration
//
// Without CDC_SOAK a 20 s version (100 rows/s, 100 clients) runs in the
// normal suite. Nothing is asserted about timing: a slow machine makes a
// shorter or later run, never a failing one.
//
// The rows are notifications (config.example.yaml: notification.created on
// `user:{user_id}` only). The test makes soakChannels users; channel k is
// `user:<id of user k>`. Half of the clients are that user itself (the
// `self` rule), half admins (any `user:` channel). Each channel is written
// by one writer goroutine only, one row per transaction, so the channel's
// commit order is the order its writer's inserts returned, and its ids
// (one sequence) rise in that order.

const (
	soakChannels   = 50      // distinct channels (users); rows and clients are spread over them
	soakMaxWriters = 10      // writer goroutines, each with its own connection and channels
	soakUserBase   = 7000000 // ids of the users the test makes (the example data's are small)
	soakAdminBase  = 9000000 // subjects of the admin clients' tokens
	soakEventType  = "notification.created"
	soakInsert     = "INSERT INTO notifications (user_id, title) VALUES ($1, 'soak') RETURNING id"

	soakDialTimeout    = 15 * time.Second
	soakReplyTimeout   = 15 * time.Second
	soakFinalTimeout   = 2 * time.Minute
	soakFinalGrace     = 500 * time.Millisecond // a caught-up final session waits this long for anything more
	soakSettleTimeout  = 15 * time.Second       // for goroutines and connections to go once every client left
	soakGoroutineSlack = 10                     // serve goroutines allowed above the count before any client
	soakTestSlack      = 5                      // same, for this test process
	soakMaxExamples    = 10                     // ids named per kind of anomaly in a failure message
)

// soakParams are one run's settings.
type soakParams struct {
	full        bool          // CDC_SOAK was set
	dur         time.Duration // how long the writer writes and clients churn
	rate        int           // rows per second, all channels together
	clients     int
	channels    int
	writers     int
	stagger     time.Duration // client starts are spread over this
	sessMin     time.Duration // a session reads for a random time in [sessMin, sessMax)
	sessMax     time.Duration
	pauseMax    time.Duration // then the client waits up to this long before it reconnects
	sampleEvery time.Duration
	warm        time.Duration // the first sample at or after this is the memory reference
	retention   int           // retention.max_events
	seed        uint64
}

// soakParamsFromEnv reads CDC_SOAK, CDC_SOAK_RATE, CDC_SOAK_CLIENTS and
// CDC_SOAK_SEED.
func soakParamsFromEnv(t *testing.T) soakParams {
	t.Helper()
	p := soakParams{dur: 20 * time.Second, rate: 100, clients: 100}
	if s := os.Getenv("CDC_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("CDC_SOAK=%q: want a positive Go duration such as 30m", s)
		}
		p.full, p.dur, p.rate, p.clients = true, d, 500, 1000
	}
	positive := func(name string, dst *int) {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				t.Fatalf("%s=%q: want a positive integer", name, s)
			}
			*dst = n
		}
	}
	positive("CDC_SOAK_RATE", &p.rate)
	positive("CDC_SOAK_CLIENTS", &p.clients)
	p.seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("CDC_SOAK_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CDC_SOAK_SEED=%q: want an unsigned integer", s)
		}
		p.seed = n
	}

	p.channels = min(soakChannels, p.clients)
	for p.writers = min(soakMaxWriters, p.channels); p.channels%p.writers != 0; p.writers-- {
	}
	p.stagger = clampDur(p.dur/4, time.Second, 10*time.Second)
	p.sessMin, p.sessMax, p.pauseMax = 2*time.Second, 20*time.Second, time.Second
	if p.dur < time.Minute { // a short run still churns every client a few times
		p.sessMin, p.sessMax = time.Second, 5*time.Second
	}
	p.sampleEvery = 10 * time.Second
	if p.dur >= 10*time.Minute {
		p.sampleEvery = 30 * time.Second
	}
	p.warm = p.stagger + clampDur(p.dur/10, 2*time.Second, 2*time.Minute)
	// A minute of rows: far more than any client misses between two
	// sessions, so no resume is ever expired, and small enough that the
	// log is full early in a long run (the memory reference then holds a
	// full log too).
	p.retention = max(60*p.rate, 10000)
	return p
}

func clampDur(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

// soakChan is one channel and the ids committed on it, in commit order.
type soakChan struct {
	name   string
	userID int64

	mu  sync.RWMutex // guards ids (appended by the channel's one writer)
	ids []int64
}

func (c *soakChan) add(ids ...int64) {
	c.mu.Lock()
	c.ids = append(c.ids, ids...)
	c.mu.Unlock()
}

// committed returns the ids so far. Elements below its length never change,
// so the caller reads them without the lock.
func (c *soakChan) committed() []int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ids[:len(c.ids):len(c.ids)]
}

// soakRun is what the writers, clients and sampler share.
type soakRun struct {
	p      soakParams
	wsURL  string
	dbURL  string
	chans  []*soakChan
	start  string    // a cursor from before the first row: every client's first since
	t0     time.Time // when writing started
	runEnd time.Time // when writing and churning stop

	commits      atomic.Int64
	writeFails   atomic.Int64
	lastWriteErr atomic.Value // string
	maxLate      atomic.Int64 // ns the writers fell behind their schedule, at most
	deliveries   atomic.Int64 // events received by all clients
}

// writer commits rows n ≡ w (mod writers) of the schedule, row n at
// t0 + n/rate on channel n mod channels, until runEnd. Channel k thus has
// one writer. After a failed insert (commit unknown) it reconnects and
// reads back what the channel has, so its record stays exact. ctx only
// cuts the waits short: an insert once started runs to its end, so that
// the record knows whether it committed.
func (r *soakRun) writer(ctx context.Context, w int) error {
	conn, err := r.connectWriter()
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	timer := time.NewTimer(0)
	<-timer.C
	for n := int64(w); ; n += int64(r.p.writers) {
		due := r.t0.Add(time.Duration(n) * time.Second / time.Duration(r.p.rate))
		if !due.Before(r.runEnd) {
			return nil
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
		} else {
			for late := int64(-d); ; {
				if cur := r.maxLate.Load(); late <= cur || r.maxLate.CompareAndSwap(cur, late) {
					break
				}
			}
		}
		ch := r.chans[n%int64(r.p.channels)]
		ictx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var id int64
		err := conn.QueryRow(ictx, soakInsert, ch.userID).Scan(&id)
		cancel()
		if err == nil {
			ch.add(id)
			r.commits.Add(1)
			continue
		}
		r.writeFails.Add(1)
		r.lastWriteErr.Store(err.Error())
		_ = conn.Close(context.Background())
		if conn, err = r.reconnectWriter(); err != nil {
			return err
		}
		if err := r.reconcile(conn, ch); err != nil {
			return err
		}
	}
}

func (r *soakRun) connectWriter() (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, r.dbURL)
	if err != nil {
		return nil, fmt.Errorf("soak writer: connect: %w", err)
	}
	return conn, nil
}

// reconnectWriter tries for a minute.
func (r *soakRun) reconnectWriter() (*pgx.Conn, error) {
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		var conn *pgx.Conn
		if conn, err = r.connectWriter(); err == nil {
			return conn, nil
		}
	}
	return nil, fmt.Errorf("soak writer: reconnect: %w", err)
}

// reconcile appends the rows of ch committed after the last one recorded
// (an insert whose answer was lost may have committed).
func (r *soakRun) reconcile(conn *pgx.Conn, ch *soakChan) error {
	ids := ch.committed()
	after := int64(0)
	if len(ids) > 0 {
		after = ids[len(ids)-1]
	}
	qctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := conn.Query(qctx, "SELECT id FROM notifications WHERE user_id = $1 AND id > $2 ORDER BY id", ch.userID, after)
	if err != nil {
		return fmt.Errorf("soak writer: reconcile %s: %w", ch.name, err)
	}
	more, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("soak writer: reconcile %s: %w", ch.name, err)
	}
	ch.add(more...)
	r.commits.Add(int64(len(more)))
	return nil
}

// soakClose is how a client ends a session.
type soakClose int

const (
	soakClean soakClose = iota // close frame 1000 and the closing handshake
	soakFIN                    // the TCP connection closed without a close frame
	soakRST                    // the TCP connection reset (SO_LINGER 0)
)

// soakFrame is the part of a server message the soak reads.
type soakFrame struct {
	Type     string   `json:"type"`
	ID       int      `json:"id"`
	Channels []string `json:"channels"`
	Cursor   string   `json:"cursor"`
	Event    *struct {
		EventID   string `json:"eventId"`
		Cursor    string `json:"cursor"`
		EventType string `json:"eventType"`
		Data      struct {
			ID     int64 `json:"id"`
			UserID int64 `json:"user_id"`
		} `json:"data"`
	} `json:"event"`
}

// soakClient is one churning client. Its fields are used by one goroutine
// at a time: the client's own, and during a session the reader it starts
// and waits for.
type soakClient struct {
	name  string
	token string
	ch    *soakChan
	rng   *rand.Rand

	last string // cursor of the newest event received: the next since

	// Checking against ch's commit order as events arrive: idx is the
	// position in ch.ids of the next row due; pending are ids received
	// before their writer recorded them.
	idx       int
	pending   []int64
	missing   map[int64]bool // skipped rows, until (if ever) they arrive late
	dups      []int64        // rows received again
	late      []int64        // skipped rows that arrived after later ones
	unknown   []int64        // ids that are no committed row of the channel
	foreign   []string       // events of another channel or type
	backwards int            // events whose cursor was not after the newest before it
	early     int            // events before the subscribed reply

	received                    int
	sessions, resumes           int
	clean, fin, rst             int
	serverCloses                map[int]int // session ended by the server (or the network): by close status, -1 none
	dialErrors, subscribeErrors int
	resets                      int
	problems                    []string // the first few odd things, for the failure message
	finalOK                     bool
}

func (c *soakClient) problem(format string, args ...any) {
	if len(c.problems) < soakMaxExamples {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

func appendCapped(s []int64, id int64) []int64 {
	if len(s) < 1<<16 { // plenty to report; a storm of anomalies must not eat the test's memory
		s = append(s, id)
	}
	return s
}

// onEvent takes one event frame.
func (c *soakClient) onEvent(r *soakRun, f *soakFrame) {
	ev := f.Event
	c.received++
	r.deliveries.Add(1)
	if ev.EventType != soakEventType || ev.Data.UserID != c.ch.userID || !slices.Contains(f.Channels, c.ch.name) {
		if len(c.foreign) < soakMaxExamples {
			c.foreign = append(c.foreign, fmt.Sprintf("%s %s row %d user %d on %v", ev.EventID, ev.EventType, ev.Data.ID, ev.Data.UserID, f.Channels))
		}
		return
	}
	if ev.Cursor <= c.last { // fixed-width hex: text order is cursor order
		c.backwards++
	} else {
		c.last = ev.Cursor
	}
	c.pending = append(c.pending, ev.Data.ID)
	c.match(false)
}

// match walks the pending ids along the channel's commit order. final
// says the writers are done: an id not recorded by now never will be.
func (c *soakClient) match(final bool) {
	ids := c.ch.committed()
	for len(c.pending) > 0 {
		id := c.pending[0]
		if c.idx < len(ids) {
			switch exp := ids[c.idx]; {
			case id == exp:
				c.idx++
				c.pending = c.pending[1:]
			case id > exp: // exp was skipped
				c.missing[exp] = true
				c.idx++
			default:
				c.old(ids, id)
				c.pending = c.pending[1:]
			}
			continue
		}
		if c.idx > 0 && id <= ids[c.idx-1] {
			c.old(ids, id)
			c.pending = c.pending[1:]
			continue
		}
		if !final {
			return // its writer has not recorded it yet
		}
		c.unknown = appendCapped(c.unknown, id)
		c.pending = c.pending[1:]
	}
	if len(c.pending) == 0 {
		c.pending = nil // let the backing array go
	}
}

// old classifies an id below the next one due.
func (c *soakClient) old(ids []int64, id int64) {
	switch _, found := slices.BinarySearch(ids, id); {
	case c.missing[id]:
		delete(c.missing, id)
		c.late = appendCapped(c.late, id)
	case found:
		c.dups = appendCapped(c.dups, id)
	default:
		c.unknown = appendCapped(c.unknown, id)
	}
}

// soakDial opens a WebSocket with the token in the Authorization header,
// returning the TCP connection under it too.
func soakDial(ctx context.Context, wsURL, token string) (*websocket.Conn, *net.TCPConn, error) {
	var tcp atomic.Pointer[net.TCPConn]
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err == nil {
			tcp.Store(nc.(*net.TCPConn))
		}
		return nc, err
	}}
	defer tr.CloseIdleConnections()
	dctx, cancel := context.WithTimeout(ctx, soakDialTimeout)
	defer cancel()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	conn, resp, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr}, HTTPHeader: h, Subprotocols: []string{"cdc.v1"},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w (%s)", err, respStatus(resp))
	}
	conn.SetReadLimit(1 << 20)
	return conn, tcp.Load(), nil
}

// session is one connection: dial, welcome, subscribe with since, read.
// A churn session (target 0) reads for hold, or until ctx ends, then
// closes as mode says. The final session reads until it has row target of
// its channel (or finalCtx ends), then a short grace, and closes cleanly.
func (c *soakClient) session(ctx context.Context, r *soakRun, hold time.Duration, mode soakClose, final bool, target int64) {
	conn, tcp, err := soakDial(ctx, r.wsURL, c.token)
	if err != nil {
		if ctx.Err() == nil { // not the end of the run cutting a dial short
			c.dialErrors++
			c.problem("at %v: %v", time.Since(r.t0).Round(time.Millisecond), err)
		}
		return
	}
	since := c.last
	welcomed, subscribed, reached := make(chan struct{}), make(chan struct{}), make(chan struct{})
	if final {
		c.match(false) // the writers are done: what was pending can be matched now
		if ids := c.ch.committed(); target == 0 || c.idx > 0 && ids[c.idx-1] >= target {
			close(reached) // nothing more due: the grace still catches anything extra
		}
	}
	readerDone := make(chan error, 1)
	go func() { readerDone <- c.read(r, conn, since, welcomed, subscribed, reached, target) }()

	var readerErr error
	ended := false     // the reader ended before we closed
	var notes []string // problems seen here: c.problems is the reader's until it ends
	defer func() {
		for _, n := range notes {
			c.problem("%s", n)
		}
	}()
	wait := func(ch <-chan struct{}, timeout <-chan time.Time, stop <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case readerErr = <-readerDone:
			ended = true
		case <-timeout:
		case <-stop:
		}
		return false
	}
	ok := wait(welcomed, time.After(soakReplyTimeout), ctx.Done())
	if ok {
		b, _ := json.Marshal(map[string]any{"id": 1, "type": "subscribe", "channels": []string{c.ch.name}, "since": since})
		wctx, cancel := context.WithTimeout(ctx, soakReplyTimeout)
		if err := conn.Write(wctx, websocket.MessageText, b); err != nil && ctx.Err() == nil {
			notes = append(notes, fmt.Sprintf("send subscribe: %v", err))
			ok = false
		}
		cancel()
	}
	if ok && wait(subscribed, time.After(soakReplyTimeout), ctx.Done()) {
		c.sessions++
		if since != "" {
			c.resumes++
		}
		if final {
			if wait(reached, nil, ctx.Done()) {
				c.finalOK = true
				wait(nil, time.After(soakFinalGrace), nil)
			}
		} else {
			wait(nil, time.After(hold), ctx.Done())
		}
	} else if !ended && ctx.Err() == nil {
		notes = append(notes, fmt.Sprintf("no welcome or subscribed reply within %v", soakReplyTimeout))
	}

	if ended {
		code := int(websocket.CloseStatus(readerErr))
		if c.serverCloses == nil {
			c.serverCloses = map[int]int{}
		}
		c.serverCloses[code]++
		_ = conn.CloseNow()
		return
	}
	switch {
	case final || mode == soakClean:
		c.clean++
		_ = conn.Close(websocket.StatusNormalClosure, "")
	case mode == soakFIN:
		c.fin++
		_ = conn.CloseNow()
	default:
		c.rst++
		if tcp != nil {
			_ = tcp.SetLinger(0)
		}
		_ = conn.CloseNow()
	}
	<-readerDone
}

// read reads frames until the connection ends and returns why.
func (c *soakClient) read(r *soakRun, conn *websocket.Conn, since string, welcomed, subscribed, reached chan struct{}, target int64) error {
	isClosed := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	for {
		typ, b, err := conn.Read(context.Background())
		if err != nil {
			return err
		}
		var f soakFrame
		if typ != websocket.MessageText {
			c.problem("a %v frame", typ)
			continue
		}
		if err := json.Unmarshal(b, &f); err != nil {
			c.problem("undecodable frame %.200q: %v", b, err)
			continue
		}
		switch {
		case f.Type == "welcome":
			if !isClosed(welcomed) {
				close(welcomed)
			}
		case f.Type == "event" && f.Event != nil:
			if !isClosed(subscribed) {
				c.early++
				c.problem("event before the subscribed reply: %.300s", b)
			}
			c.onEvent(r, &f)
			if f.Event.Data.ID == target && !isClosed(reached) {
				close(reached)
			}
		case f.ID == 1 && f.Type == "subscribed":
			if !slices.Equal(f.Channels, []string{c.ch.name}) {
				c.problem("subscribed to %v, want %s", f.Channels, c.ch.name)
			}
			if f.Cursor < since {
				c.problem("subscribed reply's head %s is before since %s", f.Cursor, since)
			}
			if !isClosed(subscribed) {
				close(subscribed)
			}
		case f.ID == 1 && f.Type == "error":
			c.subscribeErrors++
			c.problem("subscribe refused: %s", b)
		case f.Type == "reset":
			c.resets++
			c.problem("reset: %s", b)
		case f.Type == "pong" || f.Type == "token_expiring":
		default:
			c.problem("unexpected frame: %.300s", b)
		}
	}
}

// churn runs sessions until runEnd: each reads for a random time, then
// closes cleanly (half), by FIN without a close frame or by RST (a
// quarter each), and the client comes back after a random pause.
func (c *soakClient) churn(ctx context.Context, r *soakRun, delay time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	for ctx.Err() == nil {
		hold := r.p.sessMin + time.Duration(c.rng.Int64N(int64(r.p.sessMax-r.p.sessMin)))
		mode := soakClean
		switch c.rng.IntN(4) {
		case 0:
			mode = soakFIN
		case 1:
			mode = soakRST
		}
		c.session(ctx, r, hold, mode, false, 0)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(c.rng.Int64N(int64(r.p.pauseMax)))):
		}
	}
}

// missed ends the check (the writers are done) and returns the committed
// rows never received.
func (c *soakClient) missed() []int64 {
	c.match(true)
	var miss []int64
	for id := range c.missing {
		miss = append(miss, id)
	}
	miss = append(miss, c.ch.committed()[c.idx:]...)
	slices.Sort(miss)
	return miss
}

// verdict checks the client's whole history against its channel's
// commits; "" when all is well.
func (c *soakClient) verdict() string {
	ids := c.ch.committed()
	miss := c.missed()
	var parts []string
	add := func(what string, n int, ids []int64) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s %s", n, what, short(ids)))
		}
	}
	add("missing", len(miss), miss)
	add("duplicated", len(c.dups), c.dups)
	add("out of order (arrived after later rows)", len(c.late), c.late)
	add("unknown", len(c.unknown), c.unknown)
	if len(c.foreign) > 0 {
		parts = append(parts, fmt.Sprintf("%d events not of this channel: %s", len(c.foreign), strings.Join(c.foreign, "; ")))
	}
	if c.early > 0 {
		parts = append(parts, fmt.Sprintf("%d events before a subscribed reply", c.early))
	}
	if c.backwards > 0 {
		parts = append(parts, fmt.Sprintf("%d events with a cursor not after the one before", c.backwards))
	}
	if c.resets > 0 || c.subscribeErrors > 0 {
		parts = append(parts, fmt.Sprintf("%d resets, %d refused subscribes", c.resets, c.subscribeErrors))
	}
	if !c.finalOK {
		parts = append(parts, "the final session did not reach the channel's last row")
	}
	if len(parts) == 0 {
		return ""
	}
	if len(c.problems) > 0 {
		parts = append(parts, "first problems: "+strings.Join(c.problems, " | "))
	}
	return fmt.Sprintf("%s on %s (%d rows committed, %d events received in %d sessions): %s",
		c.name, c.ch.name, len(ids), c.received, c.sessions, strings.Join(parts, "; "))
}

// soakSample is one look at serve and at this process.
type soakSample struct {
	at            time.Duration // since writing started (negative: before)
	goroutines    float64
	rss, heap     float64 // bytes
	heapGoal      float64 // go_memstats_next_gc_bytes
	conns         float64
	logEvents     float64
	delivered     float64 // serve's events_delivered_total
	gcs           uint64
	testGoroutine int
	commits       int64
	received      int64
}

// soakScraper reads serve's /metrics, keeping one connection.
type soakScraper struct {
	addr string
	hc   *http.Client
}

func (s *soakScraper) get() (scrape, error) {
	resp, err := s.hc.Get("http://" + s.addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("get /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get /metrics: HTTP %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return scrape(mfs), nil
}

// sample scrapes and notes this process's side.
func (s *soakScraper) sample(r *soakRun) (soakSample, error) {
	sc, err := s.get()
	if err != nil {
		return soakSample{}, err
	}
	at := time.Duration(0)
	if !r.t0.IsZero() {
		at = time.Since(r.t0)
	}
	return soakSample{
		at: at, goroutines: sc.value("go_goroutines"), rss: sc.value("process_resident_memory_bytes"),
		heap: sc.value("go_memstats_heap_inuse_bytes"), heapGoal: sc.value("go_memstats_next_gc_bytes"),
		conns: sc.value(mActive), logEvents: sc.value(mLogEvents), delivered: sc.value(mDelivered),
		gcs: gcCount(sc), testGoroutine: runtime.NumGoroutine(), commits: r.commits.Load(), received: r.deliveries.Load(),
	}, nil
}

func gcCount(sc scrape) uint64 {
	mf, ok := sc["go_gc_duration_seconds"]
	if !ok || len(mf.GetMetric()) == 0 {
		return 0
	}
	return mf.GetMetric()[0].GetSummary().GetSampleCount()
}

// settle scrapes until ok holds or timeout passes, returning the last sample.
func (s *soakScraper) settle(r *soakRun, timeout time.Duration, ok func(soakSample) bool) (soakSample, bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := s.sample(r)
		if err != nil {
			return m, false, err
		}
		if ok(m) {
			return m, true, nil
		}
		if time.Now().After(deadline) {
			return m, false, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// forceGCs makes serve allocate (by scraping /metrics, which allocates
// on every request) until it has finished n more collections, so that its
// heap goal reflects what is live now. It gives up after timeout.
func (s *soakScraper) forceGCs(r *soakRun, n uint64, timeout time.Duration) (int, bool, error) {
	first, err := s.sample(r)
	if err != nil {
		return 0, false, err
	}
	deadline := time.Now().Add(timeout)
	for scrapes := 1; ; scrapes++ {
		if scrapes%20 == 0 {
			m, err := s.sample(r)
			if err != nil {
				return scrapes, false, err
			}
			if m.gcs >= first.gcs+n {
				return scrapes, true, nil
			}
			if time.Now().After(deadline) {
				return scrapes, false, nil
			}
			continue
		}
		resp, err := s.hc.Get("http://" + s.addr + "/metrics")
		if err != nil {
			return scrapes, false, fmt.Errorf("get /metrics: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// soakAudit sums up serve's audit log.
type soakAudit struct {
	connects, disconnects int
	codes                 map[int]int
	open                  []string // connection ids connected and never disconnected
	messagesSent          int64
}

func readSoakAudit(path string) (soakAudit, error) {
	a := soakAudit{codes: map[int]int{}}
	f, err := os.Open(path)
	if err != nil {
		return a, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	open := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Event        string `json:"event"`
			ConnectionID string `json:"connectionId"`
			Code         int    `json:"code"`
			MessagesSent int64  `json:"messages_sent"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return a, fmt.Errorf("audit line %q: %w", sc.Text(), err)
		}
		switch l.Event {
		case "connect":
			a.connects++
			open[l.ConnectionID] = true
		case "disconnect":
			a.disconnects++
			a.codes[l.Code]++
			a.messagesSent += l.MessagesSent
			delete(open, l.ConnectionID)
		}
	}
	if err := sc.Err(); err != nil {
		return a, fmt.Errorf("read audit log: %w", err)
	}
	for id := range open {
		a.open = append(a.open, id)
	}
	sort.Strings(a.open)
	return a, nil
}

// TestSoak: see the comment at the top of this file.
func TestSoak(t *testing.T) {
	p := soakParamsFromEnv(t)
	if dl, ok := t.Deadline(); ok && p.full && time.Until(dl) < p.dur+5*time.Minute {
		t.Fatalf("CDC_SOAK=%v needs go test -timeout of at least %v (the run, then up to 5 minutes of checks)", p.dur, p.dur+5*time.Minute)
	}
	t.Logf("soak: %v at %d rows/s over %d channels (%d writers), %d clients; sessions %v–%v, pauses < %v; retention %d events; seed %d",
		p.dur, p.rate, p.channels, p.writers, p.clients, p.sessMin, p.sessMax, p.pauseMax, p.retention, p.seed)

	auditPath := filepath.Join(t.TempDir(), "audit.log")
	g := startGateway(t, map[string]any{
		"limits.max_connections_per_ip_per_minute": 100000000, // every client is 127.0.0.1
		"limits.max_connections_per_user":          100000,    // a channel's self clients share a subject
		"retention.max_events":                     p.retention,
		"retention.max_age":                        (p.dur + time.Hour).String(),
		"audit.log":                                auditPath, // not stdout: the harness would keep every line
	})
	r := &soakRun{p: p, wsURL: g.wsURL, dbURL: g.db.URL}
	sc := &soakScraper{addr: g.addr, hc: &http.Client{Timeout: 10 * time.Second}}

	// The users behind the channels. Their user.created events land in
	// the log before the start cursor is taken, so no client sees them.
	var values []string
	for k := range p.channels {
		id := int64(soakUserBase + k)
		values = append(values, fmt.Sprintf("(%d, 'soak%d@example.test', 'x', 'Soak', 'User%d', 'parent')", id, id, k))
		r.chans = append(r.chans, &soakChan{name: fmt.Sprintf("user:%d", id), userID: id})
	}
	g.db.Exec(t, "INSERT INTO users (id, email, password_hash, first_name, last_name, role) VALUES "+strings.Join(values, ", "))
	if _, ok, err := sc.settle(r, time.Minute, func(m soakSample) bool { return m.logEvents >= float64(p.channels) }); err != nil || !ok {
		t.Fatalf("the %d user.created events did not reach the log within a minute (%v)", p.channels, err)
	}
	r.start = soakHead(t, g)

	clients := make([]*soakClient, p.clients)
	for i := range clients {
		ch := r.chans[i%p.channels]
		sub, role := strconv.FormatInt(ch.userID, 10), "parent" // the channel's own user
		if i%2 == 1 {
			sub, role = strconv.Itoa(soakAdminBase+i), "admin"
		}
		clients[i] = &soakClient{
			name: fmt.Sprintf("client %d (%s %s)", i, role, sub), ch: ch, last: r.start, missing: map[int64]bool{},
			token: gwToken(t, gwClaims(sub, role, p.dur+time.Hour)),
			rng:   rand.New(rand.NewPCG(p.seed, uint64(i))),
		}
	}

	base, ok, err := sc.settle(r, soakSettleTimeout, func(m soakSample) bool { return m.conns == 0 })
	if err != nil || !ok {
		t.Fatalf("serve still has %v connections before the soak (%v)", base.conns, err)
	}
	samples := []soakSample{base}
	var findings []string
	fail := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		findings = append(findings, msg)
		t.Error(msg)
	}
	var audit soakAudit
	var final, settled soakSample
	defer func() {
		writeSoakReport(t, r, clients, samples, base, final, settled, audit, findings)
	}()

	// Write and churn.
	r.t0 = time.Now()
	r.runEnd = r.t0.Add(p.dur)
	runCtx, stopRun := context.WithDeadline(context.Background(), r.runEnd)
	defer stopRun()
	var writers, churners sync.WaitGroup
	writeErrs := make(chan error, p.writers)
	for w := range p.writers {
		writers.Go(func() {
			if err := r.writer(runCtx, w); err != nil {
				writeErrs <- err
			}
		})
	}
	for i, c := range clients {
		delay := time.Duration(int64(p.stagger) * int64(i) / int64(p.clients))
		churners.Go(func() { c.churn(runCtx, r, delay) })
	}
	var sampleErrs []string // with samples, the sampler's until it is stopped
	stopSampler := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(p.sampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-stopSampler:
				return
			case <-tick.C:
			}
			if m, err := sc.sample(r); err != nil {
				sampleErrs = append(sampleErrs, err.Error())
			} else {
				samples = append(samples, m)
			}
		}
	})

	writers.Wait()
	close(writeErrs)
	for err := range writeErrs {
		fail("writer: %v", err)
	}
	churners.Wait()
	close(stopSampler)
	sampler.Wait()
	if len(sampleErrs) > 0 {
		t.Logf("%d failed samples, first: %s", len(sampleErrs), sampleErrs[0])
	}
	if t.Failed() {
		t.FailNow()
	}

	// The writers' record against the table (a harness check).
	for _, ch := range r.chans {
		rows, err := g.db.Pool.Query(context.Background(), "SELECT id FROM notifications WHERE user_id = $1 ORDER BY id", ch.userID)
		if err != nil {
			t.Fatalf("read back %s: %v", ch.name, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatalf("read back %s: %v", ch.name, err)
		}
		if !slices.Equal(ids, ch.committed()) {
			t.Fatalf("harness: the writers recorded %d rows of %s, the table has %d", len(ch.committed()), ch.name, len(ids))
		}
	}

	// Every client comes back once more and reads up to its channel's last row.
	finalCtx, stopFinal := context.WithTimeout(context.Background(), soakFinalTimeout)
	defer stopFinal()
	var finals sync.WaitGroup
	sem := make(chan struct{}, 200) // do not open a thousand connections in the same instant
	for _, c := range clients {
		ids := c.ch.committed()
		target := int64(0)
		if len(ids) > 0 {
			target = ids[len(ids)-1]
		}
		finals.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c.session(finalCtx, r, 0, soakClean, true, target)
		})
	}
	finals.Wait()

	// Nothing lost, nothing twice, in commit order.
	bad := 0
	for _, c := range clients {
		if v := c.verdict(); v != "" {
			if bad < 20 {
				fail("%s", v)
			}
			bad++
		}
	}
	if bad > 20 {
		fail("%d clients in all did not get exactly their channel's rows in order (20 shown)", bad)
	}

	// Connections and goroutines back to where they were before any client.
	settled, ok, err = sc.settle(r, soakSettleTimeout, func(m soakSample) bool {
		return m.conns == 0 && m.goroutines <= base.goroutines+soakGoroutineSlack && m.testGoroutine <= base.testGoroutine+soakTestSlack
	})
	switch {
	case err != nil:
		fail("scrape after the clients left: %v", err)
	case !ok && settled.conns != 0:
		fail("serve still reports %v open connections %v after every client closed", settled.conns, soakSettleTimeout)
	case !ok && settled.goroutines > base.goroutines+soakGoroutineSlack:
		fail("serve has %v goroutines %v after the last client left, %v before the first came (allowed: +%d)",
			settled.goroutines, soakSettleTimeout, base.goroutines, soakGoroutineSlack)
	case !ok:
		fail("this test process has %d goroutines after its clients finished, %d before they started (allowed: +%d)",
			settled.testGoroutine, base.testGoroutine, soakTestSlack)
	}

	// Every connection the audit log opened, it closed.
	for deadline := time.Now().Add(soakSettleTimeout); ; time.Sleep(200 * time.Millisecond) {
		if audit, err = readSoakAudit(auditPath); err != nil {
			fail("%v", err)
			break
		}
		if len(audit.open) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(audit.open) > 0 {
		fail("the audit log has %d connections with a connect and no disconnect, e.g. %s", len(audit.open), strings.Join(audit.open[:min(5, len(audit.open))], ", "))
	}

	// The heap. In use bytes swing up to 2× with the collector's cycle, so
	// the comparison is of the heap goal (go_memstats_next_gc_bytes: what
	// the last collection found live, times 1 + GOGC/100, plus stacks), and
	// only after serve has finished two collections with no client left.
	// The reference is the first sample after warm-up, under full load
	// with every client connected. Without a leak the end holds less: the
	// connections are gone (about 75 KiB of heap each). What may
	// legitimately have grown is the event log, until retention.max_events
	// is full: each event added since the reference is allowed 1 KiB (a
	// notification.created event measures ~400 bytes, docs/operations.md),
	// twice over for the goal. The 1.5× + 16 MiB absorbs collector timing
	// and allocator fragmentation. A leak of a few hundred bytes per
	// connection over the ~150,000 connections of the 30-minute run breaks
	// the bound, and so does anything that grows with the rows written.
	scrapes, gcOK, err := sc.forceGCs(r, 2, 30*time.Second)
	if err != nil {
		fail("drive serve's collector: %v", err)
	}
	if final, err = sc.sample(r); err != nil {
		fail("final scrape: %v", err)
	}
	warm := base
	for _, m := range samples {
		if m.at >= p.warm {
			warm = m
			break
		}
	}
	if warm == base {
		t.Logf("no sample after the warm-up (%v): the memory reference is the one before the soak", p.warm)
	}
	growth := max(0, final.logEvents-warm.logEvents)
	bound := 1.5*warm.heapGoal + 16<<20 + 2*1024*growth
	t.Logf("heap goal: %.1f MiB at %v (log %.0f events), %.1f MiB at the end (log %.0f events) after %d scrapes to drive two collections (done: %v); bound %.1f MiB",
		mib(warm.heapGoal), warm.at.Round(time.Second), warm.logEvents, mib(final.heapGoal), final.logEvents, scrapes, gcOK, mib(bound))
	if gcOK && final.heapGoal > bound {
		fail("serve's heap goal is %.1f MiB with no client, %.1f MiB under full load at %v: over the bound of %.1f MiB (1.5× + 16 MiB + 2 KiB × %.0f events the log grew by)",
			mib(final.heapGoal), mib(warm.heapGoal), warm.at.Round(time.Second), mib(bound), growth)
	}
	if !gcOK {
		t.Logf("serve did not finish two collections within 30 s of scraping: heap not checked")
	}
}

func mib(b float64) float64 { return b / (1 << 20) }

// soakHead returns the head of the log (a pong's cursor), before any row.
func soakHead(t *testing.T, g *gwServer) string {
	t.Helper()
	c := g.connect(t, "1", "admin")
	defer c.close()
	m := c.ping()
	if m.Cursor == "" {
		t.Fatalf("no head cursor in %s", m)
	}
	return m.Cursor
}

// soakTotals adds up the clients.
type soakTotals struct {
	received, sessions, resumes, clean, fin, rst, dialErrors, resets int
	serverCloses                                                     map[int]int
}

func sumSoak(clients []*soakClient) soakTotals {
	s := soakTotals{serverCloses: map[int]int{}}
	for _, c := range clients {
		s.received += c.received
		s.sessions += c.sessions
		s.resumes += c.resumes
		s.clean += c.clean
		s.fin += c.fin
		s.rst += c.rst
		s.dialErrors += c.dialErrors
		s.resets += c.resets
		for code, n := range c.serverCloses {
			s.serverCloses[code] += n
		}
	}
	return s
}

func fmtCodes(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", c, m[c]))
	}
	return strings.Join(parts, ", ")
}

// writeSoakReport logs the summary and, with CDC_SOAK_REPORT set, appends
// it as a Markdown section to that file.
func writeSoakReport(t *testing.T, r *soakRun, clients []*soakClient, samples []soakSample, base, final, settled soakSample,
	audit soakAudit, findings []string) {
	p := r.p
	tot := sumSoak(clients)
	verdict := "PASS"
	if t.Failed() {
		verdict = "FAIL"
	}
	lastErr, _ := r.lastWriteErr.Load().(string)

	var b strings.Builder
	fmt.Fprintf(&b, "## Soak\n\n")
	fmt.Fprintf(&b, "Run %s, %s/%s, %d CPUs. Verdict: **%s**.\n\n", time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), verdict)
	fmt.Fprintf(&b, "| parameter | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| duration | %v |\n| target rate | %d rows/s (single-row transactions into `notifications`) |\n", p.dur, p.rate)
	fmt.Fprintf(&b, "| channels | %d (`user:<id>`), %d writer connections |\n| clients | %d (half the channel's own user, half admins), starts spread over %v |\n",
		p.channels, p.writers, p.clients, p.stagger)
	fmt.Fprintf(&b, "| churn | sessions %v–%v, then a pause under %v; closes: ½ clean 1000, ¼ FIN without close frame, ¼ RST |\n", p.sessMin, p.sessMax, p.pauseMax)
	fmt.Fprintf(&b, "| retention | %d events |\n| seed | %d (CDC_SOAK_SEED) |\n\n", p.retention, p.seed)

	fmt.Fprintf(&b, "| result | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| commits | %d (%.0f rows/s achieved); writer errors %d %s; writers at most %v behind schedule |\n",
		r.commits.Load(), float64(r.commits.Load())/p.dur.Seconds(), r.writeFails.Load(), lastErr, time.Duration(r.maxLate.Load()).Round(time.Millisecond))
	fmt.Fprintf(&b, "| deliveries (events received by clients) | %d; serve counted %.0f frames |\n", tot.received, final.delivered)
	fmt.Fprintf(&b, "| sessions | %d, every one a resume with `since` (%d); dial failures %d |\n", tot.sessions, tot.resumes, tot.dialErrors)
	fmt.Fprintf(&b, "| client closes | clean %d, FIN %d, RST %d; ended by serve or the network: %s |\n", tot.clean, tot.fin, tot.rst, fmtCodes(tot.serverCloses))
	fmt.Fprintf(&b, "| audit log | %d connects, %d disconnects (by code: %s), %d left open |\n", audit.connects, audit.disconnects, fmtCodes(audit.codes), len(audit.open))
	fmt.Fprintf(&b, "| resets | %d |\n", tot.resets)
	fmt.Fprintf(&b, "| serve goroutines | %.0f before the first client, %.0f after the last left |\n", base.goroutines, settled.goroutines)
	fmt.Fprintf(&b, "| test goroutines | %d before, %d after |\n", base.testGoroutine, settled.testGoroutine)
	fmt.Fprintf(&b, "| serve heap goal at the end | %.1f MiB (heap in use %.1f MiB, RSS %.1f MiB) |\n\n", mib(final.heapGoal), mib(final.heap), mib(final.rss))

	fmt.Fprintf(&b, "| t | serve goroutines | RSS MiB | heap in use MiB | heap goal MiB | connections | log events | commits | received | test goroutines |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(label string, m soakSample) {
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.1f | %.1f | %.0f | %.0f | %d | %d | %d |\n", label, m.goroutines, mib(m.rss), mib(m.heap),
			mib(m.heapGoal), m.conns, m.logEvents, m.commits, m.received, m.testGoroutine)
	}
	for i, m := range samples {
		label := fmt.Sprintf("%.0fs", m.at.Seconds())
		if i == 0 {
			label = "before"
		}
		row(label, m)
	}
	if settled.gcs > 0 {
		row("clients gone", settled)
	}
	if final.gcs > 0 {
		row("end, after GC", final)
	}
	if len(findings) > 0 {
		fmt.Fprintf(&b, "\nFindings:\n\n")
		for _, f := range findings {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
	}
	t.Log("\n" + b.String())

	path := os.Getenv("CDC_SOAK_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = f.WriteString(b.String() + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Errorf("write the soak report: %v", err)
	}
}

// TestSoakChecker feeds the soak's per-client check made-up deliveries:
// it must name every missing, duplicated, late and unknown row, including
// rows that arrive before their writer recorded them.
func TestSoakChecker(t *testing.T) {
	for _, tc := range []struct {
		name                         string
		early                        []int64 // received before the writer recorded anything
		received                     []int64 // received after the writer recorded 1..5
		missing, dups, late, unknown []int64
	}{
		{name: "exact", received: []int64{1, 2, 3, 4, 5}},
		{name: "ahead of the writer", early: []int64{1, 2}, received: []int64{3, 4, 5}},
		{name: "gap", received: []int64{1, 2, 4, 5}, missing: []int64{3}},
		{name: "tail never came", received: []int64{1, 2, 3}, missing: []int64{4, 5}},
		{name: "duplicate", received: []int64{1, 2, 2, 3, 4, 5}, dups: []int64{2}},
		{name: "duplicate of the last", received: []int64{1, 2, 3, 4, 5, 5}, dups: []int64{5}},
		{name: "duplicate ahead of the writer", early: []int64{1, 1}, received: []int64{2, 3, 4, 5}, dups: []int64{1}},
		{name: "out of order", received: []int64{1, 3, 2, 4, 5}, late: []int64{2}},
		{name: "unknown", received: []int64{1, 2, 3, 4, 5, 9}, unknown: []int64{9}},
		{name: "unknown in the middle", received: []int64{1, 2, 3, 4, 5}, early: []int64{0}, unknown: []int64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := &soakChan{name: "user:1", userID: 1}
			c := &soakClient{ch: ch, missing: map[int64]bool{}}
			c.pending = append(c.pending, tc.early...)
			c.match(false)
			ch.add(1, 2, 3, 4, 5)
			for _, id := range tc.received {
				c.pending = append(c.pending, id)
				c.match(false)
			}
			miss := c.missed()
			for _, f := range []struct {
				what      string
				got, want []int64
			}{{"missing", miss, tc.missing}, {"duplicated", c.dups, tc.dups}, {"late", c.late, tc.late}, {"unknown", c.unknown, tc.unknown}} {
				if !slices.Equal(f.got, f.want) {
					t.Errorf("%s: %v, want %v", f.what, f.got, f.want)
				}
			}
		})
	}
}
