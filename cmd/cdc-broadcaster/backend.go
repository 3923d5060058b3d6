package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
	"github.com/treasure-home/cdc-broadcaster/natslog"
)

// Roles of `serve --role` (docs/cluster.md).
const (
	roleAll     = "all"
	roleReader  = "reader"
	roleGateway = "gateway"
)

// checkRole refuses a role that is not one, or that the backend cannot run.
func checkRole(role string) error {
	switch role {
	case roleAll, roleReader, roleGateway:
		return nil
	}
	return &usageError{msg: fmt.Sprintf("serve: --role %q: want all, reader or gateway", role)}
}

// eventLog is the event log serve runs on: the memory log, or a JetStream
// stream (the reader's writer and the gateway's follower).
type eventLog struct {
	// sink is where the mapping appends (nil without a reader); bound
	// what the source may confirm.
	sink  broadcaster.Log
	bound func() broadcaster.LSN
	// reader is what the gateway serves from (nil without a gateway);
	// cache the memory behind it, for stats.
	reader broadcaster.LogReader
	cache  *eventlog.Memory
	// memory is the memory log (backend memory only).
	memory *eventlog.Memory
	// follower runs while serve does (backend nats, with a gateway);
	// writer publishes (backend nats, with a reader).
	follower *natslog.Follower
	writer   *natslog.Writer
	closers  []func()
}

func (l *eventLog) close() {
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
}

// openMemoryLog is the one-process log: rebuilt from the slot, which it
// holds at its oldest event. resumeAt is where the slot resumes, horizon
// the WAL's end now.
func openMemoryLog(cfg *config.Config, resumeAt, horizon broadcaster.LSN) *eventLog {
	// It starts where the slot resumes, and a client cursor from before
	// that is expired. Whatever lies before was committed before now;
	// whatever a client holds a cursor of, before the WAL's end now.
	m := eventlog.NewMemory(eventlog.Options{
		MaxEvents:    cfg.Retention.MaxEvents,
		MaxAge:       cfg.Retention.MaxAge,
		MaxHeldBytes: cfg.Retention.MaxHeldBytes,
		Floor:        broadcaster.Cursor{LSN: resumeAt - 1},
		FloorTime:    time.Now(),
		Horizon:      horizon,
	})
	return &eventLog{sink: m, bound: m.Confirmable, reader: m, cache: m, memory: m}
}

// natsOptions are the stream's options from the config.
func natsOptions(cfg *config.Config, log *slog.Logger, name string) natslog.Options {
	n := cfg.Log.NATS
	return natslog.Options{
		URLs: n.URLs, Stream: n.Stream, SubjectPrefix: n.SubjectPrefix, Replicas: n.Replicas,
		MaxMsgs: int64(cfg.Retention.MaxEvents), MaxAge: cfg.Retention.MaxAge,
		Create:          cfg.Source.Create,
		CredentialsFile: n.CredentialsFile, User: n.User, Password: n.Password, Token: n.Token,
		CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile,
		Name: name, Logger: log,
	}
}

// openNATSLog connects to the stream: a writer for the reader role, a
// follower with its cache for the gateway role. observePublish is told the
// writer's publish-to-ack latencies.
func openNATSLog(ctx context.Context, cfg *config.Config, log *slog.Logger, node string, reader, gateway bool, observePublish func(time.Duration)) (*eventLog, error) {
	// The connection's name (NATS's monitoring shows it) and the node a
	// leader marker names.
	o := natsOptions(cfg, log, node)
	o.ObservePublish = observePublish
	nc, js, err := natslog.Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	l := &eventLog{closers: []func(){func() { nc.Close() }}}
	if err := usableStream(ctx, js, o); err != nil {
		l.close()
		return nil, err
	}
	st, err := natslog.EnsureStream(ctx, js, o)
	if err != nil {
		l.close()
		return nil, err
	}
	if reader {
		w, err := natslog.NewWriter(ctx, js, st, o)
		if err != nil {
			l.close()
			return nil, err
		}
		l.closers = append(l.closers, w.Close)
		l.sink, l.bound, l.writer = w, w.Confirmable, w
	}
	if gateway {
		f := natslog.NewFollower(st, cfg.Log.CacheEvents, o)
		if err := f.Prime(ctx); err != nil {
			l.close()
			return nil, err
		}
		l.follower, l.reader, l.cache = f, f, f.Memory
	}
	return l, nil
}

// busCheckTimeout bounds check's and setup's questions to NATS.
const busCheckTimeout = 15 * time.Second

// checkBus runs natslog.Check on the configured stream (backend nats): a
// NATS that cannot be reached is one problem among the others.
func checkBus(ctx context.Context, cfg *config.Config) (natslog.CheckResult, error) {
	ctx, cancel := context.WithTimeout(ctx, busCheckTimeout)
	defer cancel()
	// The connection's own events (a disconnect at Close) are noise here.
	o := natsOptions(cfg, slog.New(slog.DiscardHandler), "cdc-broadcaster check")
	nc, js, err := natslog.Connect(ctx, o)
	if err != nil {
		return natslog.CheckResult{Problems: []natslog.Finding{{Key: "log.nats.urls", Msg: fmt.Sprintf("cannot reach NATS: %v", err)}}}, nil
	}
	defer nc.Close()
	return natslog.Check(ctx, js, o)
}

// usableStream runs check's checks of the bus for serve: a stream that
// cannot be used is a config error (exit 2).
func usableStream(ctx context.Context, js jetstream.JetStream, o natslog.Options) error {
	ctx, cancel := context.WithTimeout(ctx, busCheckTimeout)
	defer cancel()
	r, err := natslog.Check(ctx, js, o)
	if err != nil {
		return err
	}
	if len(r.Problems) == 0 {
		return nil
	}
	msgs := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		msgs[i] = p.String()
	}
	return &configError{errors.New(strings.Join(msgs, "\n"))}
}

// describeStream says what stream setup creates.
func describeStream(c jetstream.StreamConfig) string {
	return fmt.Sprintf("JetStream stream %s: subjects %s, %d replica(s), %s storage, at most %d messages and %s, duplicate window %s",
		c.Name, strings.Join(c.Subjects, ", "), c.Replicas, strings.ToLower(c.Storage.String()), c.MaxMsgs, c.MaxAge, c.Duplicates)
}

// setupStream creates the configured stream when it is missing (backend
// nats), printing what it does (only printing with dryRun). done reports
// whether there was anything to do.
func setupStream(ctx context.Context, cfg *config.Config, out io.Writer, dryRun bool) (done bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, busCheckTimeout)
	defer cancel()
	o := natsOptions(cfg, slog.New(slog.DiscardHandler), "cdc-broadcaster setup")
	o.Create = true
	nc, js, err := natslog.Connect(ctx, o)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	sc := natslog.StreamConfig(o)
	switch _, err := js.Stream(ctx, sc.Name); {
	case err == nil:
		return false, nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return false, fmt.Errorf("look up stream %s: %w", sc.Name, err)
	}
	fmt.Fprintf(out, "-- create %s\n", describeStream(sc))
	if dryRun {
		return true, nil
	}
	if _, err := natslog.EnsureStream(ctx, js, o); err != nil {
		return false, err
	}
	return true, nil
}
