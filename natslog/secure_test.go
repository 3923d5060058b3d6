package natslog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/treasure-home/cdc-broadcaster/internal/testpki"
)

// Issue 12: Connect's credentials and TLS options against a real
// nats-server that requires them. A .creds file (operator mode, JWTs) is
// not tested here: making one needs nats-io/jwt, which is no dependency.

// startSecureServer runs nats-server with JetStream and the config block
// extra (authorization, tls), on a random loopback port, and waits until its
// port accepts connections. It returns the nats:// URL.
func startSecureServer(t *testing.T, extra string) string {
	t.Helper()
	bin, port := serverBinAndPort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats-server.conf")
	body := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream {\n  store_dir: %q\n}\n%s\n", port, filepath.Join(dir, "store"), extra)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("nats-server log:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return fmt.Sprintf("nats://127.0.0.1:%d", port)
		}
		select {
		case <-done:
			t.Fatalf("nats-server exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not listen: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connectBound is Connect bounded: it fails the test if Connect has not
// returned within 15 s (a Connect that hangs on bad credentials is a bug).
func connectBound(t *testing.T, o Options) (*nats.Conn, jetstream.JetStream, error) {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(newTestWriter(t), nil))
	type res struct {
		nc  *nats.Conn
		js  jetstream.JetStream
		err error
	}
	ch := make(chan res, 1)
	start := time.Now()
	go func() {
		nc, js, err := Connect(context.Background(), o)
		ch <- res{nc, js, err}
	}()
	select {
	case r := <-ch:
		t.Logf("Connect returned in %v: %v", time.Since(start).Round(time.Millisecond), r.err)
		if r.nc != nil {
			t.Cleanup(r.nc.Close)
		}
		return r.nc, r.js, r.err
	case <-time.After(15 * time.Second):
		t.Fatal("Connect did not return within 15s")
		return nil, nil, nil
	}
}

// mustWork connects with o, creates a stream and publishes to it.
func mustWork(t *testing.T, o Options) {
	t.Helper()
	o.Create = true
	o.Stream = "SECURE"
	o.SubjectPrefix = "sec"
	_, js, err := connectBound(t, o)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := EnsureStream(ctx, js, o)
	if err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
	ack, err := js.Publish(ctx, "sec.d.a", []byte("hello"))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if ack.Stream != "SECURE" || ack.Sequence != 1 {
		t.Fatalf("ack %+v, want stream SECURE seq 1", ack)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	// The next subtest on this server starts afresh.
	if err := js.DeleteStream(ctx, "SECURE"); err != nil {
		t.Fatal(err)
	}
}

// mustFail connects with o and wants an error that wraps target (when not
// nil) and mentions each of words.
func mustFail(t *testing.T, o Options, target error, words ...string) {
	t.Helper()
	nc, _, err := connectBound(t, o)
	if err == nil {
		nc.Close()
		t.Fatal("Connect succeeded, want an error")
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %q does not wrap %q", err, target)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestSecureUserPassword(t *testing.T) {
	url := startSecureServer(t, `authorization { user: cdc, password: "pw-right" }`)
	o := Options{URLs: []string{url}}
	t.Run("Right", func(t *testing.T) {
		o := o
		o.User, o.Password = "cdc", "pw-right"
		mustWork(t, o)
	})
	t.Run("WrongPassword", func(t *testing.T) {
		o := o
		o.User, o.Password = "cdc", "pw-wrong"
		mustFail(t, o, nats.ErrAuthorization, "Authorization Violation", "log.nats.")
	})
	t.Run("WrongUser", func(t *testing.T) {
		o := o
		o.User, o.Password = "other", "pw-right"
		mustFail(t, o, nats.ErrAuthorization, "Authorization Violation")
	})
	t.Run("Missing", func(t *testing.T) {
		mustFail(t, o, nats.ErrAuthorization, "Authorization Violation")
	})
	t.Run("TokenInstead", func(t *testing.T) {
		o := o
		o.Token = "pw-right"
		mustFail(t, o, nats.ErrAuthorization, "Authorization Violation")
	})
}

func TestSecureToken(t *testing.T) {
	url := startSecureServer(t, `authorization { token: "tok-right" }`)
	o := Options{URLs: []string{url}}
	t.Run("Right", func(t *testing.T) {
		o := o
		o.Token = "tok-right"
		mustWork(t, o)
	})
	t.Run("Wrong", func(t *testing.T) {
		o := o
		o.Token = "tok-wrong"
		mustFail(t, o, nats.ErrAuthorization, "Authorization Violation")
	})
	t.Run("Missing", func(t *testing.T) {
		mustFail(t, o, nats.ErrAuthorization, "Authorization Violation")
	})
}

func TestSecureTLS(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Issue(t, "server", false)
	url := startSecureServer(t, fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  timeout: 2\n}", cert, key))
	t.Run("CA", func(t *testing.T) {
		mustWork(t, Options{URLs: []string{url}, CAFile: pki.CAFile})
	})
	t.Run("CATLSScheme", func(t *testing.T) {
		mustWork(t, Options{URLs: []string{strings.Replace(url, "nats://", "tls://", 1)}, CAFile: pki.CAFile})
	})
	t.Run("NoCA", func(t *testing.T) {
		// The system roots do not know the test CA.
		mustFail(t, Options{URLs: []string{url}}, nil, "certificate", "log.nats.tls.ca_file")
	})
	t.Run("OtherCA", func(t *testing.T) {
		other := testpki.New(t)
		mustFail(t, Options{URLs: []string{url}, CAFile: other.CAFile}, nil, "certificate", "log.nats.tls.ca_file")
	})
	t.Run("MissingCAFile", func(t *testing.T) {
		mustFail(t, Options{URLs: []string{url}, CAFile: filepath.Join(t.TempDir(), "nope.pem")}, nil, "nope.pem")
	})
}

func TestSecureTLSClientCert(t *testing.T) {
	pki := testpki.New(t)
	cert, key := pki.Issue(t, "server", false)
	ccert, ckey := pki.Issue(t, "client", true)
	url := startSecureServer(t, fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n  timeout: 2\n}", cert, key, pki.CAFile))
	t.Run("ClientCert", func(t *testing.T) {
		mustWork(t, Options{URLs: []string{url}, CAFile: pki.CAFile, CertFile: ccert, KeyFile: ckey})
	})
	t.Run("NoClientCert", func(t *testing.T) {
		// The server closes the connection after the handshake, or the
		// handshake fails: either way an error naming TLS.
		mustFail(t, Options{URLs: []string{url}, CAFile: pki.CAFile}, nil, "log.nats.tls.")
	})
	t.Run("ClientCertOfOtherCA", func(t *testing.T) {
		other := testpki.New(t)
		oc, ok := other.Issue(t, "client", true)
		mustFail(t, Options{URLs: []string{url}, CAFile: pki.CAFile, CertFile: oc, KeyFile: ok}, nil, "log.nats.tls.")
	})
	t.Run("CertWithoutKey", func(t *testing.T) {
		mustFail(t, Options{URLs: []string{url}, CAFile: pki.CAFile, CertFile: ccert}, nil, "key")
	})
}

// TestSecureTLSWanted: with a CA file set, a server that offers no TLS is
// refused rather than talked to in the clear.
func TestSecureTLSWanted(t *testing.T) {
	pki := testpki.New(t)
	url := startSecureServer(t, "")
	mustFail(t, Options{URLs: []string{url}, CAFile: pki.CAFile}, nats.ErrSecureConnWanted, "server does not offer it")
	mustFail(t, Options{URLs: []string{strings.Replace(url, "nats://", "tls://", 1)}}, nats.ErrSecureConnWanted, "server does not offer it")
}
