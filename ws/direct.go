package ws

import (
	"encoding/binary"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/coder/websocket"
)

// Direct writes: the hub writes the events it queued on a connection
// itself, with one non-blocking writev, instead of starting a writer
// goroutine for each connection for each batch (a goroutine made, scheduled
// and destroyed per connection per event was a tenth of serve's CPU with
// many clients, on top of the writes). A direct write never waits for a
// client: it happens only when nothing else is writing to the connection
// (no writer goroutine, the frameWriter's lock free, at a frame boundary,
// nothing held back), and what the socket does not take at once is left to
// the connection's writer goroutine, which is then started. So the fan-out
// rule holds: the hub never waits for a browser.
//
// A frame is written as coder/websocket would write it: one unmasked,
// final text frame per message, no compression (the server negotiates
// none). Pings, pongs and the close frame still go through coder/websocket;
// the frameWriter's lock keeps them and the direct writes whole frames
// apart.

// directScratch is one direct writer's scratch space: the frames taken
// from a queue, their headers, and the writev's vector.
type directScratch struct {
	frames []outFrame
	hdrs   [maxBatch][10]byte
	pieces [2 * maxBatch][]byte
	iov    [2 * maxBatch]syscall.Iovec
}

// intakeEvery: in a round of direct writes, the hub takes in what the log
// gained every intakeEvery connections (hub.between).
const intakeEvery = 256

// writeDirect writes the queued frames of conns (writeNow), in turn, on the
// hub's goroutine. With many connections a round takes a while (10,000
// writes and their clients' reads took 130–200 ms on two cores), and a
// commit that arrives meanwhile would wait for the round to end: so every
// intakeEvery connections it calls h.between, which queues what the log
// gained since. The connections still ahead in the round then send it with
// the rest in the same writev, and only the ones already written wait for
// the next round. (One goroutine, not one per processor: spreading the
// writes over both cores here cost ~15 % more CPU per write and left the
// clients' processes less, for longer rounds; BENCHMARKS.md.)
func (h *hub) writeDirect(conns []*conn) {
	sc := h.scratch()
	for i, c := range conns {
		if i > 0 && i%intakeEvery == 0 && h.between != nil {
			h.between()
		}
		c.writeNow(sc)
	}
}

// scratch returns the direct writes' scratch space; only the hub's
// goroutine calls it.
func (h *hub) scratch() *directScratch {
	if h.scratchSpace == nil {
		h.scratchSpace = &directScratch{}
	}
	return h.scratchSpace
}

// writeNow writes c's queued frames (up to maxBatch) from the caller's
// goroutine when that cannot block (see Direct writes above); otherwise,
// and for what is left, it starts c's writer. Nothing happens when a
// writer runs: it finds the frames.
func (c *conn) writeNow(sc *directScratch) {
	c.qmu.Lock()
	if c.writing || c.noWriter {
		c.qmu.Unlock()
		return
	}
	if c.failed.Load() || c.catchUpDue || c.fw == nil || !c.fw.acquire() {
		c.kickLocked()
		c.qmu.Unlock()
		return
	}
	for len(sc.frames) < maxBatch {
		f, ok := c.popLocked()
		if !ok {
			break
		}
		sc.frames = append(sc.frames, f)
	}
	if len(sc.frames) == 0 {
		c.fw.mu.Unlock()
		c.qmu.Unlock()
		return
	}
	c.writing = true
	c.qmu.Unlock()

	done, err := c.fw.writeFrames(sc)
	var w written
	for _, f := range sc.frames {
		w.add(f)
	}
	clear(sc.frames)
	sc.frames = sc.frames[:0]
	if err != nil {
		c.fail(closeInfo{code: websocket.StatusAbnormalClosure, reason: "write failed", abrupt: true})
		go c.writeLoop() // it finishes the connection
		return
	}
	c.count(&w)
	if !done {
		// The socket took part: the writer sends the rest, blocking.
		go func() {
			c.flushRest()
			c.writeLoop() // it finishes the connection if that failed
		}()
		return
	}
	c.qmu.Lock()
	if c.head == len(c.queue) && !c.catchUpDue && !c.failed.Load() {
		c.writing = false
	} else {
		go c.writeLoop()
	}
	c.qmu.Unlock()
}

// acquire takes fw.mu for writeFrames when a direct write can go now: no
// one holds it, no frame is partly written or held, nothing is collected,
// no close frame went out, and the socket has a raw descriptor. It
// reports whether it did.
func (fw *frameWriter) acquire() bool {
	if !fw.mu.TryLock() {
		return false
	}
	if fw.corked || fw.n > 0 || fw.skip > 0 || len(fw.pend) > 0 || fw.closeSent || !fw.raw() {
		fw.mu.Unlock()
		return false
	}
	return true
}

// raw finds the socket's raw connection, once; fw.mu is held.
func (fw *frameWriter) raw() bool {
	if fw.rc == nil && !fw.noRaw {
		if sc, ok := fw.w.(syscall.Conn); ok {
			fw.rc, _ = sc.SyscallConn()
		}
		fw.noRaw = fw.rc == nil
	}
	return fw.rc != nil
}

// writeFrames writes sc.frames as text frames with one non-blocking
// writev; fw.mu is held (acquire) and released. When the socket takes
// less than all, the rest is collected and fw stays corked: done is false,
// and uncork (which may block) must send it.
func (fw *frameWriter) writeFrames(sc *directScratch) (done bool, err error) {
	defer fw.mu.Unlock()
	pieces := sc.pieces[:0]
	total := 0
	for i, f := range sc.frames {
		hdr := textHeader(&sc.hdrs[i], len(f.data))
		pieces = append(pieces, hdr, f.data)
		total += len(hdr) + len(f.data)
	}
	iov := sc.iov[:0]
	for _, p := range pieces {
		if len(p) > 0 {
			v := syscall.Iovec{Base: &p[0]}
			v.SetLen(len(p))
			iov = append(iov, v)
		}
	}
	fw.arm()
	n := 0
	var errno syscall.Errno
	werr := fw.rc.Write(func(fd uintptr) bool {
		for {
			r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			if e == syscall.EINTR {
				continue
			}
			if e == 0 {
				n = int(r)
			}
			errno = e
			return true
		}
	})
	runtime.KeepAlive(pieces)
	clear(sc.iov[:len(iov)])
	defer clear(sc.pieces[:len(pieces)])
	switch {
	case werr != nil:
		return false, werr
	case errno != 0 && errno != syscall.EAGAIN:
		return false, errno
	case n == total:
		return true, nil
	}
	// Keep what the socket did not take, in order, for uncork.
	fw.corked = true
	for _, p := range pieces {
		if n >= len(p) {
			n -= len(p)
			continue
		}
		fw.collect(p[n:])
		n = 0
	}
	return false, nil
}

// textHeader encodes the header of a final, unmasked text frame of n
// bytes into b.
func textHeader(b *[10]byte, n int) []byte {
	b[0] = 0x81 // FIN, text
	switch {
	case n <= 125:
		b[1] = byte(n)
		return b[:2]
	case n <= 0xffff:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:4], uint16(n))
		return b[:4]
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:10], uint64(n))
		return b[:10]
	}
}

// flushRest sends, blocking, what a direct write left collected; it
// reports false when the connection failed.
func (c *conn) flushRest() bool {
	c.writeStart.Store(time.Now().UnixNano())
	err := c.fw.uncork()
	c.writeStart.Store(0)
	if err != nil {
		c.fail(closeInfo{code: websocket.StatusAbnormalClosure, reason: "write failed", abrupt: true})
		return false
	}
	return true
}
