package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestBenchFailover measures reader takeovers (issue 13): two serve
// --role all candidates on a three-server NATS cluster, a writer
// committing a row every 5 ms, clients on both nodes. The leader is
// SIGKILLed (10 trials; the killed node comes back as a standby), then
// frozen with SIGSTOP (10 trials; thawed once the other took over, it
// steps down). A takeover lasts from the signal to the first event any
// client receives after the new leader's marker (the first the new leader
// published). With the default
// source.failover_timeout, 10 s.
func TestBenchFailover(t *testing.T) {
	benchOnly(t)
	const trials = 10
	const failover = 10 * time.Second
	type result struct {
		name  string
		times []time.Duration
	}
	var results []result
	for _, mode := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGKILL", syscall.SIGKILL}, {"SIGSTOP", syscall.SIGSTOP}} {
		r := startFailoverRig(t, 2, func(*DB, int) map[string]any {
			return map[string]any{"source.failover_timeout": failover.String()}
		})
		r.startWriting(t)
		js, err := jetstream.New(r.nc.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(context.Background(), "S_"+r.db.Name)
		if err != nil {
			t.Fatal(err)
		}
		var times []time.Duration
		for k := range trials {
			what := fmt.Sprintf("%s %d", mode.name, k+1)
			old := r.waitOneLeader(t, "before "+what)
			r.waitFlowing(t, r.clients, "events before "+what)
			pid := r.nodes[old].proc.Cmd.Process.Pid
			t0 := time.Now()
			if err := syscall.Kill(pid, mode.sig); err != nil {
				t.Fatal(err)
			}
			now := r.waitTakeover(t, old, what)
			// The new leader's marker carries the cursor of the last event
			// before its term.
			var head string
			for deadline := time.Now().Add(takeoverWait); ; time.Sleep(20 * time.Millisecond) {
				m, err := st.GetLastMsgForSubject(context.Background(), "cdc_"+r.db.Name+"._leader")
				if err == nil && m.Header.Get("Cdc-Node") != "" && strings.HasSuffix(m.Header.Get("Cdc-Node"), r.nodes[now].addr[strings.LastIndex(r.nodes[now].addr, ":"):]) {
					head = m.Header.Get("Cdc-Cursor")
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: no marker of node%d in the stream: %v", what, now, err)
				}
			}
			// Every client's first event after the new leader's marker
			// (those of the node that went move to the other, or wait
			// with it): the earliest is the takeover's end.
			first := time.Time{}
			for deadline := time.Now().Add(flowWait); first.IsZero(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no client got an event from the new leader within %v%s", what, flowWait, r.tails())
				}
				for _, c := range r.clients {
					if at, ok := c.firstAfter(head); ok && (first.IsZero() || at.Before(first)) {
						first = at
					}
				}
			}
			// A client that reconnects may still get an earlier one.
			time.Sleep(time.Second)
			for _, c := range r.clients {
				if at, ok := c.firstAfter(head); ok && at.Before(first) {
					first = at
				}
			}
			d := first.Sub(t0)
			times = append(times, d)
			t.Logf("%s: node%d → node%d in %v", what, old, now, d.Round(time.Millisecond))
			switch mode.sig {
			case syscall.SIGKILL:
				r.nodes[old].proc.Kill(t) // waits for the exit
				r.start(t, old, logStandingBy)
			case syscall.SIGSTOP:
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
			}
		}
		r.finish(t)
		results = append(results, result{mode.name, times})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Reader takeover (issue 13)\n\n`TestBenchFailover`. Two `serve --role all` candidates on one slot, a three-server NATS cluster (R3 stream), a row committed every 5 ms, two clients per node. From the signal to the leader to the first event a client receives from the new leader (after its marker). `source.failover_timeout` %v (wal_sender_timeout %v). %d trials each.\n\n", failover, failover*4/5, trials)
	fmt.Fprintf(&b, "| signal | p50 | max | min | within failover_timeout |\n|---|---|---|---|---|\n")
	for _, res := range results {
		s := slices.Clone(res.times)
		slices.Sort(s)
		p50 := s[len(s)/2]
		if len(s)%2 == 0 {
			p50 = (s[len(s)/2-1] + s[len(s)/2]) / 2
		}
		fmt.Fprintf(&b, "| %s | %v | %v | %v | %v |\n", res.name, p50.Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), s[0].Round(time.Millisecond), s[len(s)-1] <= failover)
	}
	b.WriteString("\nAll trials:")
	for _, res := range results {
		var ds []string
		for _, d := range res.times {
			ds = append(ds, d.Round(time.Millisecond).String())
		}
		fmt.Fprintf(&b, " %s [%s];", res.name, strings.Join(ds, " "))
	}
	b.WriteString("\n")
	benchReport(t, "%s", b.String())
}
