package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/treasure-home/cdc-broadcaster/internal/testpki"
)

// Issue 12: serve on a NATS server that requires a user and password and
// TLS, configured through the log.nats keys, the password from
// CDC_LOG_NATS_PASSWORD.

const (
	secureNATSUser     = "cdc"
	secureNATSPassword = "s3cret-nats-pw"
)

// secureNATS is one nats-server with JetStream that requires TLS (a
// certificate for 127.0.0.1 signed by a CA made for the test) and a user
// and password.
type secureNATS struct {
	url    string // nats://127.0.0.1:<port>
	caFile string // the CA that signed the server's certificate
}

// startSecureNATS makes the CA and the server certificate (ECDSA P-256,
// valid 1h) and starts the server; it is killed when the test ends.
func startSecureNATS(t *testing.T) *secureNATS {
	t.Helper()
	bin, err := natsServerBin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pki := testpki.New(t)
	certFile, keyFile := pki.Issue(t, "nats", false)
	s := &secureNATS{caFile: pki.CAFile}
	port := FreePort(t)
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	conf := filepath.Join(dir, "nats-server.conf")
	body := fmt.Sprintf(`listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_mem: 64MB
  max_file: 256MB
}
authorization {
  user: %s
  password: %q
}
tls {
  cert_file: %q
  key_file: %q
  timeout: 2
}
`, port, filepath.Join(dir, "store"), secureNATSUser, secureNATSPassword, certFile, keyFile)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProgram(t, bin, nil, "-c", conf)
	p.WaitStderr(t, "Server is ready", natsReadyTimeout)
	return s
}

// secureConfig is a role-all config on s for db: user and CA from the
// file, the password left to the environment.
func secureConfig(t *testing.T, db *DB, s *secureNATS, addr string, edits map[string]any) string {
	t.Helper()
	all := map[string]any{
		"source.slot":            "s_" + db.Name,
		"source.status_interval": "200ms",
		"server.listen":          addr,
		"auth.jwt.secret":        gwSecret,
		"limits.max_connections_per_ip_per_minute": 100000,
		"limits.max_connections_per_user":          1000,
		"log.backend":                              "nats",
		"log.nats.urls":                            []string{s.url},
		"log.nats.stream":                          "S_" + db.Name,
		"log.nats.subject_prefix":                  "cdc_" + db.Name,
		"log.nats.replicas":                        1,
		"log.nats.user":                            secureNATSUser,
		"log.nats.tls.ca_file":                     s.caFile,
		"log.cache_events":                         50,
	}
	for k, v := range edits {
		all[k] = v
	}
	return WriteConfig(t, db, all)
}

// refusedServe runs serve with cfg and env and wants it to exit 1 within
// 30 s with stderr naming each of words.
func refusedServe(t *testing.T, cfg string, env []string, words ...string) {
	t.Helper()
	p := Start(t, env, "serve", "--config", cfg, "--role", "all")
	if code := p.Wait(t, 30*time.Second); code != 1 {
		t.Fatalf("serve exited %d, want 1; stderr:\n%s", code, p.stderrTail())
	}
	stderr := p.Stderr()
	for _, w := range words {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, secureNATSPassword) {
		t.Errorf("stderr shows the password:\n%s", stderr)
	}
}

// TestClusterSecure: serve --role all on a NATS server that requires TLS
// and a user and password, configured with log.nats.user,
// log.nats.tls.ca_file and CDC_LOG_NATS_PASSWORD, serves an event to a
// WebSocket client; with a wrong or missing password, or without the CA,
// it refuses to start (exit 1) with a message naming the keys to check,
// and leaves no replication slot behind.
func TestClusterSecure(t *testing.T) {
	s := startSecureNATS(t)

	refused := []struct {
		name  string
		edits map[string]any
		env   []string
		words []string
	}{
		{"WrongPassword", nil, []string{"CDC_LOG_NATS_PASSWORD=wrong"},
			[]string{"Authorization Violation", "log.nats.password", "CDC_LOG_NATS_PASSWORD"}},
		{"NoPassword", nil, nil,
			[]string{"Authorization Violation", "log.nats.password"}},
		{"NoCA", map[string]any{"log.nats.tls.ca_file": ""}, []string{"CDC_LOG_NATS_PASSWORD=" + secureNATSPassword},
			[]string{"certificate", "log.nats.tls.ca_file"}},
	}
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			db := NewDB(t, WithExampleData())
			cfg := secureConfig(t, db, s, fmt.Sprintf("127.0.0.1:%d", FreePort(t)), r.edits)
			refusedServe(t, cfg, r.env, r.words...)
			if n := db.QueryInt(t, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", "s_"+db.Name); n != 0 {
				t.Errorf("serve refused to start but left replication slot s_%s behind", db.Name)
			}
		})
	}

	t.Run("Serve", func(t *testing.T) {
		db := NewDB(t, WithExampleData())
		n := &clusterNode{name: "secure-all", role: "all", addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
		n.wsURL = "ws://" + n.addr + "/ws"
		n.cfg = secureConfig(t, db, s, n.addr, nil)
		n.proc = Start(t, []string{"CDC_LOG_NATS_PASSWORD=" + secureNATSPassword}, "serve", "--config", n.cfg, "--role", n.role)
		n.proc.WaitStderr(t, `"msg":"serving"`, readyTimeout)
		waitReadyz(t, n)
		c := gwConnect(t, "admin", n.wsURL, gwViaHeader, gwUserToken(t, "2", "admin"))
		c.mustSubscribe("table:attendance")
		id := markAttendance(t, db, 2)
		if got := idOf(c.nextEvent("attendance.marked")); got != id {
			t.Fatalf("event of row %d, want %d", got, id)
		}
		if strings.Contains(n.proc.Stderr(), secureNATSPassword) {
			t.Errorf("serve's log shows the password")
		}
	})
}
