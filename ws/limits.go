package ws

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Fixed limits; the configurable ones are in config.Limits.
const (
	// badFrameBurst bad frames are tolerated at once, and one more every
	// badFrameRefill: "more than 10 within a minute" closes with 1008.
	badFrameBurst  = 10
	badFrameRefill = time.Minute / badFrameBurst
	// floodFactor × burst requests refused in a row close with 4008.
	floodFactor = 3
	// refusalFactor × max_subscriptions_per_connection refused channels
	// at once close with 4008 (newRefusalLimiter).
	refusalFactor = 2
	// writeTimeout bounds a write to a client (from half of it to all of
	// it: frameWriter.arm moves the deadline lazily).
	writeTimeout = 10 * time.Second
	// catchUpPage is how many log events a catching-up connection reads at
	// a time.
	catchUpPage = 256
	// stallSweep is how often connections are checked for a stalled write.
	stallSweep = 250 * time.Millisecond
)

// msgLimiter enforces limits.max_messages_per_second on one connection. It
// is used by the connection's reader goroutine only.
type msgLimiter struct {
	lim *rate.Limiter
	// refused counts requests refused in a row; floodAfter of them close
	// the connection.
	refused    int
	floodAfter int
}

func newMsgLimiter(perSecond int) *msgLimiter {
	burst := 2 * perSecond
	return &msgLimiter{
		lim:        rate.NewLimiter(rate.Limit(perSecond), burst),
		floodAfter: floodFactor * burst,
	}
}

// allow reports whether a request arriving at now may be served, and
// whether the client has been flooding long enough to be disconnected.
func (m *msgLimiter) allow(now time.Time) (ok, flood bool) {
	if m.lim.AllowN(now, 1) {
		m.refused = 0
		return true, false
	}
	m.refused++
	return false, m.refused >= m.floodAfter
}

// newRefusalLimiter returns the bucket of subscription refusals a
// connection may be answered: maxSubs a minute, with a burst of twice that
// (a client whose list went stale, or that lost every channel it had, is
// refused a whole request or two at once). Each refusal may have cost an
// access query and costs an audit line; past the bucket the connection is
// closed with 4008.
func newRefusalLimiter(maxSubs int) *rate.Limiter {
	return rate.NewLimiter(rate.Every(time.Minute/time.Duration(maxSubs)), refusalFactor*maxSubs)
}

// newBadFrameLimiter returns the bucket of bad frames a connection may send.
func newBadFrameLimiter() *rate.Limiter {
	return rate.NewLimiter(rate.Every(badFrameRefill), badFrameBurst)
}

// ipLimiter enforces limits.max_connections_per_ip_per_minute: a token
// bucket per IP, burst the limit, refilled at the limit per minute.
type ipLimiter struct {
	perMinute int

	mu sync.Mutex // protects buckets and lastSweep
	// buckets holds the IPs seen within the last minute or so.
	buckets   map[string]*ipBucket
	lastSweep time.Time
}

type ipBucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newIPLimiter(perMinute int) *ipLimiter {
	return &ipLimiter{perMinute: perMinute, buckets: make(map[string]*ipBucket)}
}

// allow reports whether ip may open one more connection at now.
func (l *ipLimiter) allow(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[ip]
	if b == nil {
		b = &ipBucket{lim: rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMinute)), l.perMinute)}
		l.buckets[ip] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// sweep forgets, at most once a minute, the IPs idle for a minute: their
// buckets are full again, the same as new ones.
func (l *ipLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	for ip, b := range l.buckets {
		if now.Sub(b.last) >= time.Minute {
			delete(l.buckets, ip)
		}
	}
}

// pollLimiter enforces limits.max_sync_polls_per_user and
// limits.max_sync_polls_per_ip: the /sync requests in progress at once (a
// long-poll holds a goroutine and its buffers for up to 30 s).
type pollLimiter struct {
	perUser, perIP int

	mu sync.Mutex // protects users and ips
	// users and ips count the requests in progress; zero counts are
	// deleted.
	users map[string]int
	ips   map[string]int
}

func newPollLimiter(perUser, perIP int) *pollLimiter {
	return &pollLimiter{perUser: perUser, perIP: perIP, users: make(map[string]int), ips: make(map[string]int)}
}

// acquire counts one more request of user from ip, or says which limit
// refuses it ("user" or "ip"); a counted request must be released.
func (l *pollLimiter) acquire(user, ip string) (refusedBy string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.users[user] >= l.perUser:
		return "user"
	case l.ips[ip] >= l.perIP:
		return "ip"
	}
	l.users[user]++
	l.ips[ip]++
	return ""
}

// release ends a request counted by acquire.
func (l *pollLimiter) release(user, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users[user]--; l.users[user] <= 0 {
		delete(l.users, user)
	}
	if l.ips[ip]--; l.ips[ip] <= 0 {
		delete(l.ips, ip)
	}
}

// SendBuffer is the kernel send buffer ConnContext gives each client socket.
// A fixed buffer keeps what a client that stopped reading can hold in the
// kernel small (Linux would otherwise let a socket's buffers grow to
// megabytes), so the stall is seen and the connection closed 4009 within
// StallTimeout, and it bounds kernel memory per connection. 256 KiB carries
// about 20 MB/s at 10 ms round trip, far beyond a dashboard's needs.
const SendBuffer = 256 << 10

// ConnContext is for http.Server.ConnContext: it fixes the send buffer of
// each accepted TCP connection to SendBuffer.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(SendBuffer)
	}
	return ctx
}

// connReadBuffer is a connection's read buffer after the upgrade: clients
// send a few small requests, and a larger frame is read past the buffer.
// Its write buffer is smallWriteBuffer, through a frameWriter.
const connReadBuffer = 128

// smallBuffers hands coder/websocket a hijacked connection with small
// buffers instead of net/http's 4 KiB each (connReadBuffer; for writes
// smallWriteBuffer bytes over a frameWriter): at tens of thousands of idle
// connections, buffers would be most of their memory.
type smallBuffers struct {
	http.ResponseWriter
	// nc is the hijacked connection; fw writes to it.
	nc net.Conn
	fw *frameWriter
}

// Hijack takes the connection over from net/http, keeping any bytes
// net/http had already read past the request.
func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.nc = nc
	br := bufio.NewReaderSize(nc, connReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		// Move them into the new buffer (coder/websocket takes what is
		// buffered, then reads the connection itself).
		ahead, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), nc), max(connReadBuffer, n))
		if _, err := br.Peek(n); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	w.fw = &frameWriter{w: nc, setDeadline: nc.SetWriteDeadline}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(w.fw, smallWriteBuffer)), nil
}
