// Command ceiling is the fan-out ceiling of the benchmarks (BENCHMARKS.md):
// the least a Go program can do to send one pre-encoded WebSocket frame to
// many connections with coder/websocket, the library the gateway uses. It
// accepts connections on /ws (a goroutine reads each, for pings and the
// close handshake), and on POST /fire?count=K writes the frame in -frame K
// times to every connection, one goroutine per connection (with serial=1:
// in turn, from the request's goroutine, before it answers; GET /conns says
// how many it has). Nothing is
// parsed, checked, queued or counted: what the gateway does beyond this is
// its cost.
//
//	ceiling -listen 127.0.0.1:0 -frame frame.json
//
// It prints "listening ADDR" once it accepts connections.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/coder/websocket"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	framePath := flag.String("frame", "", "file holding the frame to send")
	flag.Parse()
	frame, err := os.ReadFile(*framePath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(2)
	}
	var (
		mu    sync.Mutex
		conns []*websocket.Conn
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"cdc.v1"}})
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		// Read (pings, close) until the peer goes.
		_, _, _ = c.Read(context.Background())
		_ = c.CloseNow()
	})
	mux.HandleFunc("/conns", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("/fire", func(w http.ResponseWriter, r *http.Request) {
		count, err := strconv.Atoi(r.URL.Query().Get("count"))
		if err != nil || count < 1 {
			http.Error(w, "count must be a positive integer", http.StatusBadRequest)
			return
		}
		mu.Lock()
		all := conns
		mu.Unlock()
		if r.URL.Query().Get("serial") == "1" {
			// In turn, from this goroutine: no goroutine per connection.
			for range count {
				for _, c := range all {
					_ = c.Write(context.Background(), websocket.MessageText, frame)
				}
			}
			fmt.Fprintf(w, "%d\n", len(all))
			return
		}
		for _, c := range all {
			go func() {
				for range count {
					if c.Write(context.Background(), websocket.MessageText, frame) != nil {
						return
					}
				}
			}()
		}
		fmt.Fprintf(w, "%d\n", len(all))
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}
