package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/treasure-home/cdc-broadcaster/natslog"
)

// Issue 12, operations: check and setup on the bus, and the stats and
// metrics of the nodes of a cluster.

// TestClusterCheckSetup: with log.backend nats and source.create false,
// check reports a missing stream and a stream whose subjects overlap; setup
// --dry-run prints the stream and creates nothing; setup creates it, and
// check is clean after.
func TestClusterCheckSetup(t *testing.T) {
	nc := StartNATSCluster(t, 1)
	db := NewDB(t)
	stream, prefix := "S_"+db.Name, "cdc_"+db.Name
	cfg := WriteConfig(t, db, map[string]any{
		"auth.jwt.secret":         "s",
		"source.create":           false,
		"source.slot":             "s_" + db.Name,
		"log.backend":             "nats",
		"log.nats.urls":           nc.URLs(),
		"log.nats.stream":         stream,
		"log.nats.subject_prefix": prefix,
		"log.nats.replicas":       1,
	})
	js, err := jetstream.New(nc.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	streamExists := func() bool {
		_, err := js.Stream(ctx, stream)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	code, out, stderr := run(t, nil, "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "log.nats.stream: stream "+stream+" does not exist: run `cdc-broadcaster setup`") {
		t.Fatalf("check without the stream: exit %d, want 1 and the missing stream\n%s\n%s", code, out, stderr)
	}

	// Another stream on overlapping subjects.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER_" + db.Name, Subjects: []string{prefix + ".exam.*"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, nil, "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "log.nats.subject_prefix: the subjects of stream OTHER_"+db.Name+" ("+prefix+".exam.*) overlap "+prefix+".>") {
		t.Fatalf("check with an overlapping stream: exit %d\n%s", code, out)
	}
	if err := js.DeleteStream(ctx, "OTHER_"+db.Name); err != nil {
		t.Fatal(err)
	}

	code, out, stderr = run(t, nil, "setup", "--dry-run", "--config", cfg)
	if code != 0 || !strings.Contains(out, "-- create JetStream stream "+stream+": subjects "+prefix+".>, 1 replica(s), file storage") {
		t.Fatalf("setup --dry-run: exit %d\n%s\n%s", code, out, stderr)
	}
	if streamExists() {
		t.Fatal("setup --dry-run created the stream")
	}

	if code, out, stderr = run(t, nil, "setup", "--config", cfg); code != 0 || !strings.Contains(out, "-- done: stream "+stream+" created") {
		t.Fatalf("setup: exit %d\n%s\n%s", code, out, stderr)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("setup did not create the stream: %v", err)
	}
	if c := st.CachedInfo().Config; len(c.Subjects) != 1 || c.Subjects[0] != prefix+".>" || c.Replicas != 1 || c.Storage != jetstream.FileStorage {
		t.Fatalf("stream config %+v", c)
	}
	if code, out, _ = run(t, nil, "setup", "--config", cfg); code != 0 || !strings.Contains(out, "nothing to do: publication, replica identities, slot and stream are in place") {
		t.Fatalf("second setup: exit %d\n%s", code, out)
	}
	code, out, stderr = run(t, nil, "check", "--config", cfg)
	if code != 0 || !strings.HasPrefix(out, "ok:") || !strings.Contains(out, `stream "`+stream+`" on NATS`) {
		t.Fatalf("check after setup: exit %d\n%s\n%s", code, out, stderr)
	}

	// NATS gone: a problem, not a hang.
	nc.Kill(t, 0)
	code, out, _ = run(t, nil, "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "log.nats.urls: cannot reach NATS") {
		t.Fatalf("check with NATS down: exit %d\n%s", code, out)
	}
}

// clusterStats is the part of /api/realtime/stats a cluster adds.
type clusterStats struct {
	Node   string `json:"node"`
	Role   string `json:"role"`
	Reader struct {
		State string `json:"state"`
		Since int64  `json:"since"`
	} `json:"reader"`
	Publish *struct {
		Published uint64 `json:"published"`
		Failures  uint64 `json:"failures"`
	} `json:"publish"`
	Stream *struct {
		Following    bool   `json:"following"`
		Sequence     uint64 `json:"sequence"`
		LastSequence uint64 `json:"lastSequence"`
		Lag          uint64 `json:"lag"`
	} `json:"stream"`
	Replication *json.RawMessage `json:"replication"`
}

// TestClusterStats: a reader node (role all) reports itself the leader
// and its publishes, a gateway-only node reports its reader off and its
// position in the stream; the metrics say the same.
func TestClusterStats(t *testing.T) {
	nc := StartNATSCluster(t, 1)
	db := NewDB(t, WithExampleData())
	start := time.Now()
	nodes := startClusterNodes(t, db, nc, "all", "gateway")
	reader, gateway := nodes[0], nodes[1]
	tok := gwUserToken(t, "2", "admin")
	stats := func(n *clusterNode) clusterStats {
		t.Helper()
		status, body := getStats(t, n.addr, tok)
		if status != http.StatusOK {
			t.Fatalf("%s: stats HTTP %d %s", n.name, status, body)
		}
		var st clusterStats
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%s: %v\n%s", n.name, err, body)
		}
		return st
	}
	for i := 0; i < 3; i++ {
		markAttendance(t, db, 1)
	}
	var rs, gs clusterStats
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, gs = stats(reader), stats(gateway)
		if rs.Publish != nil && rs.Publish.Published >= 3 && gs.Stream != nil && gs.Stream.Sequence >= 3 && gs.Stream.Lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the events did not get through: reader %+v, gateway %+v", rs, gs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, readerPort, _ := strings.Cut(reader.addr, ":")
	_, gatewayPort, _ := strings.Cut(gateway.addr, ":")
	since := time.UnixMilli(rs.Reader.Since)
	switch {
	case !strings.HasSuffix(rs.Node, ":"+readerPort) || !strings.HasSuffix(gs.Node, ":"+gatewayPort):
		t.Errorf("nodes %q and %q; want the listen ports %s and %s", rs.Node, gs.Node, readerPort, gatewayPort)
	case rs.Role != "all" || rs.Reader.State != "leader" || since.Before(start.Add(-time.Second)) || since.After(time.Now()):
		t.Errorf("reader node: role %q, reader %+v (since %v); want all, leader since it started", rs.Role, rs.Reader, since)
	case rs.Publish.Failures != 0 || rs.Replication == nil || rs.Stream == nil || !rs.Stream.Following:
		t.Errorf("reader node: publish %+v, replication %v, stream %+v", rs.Publish, rs.Replication != nil, rs.Stream)
	case gs.Role != "gateway" || gs.Reader.State != "off" || gs.Publish != nil || gs.Replication != nil:
		t.Errorf("gateway node: role %q, reader %+v, publish %v, replication %v; want gateway, off, neither", gs.Role, gs.Reader, gs.Publish != nil, gs.Replication != nil)
	case !gs.Stream.Following || gs.Stream.LastSequence != gs.Stream.Sequence:
		t.Errorf("gateway node: stream %+v; want following, at the end", gs.Stream)
	}

	for _, c := range []struct {
		n    *clusterNode
		want map[string]string // metric -> value (">0": positive)
	}{
		{reader, map[string]string{
			"cdc_broadcaster_reader_leader": "1", "cdc_broadcaster_reader_failovers_total": "0",
			"cdc_broadcaster_stream_publish_errors_total": "0", "cdc_broadcaster_stream_published_total": ">0",
			"cdc_broadcaster_stream_publish_seconds_count": ">0", "cdc_broadcaster_stream_following": "1",
		}},
		{gateway, map[string]string{
			"cdc_broadcaster_reader_leader": "0", "cdc_broadcaster_stream_lag_events": "0",
			"cdc_broadcaster_stream_following": "1", "cdc_broadcaster_stream_published_total": "absent",
		}},
	} {
		body := getMetrics(t, c.n.addr)
		for name, want := range c.want {
			m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
			switch {
			case want == "absent" && m != nil:
				t.Errorf("%s: %s = %s; want absent", c.n.name, name, m[1])
			case want == "absent":
			case m == nil:
				t.Errorf("%s: no %s", c.n.name, name)
			case want == ">0":
				if v, _ := strconv.ParseFloat(m[1], 64); v <= 0 {
					t.Errorf("%s: %s = %s; want > 0", c.n.name, name, m[1])
				}
			case m[1] != want:
				t.Errorf("%s: %s = %s; want %s", c.n.name, name, m[1], want)
			}
		}
	}
}

func getMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(fmt.Sprintf("http://%s/metrics", addr))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestClusterCheckReplicas: on a three-server JetStream cluster, reached
// through one server's URL, a missing stream of three replicas can be
// created and one of five cannot.
func TestClusterCheckReplicas(t *testing.T) {
	nc := StartNATSCluster(t, 3)
	ctx := context.Background()
	o := natslog.Options{URLs: []string{nc.ClientURL(0)}, Stream: "CHECK_R", SubjectPrefix: "check_r", Create: true}
	conn, js, err := natslog.Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The servers' INFO lists the others shortly after the connect.
	deadline := time.Now().Add(10 * time.Second)
	for len(conn.Servers()) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range []struct {
		replicas int
		problem  string
	}{
		{1, ""},
		{3, ""},
		{5, "5 replicas need at least 5 JetStream servers, and cluster"},
	} {
		o.Replicas = c.replicas
		r, err := natslog.Check(ctx, js, o)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case c.problem == "" && len(r.Problems) > 0:
			t.Errorf("R%d: %v", c.replicas, r.Problems)
		case c.problem != "" && (len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Msg, c.problem)):
			t.Errorf("R%d: %v; want %q", c.replicas, r.Problems, c.problem)
		}
	}
	o.Replicas = 3
	if _, err := natslog.EnsureStream(ctx, js, o); err != nil {
		t.Fatalf("R3 judged creatable: %v", err)
	}
}
