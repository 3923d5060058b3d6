package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// selftestWait bounds each phase of the NATS cluster self-tests.
const selftestWait = 20 * time.Second

// TestNATSClusterSelfTest checks the helper and the engine it starts: an R3
// stream keeps every message, once and in order, across the crash of its
// leader, and the crashed server catches up when it comes back.
func TestNATSClusterSelfTest(t *testing.T) {
	start := time.Now()
	c := StartNATSCluster(t, 3)
	t.Logf("3 servers ready in %v: %s", time.Since(start).Round(time.Millisecond), c.URL())

	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	var s jetstream.Stream
	retry(t, "create the stream", func(ctx context.Context) (err error) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:     "SELFTEST",
			Subjects: []string{"selftest.>"},
			Replicas: 3,
			Storage:  jetstream.FileStorage,
		})
		return err
	})
	publishSeq(t, js, 1, 100)

	var info *jetstream.StreamInfo
	retry(t, "stream info", func(ctx context.Context) (err error) {
		info, err = s.Info(ctx)
		return err
	})
	victim := c.ServerIndex(t, info.Cluster.Leader)
	killed := time.Now()
	c.Kill(t, victim)
	publishSeq(t, js, 101, 200)
	t.Logf("killed the stream leader %s; 100 more published in %v", c.ServerName(victim),
		time.Since(killed).Round(time.Millisecond))

	readAll(t, s, 200)

	var ack *jetstream.PubAck
	retry(t, "publish a duplicate", func(ctx context.Context) (err error) {
		ack, err = js.Publish(ctx, "selftest.x", []byte("again"), jetstream.WithMsgID(msgID(7)))
		return err
	})
	if !ack.Duplicate || ack.Sequence != 7 {
		t.Fatalf("publishing id %s again: ack %+v, want a duplicate of sequence 7", msgID(7), ack)
	}

	c.Start(t, victim)
	c.WaitReady(t)
	waitReplicasCurrent(t, s, 3)
	t.Logf("whole test in %v", time.Since(start).Round(time.Millisecond))
}

// TestNATSClusterSingle checks a cluster of one: a standalone JetStream
// server that survives a restart with its store.
func TestNATSClusterSingle(t *testing.T) {
	c := StartNATSCluster(t, 1)
	if c.Name != "" || c.Size() != 1 || c.URL() != c.ClientURL(0) {
		t.Fatalf("cluster of one: name %q, size %d, URL %s", c.Name, c.Size(), c.URL())
	}
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	var s jetstream.Stream
	retry(t, "create the stream", func(ctx context.Context) (err error) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "SELFTEST", Subjects: []string{"selftest.>"}})
		return err
	})
	publishSeq(t, js, 1, 10)
	c.Stop(t, 0)
	if c.Running(0) {
		t.Fatal("server still running after Stop")
	}
	c.Start(t, 0)
	c.WaitReady(t)
	publishSeq(t, js, 11, 20)
	readAll(t, s, 20)
}

// retry calls f, each time with a 2 s deadline, until it returns nil, and
// fails the test if it has not within selftestWait. A JetStream API request
// sent while a leader is being elected may go unanswered.
func retry(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(selftestWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, selftestWait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func msgID(i int) string { return fmt.Sprintf("id-%d", i) }

// publishSeq publishes messages from..to with ids msgID(i), each retried
// until acknowledged (a leader election refuses or drops some attempts), and
// fails unless message i lands at stream sequence i.
func publishSeq(t *testing.T, js jetstream.JetStream, from, to int) {
	t.Helper()
	deadline := time.Now().Add(selftestWait)
	retries := 0
	for i := from; i <= to; i++ {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			ack, err := js.Publish(ctx, "selftest.x", fmt.Appendf(nil, "msg-%d", i), jetstream.WithMsgID(msgID(i)))
			cancel()
			if err == nil {
				if ack.Sequence != uint64(i) {
					t.Fatalf("message %d stored at sequence %d (ack %+v)", i, ack.Sequence, ack)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish message %d: not acknowledged within %v after %d retries: %v", i, selftestWait, retries, err)
			}
			retries++
			time.Sleep(100 * time.Millisecond)
		}
	}
	if retries > 0 {
		t.Logf("published %d..%d with %d retries", from, to, retries)
	}
}

// readAll reads the stream with an ordered consumer and fails unless it
// holds exactly messages 1..n in order.
func readAll(t *testing.T, s jetstream.Stream, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), selftestWait)
	defer cancel()
	var cons jetstream.Consumer
	retry(t, "create an ordered consumer", func(ctx context.Context) (err error) {
		cons, err = s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		return err
	})
	got := 0
	for got < n {
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d messages within %v", got, n, selftestWait)
		}
		batch, err := cons.Fetch(n-got, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if meta.Sequence.Stream != uint64(got) || string(m.Data()) != fmt.Sprintf("msg-%d", got) ||
				m.Headers().Get(jetstream.MsgIDHeader) != msgID(got) {
				t.Fatalf("message %d: sequence %d, data %q, id %q", got, meta.Sequence.Stream, m.Data(),
					m.Headers().Get(jetstream.MsgIDHeader))
			}
		}
		if err := batch.Error(); err != nil && !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("fetch: %v", err)
		}
	}
	var info *jetstream.StreamInfo
	retry(t, "stream info", func(ctx context.Context) (err error) {
		info, err = s.Info(ctx)
		return err
	})
	if info.State.Msgs != uint64(n) || info.State.LastSeq != uint64(n) {
		t.Fatalf("stream holds %d messages up to sequence %d, want %d", info.State.Msgs, info.State.LastSeq, n)
	}
}

// waitReplicasCurrent waits until the stream has a leader and replicas-1
// followers, all current.
func waitReplicasCurrent(t *testing.T, s jetstream.Stream, replicas int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), selftestWait)
	defer cancel()
	last := "no stream info yet"
	for {
		info, err := s.Info(ctx)
		if err == nil && info.Cluster != nil {
			current := 0
			var peers []string
			for _, p := range info.Cluster.Replicas {
				peers = append(peers, fmt.Sprintf("%s(current %v, offline %v, lag %d)", p.Name, p.Current, p.Offline, p.Lag))
				if p.Current && !p.Offline {
					current++
				}
			}
			if info.Cluster.Leader != "" && current == replicas-1 {
				return
			}
			last = fmt.Sprintf("leader %q, replicas %s", info.Cluster.Leader, strings.Join(peers, ", "))
		} else if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream %s: not %d current replicas within %v: %s", s.CachedInfo().Config.Name,
				replicas, selftestWait, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
