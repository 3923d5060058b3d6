package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// frameBytes is an unmasked frame with a payload of n bytes.
func frameBytes(n int, fill byte) []byte {
	var h []byte
	switch {
	case n < 126:
		h = []byte{0x81, byte(n)}
	case n < 1<<16:
		h = []byte{0x81, 126, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = make([]byte, 10)
		h[0], h[1] = 0x81, 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	return append(h, bytes.Repeat([]byte{fill}, n)...)
}

// TestFrameWriterAsCoderWrites writes frames the way coder/websocket does
// (header, payload, flush, through a smallWriteBuffer bufio.Writer) and
// checks that after each flush the socket has every byte so far, in order:
// nothing is held past the end of a frame.
func TestFrameWriterAsCoderWrites(t *testing.T) {
	sizes := []int{0, 1, 5, 6, 13, 14, 15, 16, 17, 100, 125, 126, 127, 300, 4096, 65535, 65536, 70000}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		sizes = append(sizes, rng.IntN(2000))
	}
	var sock bytes.Buffer
	fw := &frameWriter{w: &sock}
	bw := bufio.NewWriterSize(fw, smallWriteBuffer)
	var want []byte
	for i, n := range sizes {
		f := frameBytes(n, byte(i))
		hdr := len(f) - n
		if _, err := bw.Write(f[:hdr]); err != nil {
			t.Fatal(err)
		}
		if _, err := bw.Write(f[hdr:]); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		want = append(want, f...)
		if !bytes.Equal(sock.Bytes(), want) {
			t.Fatalf("frame %d (%d bytes of payload): the socket has %d bytes, want %d", i, n, sock.Len(), len(want))
		}
	}
}

// FuzzFrameWriter splits a stream of frames at arbitrary points: whatever
// the splits, the socket gets the stream unchanged, and all of it once the
// stream ends on a frame boundary.
func FuzzFrameWriter(f *testing.F) {
	f.Add([]byte{3, 0, 200, 7}, []byte{1, 2, 30})
	f.Add([]byte{130, 0}, []byte{16, 16, 16})
	f.Add([]byte{3, 200, 1, 100, 9}, []byte{0x81, 5, 0x90, 3, 0x85, 120, 0x80})
	f.Fuzz(func(t *testing.T, lens []byte, cuts []byte) {
		var stream []byte
		for i, l := range lens {
			n := int(l)
			if i%5 == 4 {
				n *= 300 // some 126-length headers
			}
			stream = append(stream, frameBytes(n, byte(i))...)
		}
		var sock bytes.Buffer
		fw := &frameWriter{w: &sock}
		rest := stream
		for _, c := range cuts {
			// The high bit corks or uncorks before the cut, anywhere in
			// a frame, as the writer may while a ping is being written.
			if c&0x80 != 0 {
				if fw.corked {
					if err := fw.uncork(); err != nil {
						t.Fatal(err)
					}
				} else {
					fw.cork()
				}
			}
			k := min(int(c&0x7f), len(rest))
			if _, err := fw.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		if len(rest) > 0 {
			if _, err := fw.Write(rest); err != nil {
				t.Fatal(err)
			}
		}
		if err := fw.uncork(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sock.Bytes(), stream) {
			t.Fatalf("socket got %d bytes, want the %d of the stream", sock.Len(), len(stream))
		}
	})
}

// deadlineSocket is a socket whose write deadline is checked against a
// fake clock: a write after its deadline fails, as a net.Conn's would.
type deadlineSocket struct {
	bytes.Buffer
	now, deadline time.Time
}

func (s *deadlineSocket) Write(p []byte) (int, error) {
	if !s.now.Before(s.deadline) {
		return 0, os.ErrDeadlineExceeded
	}
	return s.Buffer.Write(p)
}

// TestFrameWriterMovesDeadline: a write after an idle spell longer than
// writeTimeout (a ping, a close, an event) gets a fresh deadline instead of
// failing on the one set for an earlier write.
func TestFrameWriterMovesDeadline(t *testing.T) {
	sock := &deadlineSocket{now: time.Unix(1000, 0)}
	fw := &frameWriter{w: sock, now: func() time.Time { return sock.now },
		setDeadline: func(d time.Time) error { sock.deadline = d; return nil }}
	frame := frameBytes(40, 'a')
	for i, idle := range []time.Duration{0, time.Second, writeTimeout + time.Second, 3 * writeTimeout, writeTimeout / 2} {
		sock.now = sock.now.Add(idle)
		if _, err := fw.Write(frame); err != nil {
			t.Fatalf("write %d after %v idle: %v", i, idle, err)
		}
		if left := sock.deadline.Sub(sock.now); left < writeTimeout/2 || left > writeTimeout {
			t.Fatalf("write %d: deadline %v ahead, want between %v and %v", i, left, writeTimeout/2, writeTimeout)
		}
		// Corked, and uncorked after an idle spell.
		fw.cork()
		if _, err := fw.Write(frame); err != nil {
			t.Fatal(err)
		}
		sock.now = sock.now.Add(idle)
		if err := fw.uncork(); err != nil {
			t.Fatalf("uncork %d after %v: %v", i, idle, err)
		}
	}
}

// TestFrameWriterCloseWhileCorked: coder/websocket closes the socket right
// after echoing a client's close; a close frame written while the writer
// is corked must reach the socket at once, after what was collected before.
func TestFrameWriterCloseWhileCorked(t *testing.T) {
	var sock bytes.Buffer
	fw := &frameWriter{w: &sock}
	bw := bufio.NewWriterSize(fw, smallWriteBuffer)
	event := frameBytes(300, 'e')
	closeFrame := []byte{0x88, 0x02, 0x03, 0xe8} // 1000
	fw.cork()
	for _, f := range [][]byte{event, closeFrame} {
		if _, err := bw.Write(f); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if want := append(bytes.Clone(event), closeFrame...); !bytes.Equal(sock.Bytes(), want) {
		t.Fatalf("socket has %d bytes after the close frame, want the event and the close (%d)", sock.Len(), len(want))
	}
	if err := fw.uncork(); err != nil {
		t.Fatal(err)
	}
}
