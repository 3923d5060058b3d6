package integration

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpProxy forwards TCP connections from a listener on 127.0.0.1 to a
// target address, so that a test can break the network between
// cdc-broadcaster and PostgreSQL: Cut drops every connection that goes
// through it (both ends, at once, as a failed link would), Refuse turns
// new connections away for a while (accepted and reset at once, as a host
// that is down behind a load balancer would), and BlackHole silences every
// connection until Heal (a partition: nobody is told anything).
type tcpProxy struct {
	ln     net.Listener
	target string

	accepted atomic.Int64 // connections forwarded
	refused  atomic.Int64 // connections turned away by Refuse
	cut      atomic.Int64 // connections dropped by Cut

	mu          sync.Mutex // guards the fields below
	conns       map[*proxyPair]struct{}
	refuseUntil time.Time
	hole        chan struct{} // non-nil while black-holed; Heal closes it
	closed      bool

	wg sync.WaitGroup // the accept loop and every pair's copiers
}

// proxyPair is one forwarded connection: the client's end and ours to the
// target.
type proxyPair struct {
	client, server net.Conn
	once           sync.Once
	closed         chan struct{} // closed by close
}

// close drops both ends; a reset on the client's end, like a broken link.
func (p *proxyPair) close() {
	p.once.Do(func() {
		if tc, ok := p.client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = p.client.Close()
		_ = p.server.Close()
		close(p.closed)
	})
}

// startTCPProxy listens on 127.0.0.1:0 and forwards every connection to
// target. It is closed, with every connection through it, when the test
// ends.
func startTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: listen: %v", err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: make(map[*proxyPair]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's listen address, host:port.
func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's listen port.
func (p *tcpProxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *tcpProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: try again
			continue
		}
		p.mu.Lock()
		refuse := time.Now().Before(p.refuseUntil) || p.closed
		p.mu.Unlock()
		if refuse {
			p.refused.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// forward dials the target for client c and copies both ways until either
// side ends or Cut drops the pair.
func (p *tcpProxy) forward(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	pair := &proxyPair{client: c, server: s, closed: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pair.close()
		return
	}
	p.conns[pair] = struct{}{}
	p.mu.Unlock()
	p.accepted.Add(1)

	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		p.copy(pair, dst, src)
		done <- struct{}{}
	}
	go cp(s, c)
	go cp(c, s)
	<-done // one direction ended: the connection is over
	pair.close()
	<-done
	p.mu.Lock()
	delete(p.conns, pair)
	p.mu.Unlock()
}

// copy carries src's bytes, and then its end, to dst until either fails
// or the pair is closed. What it read while the proxy is black-holed, the
// end of src included, it holds until Heal.
func (p *tcpProxy) copy(pair *proxyPair, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if !p.passable(pair) {
			return
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr != nil {
			return
		}
	}
}

// passable waits while the proxy is black-holed; false if the pair was
// closed meanwhile.
func (p *tcpProxy) passable(pair *proxyPair) bool {
	p.mu.Lock()
	hole := p.hole
	p.mu.Unlock()
	if hole == nil {
		return true
	}
	select {
	case <-hole:
		return true
	case <-pair.closed:
		return false
	}
}

// BlackHole stops carrying bytes, both ways, on every connection through
// the proxy, open or new, without closing any: what a network partition
// does to TCP. The peers see silence, and only their own timeouts end a
// connection. The bytes are held, not dropped: TCP retransmits what a
// partition loses, so a connection that outlives it carries them in order
// after Heal (dropping them would corrupt the protocol on it, which no
// network does).
func (p *tcpProxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole == nil {
		p.hole = make(chan struct{})
	}
}

// Heal ends a BlackHole: what was held goes on, and so do the connections
// whose peers did not give up meanwhile.
func (p *tcpProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hole != nil {
		close(p.hole)
		p.hole = nil
	}
}

// Cut drops every connection currently open through the proxy and
// returns how many there were. New connections are still forwarded
// (unless Refuse says otherwise).
func (p *tcpProxy) Cut() int {
	p.mu.Lock()
	pairs := make([]*proxyPair, 0, len(p.conns))
	for pair := range p.conns {
		pairs = append(pairs, pair)
	}
	p.mu.Unlock()
	for _, pair := range pairs {
		pair.close()
	}
	p.cut.Add(int64(len(pairs)))
	return len(pairs)
}

// Refuse turns away every new connection for d from now (0 ends a refusal
// at once).
func (p *tcpProxy) Refuse(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseUntil = time.Now().Add(d)
}

// CutAndRefuse refuses new connections for d, then cuts the open ones, so
// that nothing reconnects in between; it returns how many were cut.
func (p *tcpProxy) CutAndRefuse(d time.Duration) int {
	p.Refuse(d)
	return p.Cut()
}

// Open returns how many connections are open through the proxy.
func (p *tcpProxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, drops every connection and waits for the proxy's
// goroutines. Safe to call twice.
func (p *tcpProxy) Close() {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if already {
		return
	}
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// TestTCPProxy checks the proxy itself against a local echo server:
// bytes go both ways, Cut drops open connections, Refuse turns new ones
// away for its duration only.
func TestTCPProxy(t *testing.T) {
	p := startTCPProxy(t, startEcho(t))

	roundTrip := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		if string(b) != "ping" {
			return errors.New("echo mismatch: " + string(b))
		}
		return nil
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("Cut dropped %d connections, want 1", n)
	}
	if err := roundTrip(c); err == nil {
		t.Fatal("a cut connection still carried data")
	}

	p.Refuse(300 * time.Millisecond)
	r, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if roundTrip(r) == nil {
			t.Fatal("a connection made while refusing carried data")
		}
		r.Close()
	}
	time.Sleep(350 * time.Millisecond)
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(c2); err != nil {
		t.Fatalf("after the refusal: %v", err)
	}
	if p.refused.Load() != 1 || p.accepted.Load() != 2 {
		t.Fatalf("refused %d, accepted %d; want 1 and 2", p.refused.Load(), p.accepted.Load())
	}
}

// TestTCPProxyBlackHole checks BlackHole and Heal against a local echo
// server: while black-holed nothing comes back and no connection closes,
// on an open one or one made meanwhile; after Heal what was held arrives,
// in order, and both go on working.
func TestTCPProxyBlackHole(t *testing.T) {
	p := startTCPProxy(t, startEcho(t))
	expect := func(c net.Conn, want string, within time.Duration) error {
		_ = c.SetReadDeadline(time.Now().Add(within))
		b := make([]byte, len(want))
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		if string(b) != want {
			return errors.New("got " + string(b) + ", want " + want)
		}
		return nil
	}
	open, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := expect(open, "before", 2*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.BlackHole()
	late, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	for i, c := range []net.Conn{open, late} {
		if _, err := c.Write([]byte("held" + strconv.Itoa(i))); err != nil {
			t.Fatalf("write into the black hole: %v", err)
		}
	}
	for i, c := range []net.Conn{open, late} {
		var ne net.Error
		if err := expect(c, "held"+strconv.Itoa(i), 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("connection %d while black-holed: %v, want silence (a read timeout)", i, err)
		}
	}
	if n := p.Open(); n != 2 {
		t.Fatalf("%d connections open through the black hole, want 2", n)
	}

	p.Heal()
	for i, c := range []net.Conn{open, late} {
		if err := expect(c, "held"+strconv.Itoa(i), 2*time.Second); err != nil {
			t.Fatalf("connection %d after Heal: %v, want what was held", i, err)
		}
		if _, err := c.Write([]byte("after")); err != nil {
			t.Fatal(err)
		}
		if err := expect(c, "after", 2*time.Second); err != nil {
			t.Fatalf("connection %d after Heal: %v", i, err)
		}
	}

	// A black hole does not keep Close waiting.
	p.BlackHole()
	if _, err := open.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a black-holed proxy")
	}
}

// startEcho starts a local TCP echo server, closed when the test ends, and
// returns its address.
func startEcho(t *testing.T) string {
	t.Helper()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return echo.Addr().String()
}
