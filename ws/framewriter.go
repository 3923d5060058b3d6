package ws

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// errBadFrameStream: what went through was not a sequence of frames.
var errBadFrameStream = errors.New("ws: frame writer: no frame header within the held bytes")

// frameWriter lets a connection idle without a write buffer. coder/websocket
// writes a frame as its header and its payload into a bufio.Writer, then
// flushes. With the usual 2–4 KiB buffer per connection, buffers are a good
// part of an idle connection's memory; with a tiny one (smallWriteBuffer),
// bufio would hand the socket each larger frame in two writes (its first
// bytes, then the rest): two system calls and two packets per frame. So the
// tiny buffer writes into a frameWriter, which reads the frame headers
// going through: the start of a frame whose rest is still to come is held
// back (at most smallWriteBuffer bytes, copied) and goes out with the rest
// in one writev. Complete frames go straight to the socket.
//
// Frames from a server are not masked; the header is 2 bytes, then 2 or 8
// bytes of extended length (RFC 6455, section 5.2). A frame is always
// written whole, before the next (coder/websocket holds a lock for it), so
// whatever is held is followed by the rest of its frame.
type frameWriter struct {
	// mu serializes Write (coder/websocket's writers: the connection's
	// writer, a ping, a close) with cork and uncork (the writer).
	mu sync.Mutex
	w  io.Writer
	// corked: output is collected in pend, and written by uncork in one
	// writev. Pieces shorter than copyBelow are copied into arena (they
	// may be bufio's buffer, or a control frame's payload, both reused);
	// longer ones are event and reply frames, which are never changed
	// after they are queued, and are referenced.
	corked bool
	// closeCorked: a close frame was collected while corked. coder/websocket
	// may close the socket right after writing a close frame (its echo of
	// the client's close), so it goes out at once, not at uncork.
	closeCorked bool
	// closeSent: a close frame went through; no direct write follows it.
	closeSent bool
	// noRaw: the socket has no raw connection (rc), so no direct writes.
	noRaw bool
	pend  net.Buffers
	arena []byte
	// held[:n] is the start of a frame whose rest has not come yet.
	held [smallWriteBuffer]byte
	n    int
	// skip is how many bytes of a frame whose start was written are still
	// to come: they go straight through.
	skip int64
	// bufs is the scratch of a writev.
	bufs net.Buffers
	// setDeadline sets the socket's write deadline; deadline is the one set
	// (Unix ns). Every write to the socket, whoever makes it (the writer,
	// a ping, coder/websocket's pong or close), first moves the deadline
	// when half of it is used (arm): a deadline set for one write and left
	// would fail the next one after an idle spell.
	setDeadline func(time.Time) error
	deadline    int64
	// now is time.Now, but for tests.
	now func() time.Time
	// rc is the socket's raw connection, for direct writes (direct.go),
	// found at the first.
	rc syscall.RawConn
}

// sawFrame notes the start of a frame, b, going through; fw.mu is held.
func (fw *frameWriter) sawFrame(b []byte) {
	if isClose(b) {
		fw.closeSent = true
		if fw.corked {
			fw.closeCorked = true
		}
	}
}

// arm moves the write deadline to writeTimeout from now once half of it is
// used; fw.mu is held.
func (fw *frameWriter) arm() {
	if fw.setDeadline == nil {
		return
	}
	now := time.Now
	if fw.now != nil {
		now = fw.now
	}
	t := now()
	if t.UnixNano() > fw.deadline-int64(writeTimeout/2) {
		fw.deadline = t.Add(writeTimeout).UnixNano()
		_ = fw.setDeadline(time.Unix(0, fw.deadline))
	}
}

// smallWriteBuffer is the write buffer handed to coder/websocket: room for
// the longest frame header (10 bytes unmasked) and a little more.
const smallWriteBuffer = 16

// frameLen parses the header at the start of b: the whole frame's length,
// or ok false when b holds less than the header.
func frameLen(b []byte) (total int64, ok bool) {
	if len(b) < 2 {
		return 0, false
	}
	hdr, n := int64(2), int64(b[1]&0x7f)
	if b[1]&0x80 != 0 {
		hdr += 4 // masked: not from a server, but parse it right anyway
	}
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, false
		}
		hdr += 2
		n = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		if len(b) < 10 {
			return 0, false
		}
		hdr += 8
		n = int64(binary.BigEndian.Uint64(b[2:10]) & (1<<63 - 1))
	}
	return hdr + n, true
}

// Write writes p, holding back the start of an incomplete last frame when
// it is small. On an error the connection is done for: what was written
// is not reported.
func (fw *frameWriter) Write(p []byte) (int, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	n, err := fw.write(p)
	if err == nil && fw.closeCorked && fw.n == 0 && fw.skip == 0 {
		// The close frame is complete: send it, and what precedes it.
		fw.closeCorked = false
		if err = fw.flush(); err != nil {
			return 0, err
		}
	}
	return n, err
}

// isClose reports whether a frame starting with b is a close frame.
func isClose(b []byte) bool { return len(b) > 0 && b[0]&0x0f == 0x8 }

func (fw *frameWriter) write(p []byte) (int, error) {
	size := len(p)
	for len(p) > 0 {
		switch {
		case fw.skip > 0:
			// The rest of a frame whose start went out already.
			k := int(min(fw.skip, int64(len(p))))
			if err := fw.emit(p[:k]); err != nil {
				return 0, err
			}
			fw.skip -= int64(k)
			p = p[k:]
		case fw.n > 0:
			// Complete the held header a byte at a time, then send the
			// held start with the rest of its frame.
			fw.sawFrame(fw.held[:fw.n])
			total, ok := frameLen(fw.held[:fw.n])
			for !ok && len(p) > 0 && fw.n < len(fw.held) {
				fw.held[fw.n] = p[0]
				fw.n++
				p = p[1:]
				total, ok = frameLen(fw.held[:fw.n])
			}
			if !ok {
				if fw.n == len(fw.held) {
					return 0, errBadFrameStream
				}
				return size, nil // more header to come
			}
			rest := total - int64(fw.n)
			k := int(min(rest, int64(len(p))))
			if err := fw.writev(p[:k]); err != nil {
				return 0, err
			}
			fw.skip = rest - int64(k)
			p = p[k:]
		default:
			// Whole frames go out as they are; a short incomplete last
			// one is held.
			off := 0
			total, ok := int64(0), false
			for off < len(p) {
				total, ok = frameLen(p[off:])
				if !ok || total > int64(len(p)-off) {
					break
				}
				fw.sawFrame(p[off:])
				off += int(total)
			}
			if off == len(p) {
				if err := fw.emit(p); err != nil {
					return 0, err
				}
				return size, nil
			}
			tail := p[off:]
			fw.sawFrame(tail)
			if len(tail) > len(fw.held) {
				// Not what bufio hands over; write it all.
				if err := fw.emit(p); err != nil {
					return 0, err
				}
				fw.skip = total - int64(len(tail))
				return size, nil
			}
			if off > 0 {
				if err := fw.emit(p[:off]); err != nil {
					return 0, err
				}
			}
			fw.n = copy(fw.held[:], tail)
			return size, nil
		}
	}
	return size, nil
}

// writev writes what is held and p with one system call (more if the
// socket takes less), or collects them when corked, and forgets what was
// held.
func (fw *frameWriter) writev(p []byte) error {
	held := fw.held[:fw.n]
	fw.n = 0
	if fw.corked {
		fw.collect(held)
		fw.collect(p)
		return nil
	}
	fw.arm()
	fw.bufs = append(fw.bufs[:0], held, p)
	bufs := fw.bufs
	_, err := bufs.WriteTo(fw.w)
	clear(fw.bufs[:2])
	fw.bufs = fw.bufs[:0]
	return err
}

// emit writes p, or collects it when corked.
func (fw *frameWriter) emit(p []byte) error {
	if fw.corked {
		fw.collect(p)
		return nil
	}
	fw.arm()
	_, err := fw.w.Write(p)
	return err
}

// copyBelow: collected pieces shorter than this are copied.
const copyBelow = 256

// arenaSize is the size of a copy arena.
const arenaSize = 4096

var arenas = sync.Pool{New: func() any { b := make([]byte, 0, arenaSize); return &b }}

// collect adds p to what uncork writes.
func (fw *frameWriter) collect(p []byte) {
	if len(p) == 0 {
		return
	}
	if len(p) >= copyBelow {
		fw.pend = append(fw.pend, p)
		return
	}
	if fw.arena == nil || cap(fw.arena)-len(fw.arena) < len(p) {
		fw.arena = (*arenas.Get().(*[]byte))[:0]
	}
	start := len(fw.arena)
	fw.arena = append(fw.arena, p...)
	piece := fw.arena[start:len(fw.arena):len(fw.arena)]
	// Adjacent copies in one arena make one piece.
	if n := len(fw.pend); n > 0 {
		last := fw.pend[n-1]
		if len(last) > 0 && cap(last) == len(last) && start >= len(last) &&
			&fw.arena[start-len(last)] == &last[0] {
			fw.pend[n-1] = fw.arena[start-len(last) : len(fw.arena) : len(fw.arena)]
			return
		}
	}
	fw.pend = append(fw.pend, piece)
}

// cork starts collecting: nothing goes out until uncork.
func (fw *frameWriter) cork() {
	fw.mu.Lock()
	fw.corked = true
	fw.mu.Unlock()
}

// uncork writes what was collected, in one writev when the socket takes
// it all, and goes back to writing through.
func (fw *frameWriter) uncork() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.corked = false
	fw.closeCorked = false
	return fw.flush()
}

// flush writes what was collected; fw.mu is held.
func (fw *frameWriter) flush() error {
	if len(fw.pend) == 0 {
		return nil
	}
	fw.arm()
	bufs := fw.pend
	_, err := bufs.WriteTo(fw.w)
	clear(fw.pend)
	fw.pend = fw.pend[:0]
	if cap(fw.pend) > 64 {
		fw.pend = nil
	}
	if fw.arena != nil {
		// Pieces of earlier arenas are garbage now; this one goes back.
		a := fw.arena[:0]
		fw.arena = nil
		arenas.Put(&a)
	}
	return err
}
