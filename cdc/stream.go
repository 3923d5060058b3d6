package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Defaults for Config fields left zero.
const (
	DefaultStatusInterval = 10 * time.Second
	DefaultMinBackoff     = 250 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
)

// ActorPrefix is the prefix of the transactional logical decoding message
// whose content names the actor of every change in its transaction.
const ActorPrefix = "cdc.actor"

// HeartbeatPrefix is the prefix of the non-transactional message the
// heartbeat writes to move an idle slot.
const HeartbeatPrefix = "cdc.heartbeat"

// Config configures a Stream.
type Config struct {
	// DatabaseURL is a libpq URL or DSN; replication=database is added.
	DatabaseURL string
	// Slot is the logical replication slot to read.
	Slot string
	// Publication names the tables to stream.
	Publication string
	// Temporary reads from a new temporary slot that lives as long as the
	// connection and changes nothing else on the server (Slot is then a
	// prefix for its name).
	Temporary bool
	// Create makes a missing permanent slot; without it a missing slot is
	// ErrSlotMissing.
	Create bool
	// Heartbeat is how long the stream may stay silent before a heartbeat
	// message is written so that the slot can be confirmed further on an
	// idle database. Zero turns it off.
	Heartbeat time.Duration
	// StatusInterval is how often standby status is sent. Default 10s.
	StatusInterval time.Duration
	// Bound, when set, caps the position the Stream confirms; it is the
	// Log's Confirmable.
	Bound func() broadcaster.LSN
	// OnGap, when set, is called (from Run's goroutine) when a session
	// finds the slot further on than what this Stream delivered: it was
	// re-created (after an invalidation or a failover) or another process
	// read it. The changes in between were skipped; at is where the slot
	// resumes. Without OnGap, such a Stream goes on silently.
	OnGap func(at broadcaster.LSN)
	// Elect makes this Stream one leader candidate among several on the
	// slot: it streams only while it holds the slot's reader lock, a
	// PostgreSQL advisory lock taken on its replication connection (so it
	// is released when that connection or its walsender ends), and waits
	// as a standby, connected, until it gets it. A slot further on than
	// this Stream delivered is then normal (another leader read it).
	Elect bool
	// Terms, with Elect, is told when a term as the leader begins (before
	// the slot is streamed) and ends; when it reports that another writer
	// took over, the Stream steps down to standby.
	Terms broadcaster.Terms
	// FailoverTimeout, with Elect, bounds how long a leader that stopped
	// answering keeps the lock: the replication connection asks
	// PostgreSQL for a wal_sender_timeout of four fifths of it, and a
	// standby tries the lock every twentieth of it (at most every 250 ms).
	// Default 10s.
	FailoverTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects.
	// Defaults 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Errors Run returns without retrying.
var (
	ErrSlotMissing        = errors.New("replication slot does not exist")
	ErrPublicationMissing = errors.New("publication does not exist")
	// ErrSlotInUse: another process streams the slot. Without Elect it
	// ends Run when the first session meets it (two readers would fight
	// over the slot); later sessions wait for it to be free.
	ErrSlotInUse = errors.New("replication slot is being read by another process")
)

// DefaultFailoverTimeout is Config.FailoverTimeout's default.
const DefaultFailoverTimeout = 10 * time.Second

// Stream is a Source reading one replication slot.
type Stream struct {
	cfg  Config
	log  *slog.Logger
	dec  *ValueDecoder
	rels map[uint32]*broadcaster.Relation

	// accepted is the end of the last transaction the handler accepted, or
	// the position of the last heartbeat seen between transactions. Only the
	// Run goroutine writes it.
	accepted broadcaster.LSN
	// delivered is set once a session has started: later sessions compare
	// the slot's position with accepted to find skipped changes.
	delivered bool
	// decodeWarned remembers the types whose values failed to decode, so the
	// warning is logged once per type and session.
	decodeWarned map[uint32]bool

	connected  atomic.Bool
	received   atomic.Uint64 // broadcaster.LSN of the last WAL data received
	walEnd     atomic.Uint64 // broadcaster.LSN of the last keepalive's ServerWALEnd
	confirmed  atomic.Uint64 // broadcaster.LSN last sent as flushed
	lastCommit atomic.Int64  // commit time of the last transaction, Unix ns
	lastData   atomic.Int64  // when WAL data last arrived, Unix ns
	reconnects atomic.Int64
	caughtUp   atomic.Bool  // a session has replayed what the slot held back
	slotName   atomic.Value // string: the slot actually read
	// standby is true while an electing Stream waits for the lock; terms
	// counts the terms it led.
	standby atomic.Bool
	terms   atomic.Int64
	// sessions counts the sessions that got as far as the slot.
	sessions int
}

var _ broadcaster.Source = (*Stream)(nil)

// NewStream checks cfg and returns a Stream ready to Run.
func NewStream(cfg Config) (*Stream, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("cdc: database url is empty")
	}
	if !validIdent(cfg.Slot) {
		return nil, fmt.Errorf("cdc: invalid slot name %q", cfg.Slot)
	}
	if !validIdent(cfg.Publication) {
		return nil, fmt.Errorf("cdc: invalid publication name %q", cfg.Publication)
	}
	if _, err := replicationConfig(cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FailoverTimeout <= 0 {
		cfg.FailoverTimeout = DefaultFailoverTimeout
	}
	s := &Stream{cfg: cfg, log: cfg.Logger, dec: NewValueDecoder()}
	s.slotName.Store(cfg.Slot)
	return s, nil
}

// Status is a snapshot of the stream's state.
type Status struct {
	Connected bool
	// CaughtUp reports that the stream has replayed what the slot held
	// back at start: the event log is complete up to the present.
	CaughtUp     bool
	Slot         string
	ReceivedLSN  broadcaster.LSN
	ConfirmedLSN broadcaster.LSN
	LastCommit   time.Time // zero before the first transaction
	Reconnects   int64
	// ServerWALEnd is the position the server reported in its last
	// keepalive: how far its walsender has read the WAL for this slot.
	// Every transaction committed before it has been received, so with
	// ReceivedLSN it says how far the stream has got even while the
	// server skips WAL that is not published.
	ServerWALEnd broadcaster.LSN
	// Standby is true while an electing Stream waits for the reader lock
	// (another process leads); Terms counts the terms it has led.
	Standby bool
	Terms   int64
}

// Status returns the stream's state. Safe from any goroutine.
func (s *Stream) Status() Status {
	st := Status{
		Connected:    s.connected.Load(),
		CaughtUp:     s.caughtUp.Load(),
		Slot:         s.slotName.Load().(string),
		ReceivedLSN:  broadcaster.LSN(s.received.Load()),
		ServerWALEnd: broadcaster.LSN(s.walEnd.Load()),
		ConfirmedLSN: broadcaster.LSN(s.confirmed.Load()),
		Reconnects:   s.reconnects.Load(),
		Standby:      s.standby.Load(),
		Terms:        s.terms.Load(),
	}
	if ns := s.lastCommit.Load(); ns != 0 {
		st.LastCommit = time.Unix(0, ns)
	}
	return st
}

// Run streams until ctx is done, reconnecting with backoff when the
// connection drops. It returns nil when ctx ends, and an error for what
// retrying cannot mend: a missing slot or publication, a refused login, a
// handler error.
func (s *Stream) Run(ctx context.Context, h broadcaster.TxHandler) error {
	wait := s.cfg.MinBackoff
	for {
		progressed, err := s.session(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if s.cfg.Elect && (errors.Is(err, broadcaster.ErrFenced) || errors.Is(err, errDeposed)) {
			// Another reader took over: stand by again, at once.
			s.log.Warn("reader: deposed, another reader took over; standing by", "err", err)
			s.reconnects.Add(1)
			continue
		}
		if permanent(err) || (errors.Is(err, ErrSlotInUse) && !s.cfg.Elect && s.sessions <= 1) {
			return err
		}
		if progressed {
			wait = s.cfg.MinBackoff
		}
		// Full jitter: a fleet of broadcasters does not reconnect in step.
		d := time.Duration(rand.Int64N(int64(wait))) + time.Millisecond
		s.log.Warn("replication stream lost; reconnecting", "err", err, "retry_in", d.Round(time.Millisecond))
		s.reconnects.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		wait = min(wait*2, s.cfg.MaxBackoff)
	}
}

// handlerError marks an error from the TxHandler: the next stage refused,
// and reconnecting would not change that.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// permanent reports whether err will recur however often Run reconnects.
func permanent(err error) bool {
	if err == nil {
		return false
	}
	var he *handlerError
	if errors.As(err, &he) || errors.Is(err, ErrSlotMissing) || errors.Is(err, ErrPublicationMissing) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "28"), // invalid authorization
			pgErr.Code == "3D000", // database does not exist
			pgErr.Code == "42501", // insufficient privilege
			pgErr.Code == "42704", // undefined object (publication)
			pgErr.Code == "55000": // wal_level is not logical
			return true
		}
	}
	return false
}

// replicationConfig parses the database URL and asks for a logical
// replication connection.
func replicationConfig(dbURL string) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("cdc: parse database url: %w", redactErr(err, dbURL))
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "cdc-broadcaster"
	// The walsender prints values with its session's settings: pin the
	// forms the ValueDecoder reads, whatever the server's defaults are.
	cfg.RuntimeParams["DateStyle"] = "ISO, YMD"
	cfg.RuntimeParams["IntervalStyle"] = "iso_8601"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["bytea_output"] = "hex"
	cfg.RuntimeParams["extra_float_digits"] = "3"
	return cfg, nil
}

// redactErr keeps a password in the URL out of error messages.
func redactErr(err error, dbURL string) error {
	u, perr := url.Parse(dbURL)
	if perr != nil || u.User == nil {
		return err
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
	}
	return err
}

// session runs one replication connection. progressed reports whether any
// WAL data arrived, which resets the reconnect backoff.
func (s *Stream) session(ctx context.Context, h broadcaster.TxHandler) (progressed bool, err error) {
	pcfg, err := replicationConfig(s.cfg.DatabaseURL)
	if err != nil {
		return false, err
	}
	if s.cfg.Elect {
		// PostgreSQL ends a walsender whose client has not answered for
		// this long: a frozen leader (paused, cut off) loses the lock
		// with it, in time for a standby to take over.
		pcfg.RuntimeParams["wal_sender_timeout"] = fmt.Sprintf("%dms", (s.cfg.FailoverTimeout * 4 / 5).Milliseconds())
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return false, fmt.Errorf("connect for replication: %w", err)
	}
	defer conn.Close(context.Background())

	if err := s.checkPublication(ctx, conn); err != nil {
		return false, err
	}
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("identify system: %w", err)
	}
	if s.cfg.Elect {
		if err := s.standBy(ctx, conn); err != nil {
			return false, err
		}
		s.terms.Add(1)
		s.log.Info("reader: leading", "slot", s.cfg.Slot, "term", s.terms.Load())
		if t := s.cfg.Terms; t != nil {
			if err := t.Begin(ctx); err != nil {
				return false, fmt.Errorf("begin the term as leader: %w", err)
			}
			defer t.End()
			// Deposed (another reader's marker in the log): end the
			// session, which releases the lock.
			deposed, cancel := context.WithCancelCause(ctx)
			defer cancel(nil)
			go func() {
				select {
				case <-t.Deposed():
					cancel(errDeposed)
				case <-deposed.Done():
				}
			}()
			ctx = deposed
		}
	}
	slot, from, created, err := s.prepareSlot(ctx, conn)
	if err != nil {
		return false, err
	}
	s.sessions++
	if s.cfg.Elect {
		// Other leaders moved the slot on: where it is is where this
		// term starts. Only a slot this term had to create is a gap.
		if created && s.cfg.OnGap != nil {
			s.log.Error("the replication slot was missing and is created anew: changes since the last leader's are lost; clients are told to reset", "slot", slot, "at", from.String())
			s.cfg.OnGap(from)
		}
		s.accepted = from
	} else if !s.cfg.Temporary && s.delivered && from > s.accepted {
		s.log.Error("the replication slot resumes past what was delivered: changes in between were skipped; clients are told to reset",
			"slot", slot, "delivered_to", s.accepted.String(), "slot_at", from.String())
		if s.cfg.OnGap != nil {
			s.cfg.OnGap(from)
		}
		s.accepted = from
	}
	if !s.delivered {
		s.accepted = max(s.accepted, from)
	}
	s.delivered = true
	v2 := serverMajor(conn) >= 14
	proto := "1"
	if v2 {
		proto = "2"
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '" + proto + "'",
			"publication_names '" + s.cfg.Publication + "'",
			"messages 'true'",
		},
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			return false, fmt.Errorf("%w: slot %q (%s)", ErrSlotInUse, slot, pgErr.Message)
		}
		return false, fmt.Errorf("start replication on slot %s: %w", slot, err)
	}
	s.rels = make(map[uint32]*broadcaster.Relation)
	s.decodeWarned = make(map[uint32]bool)
	s.connected.Store(true)
	defer s.connected.Store(false)
	s.lastData.Store(time.Now().UnixNano())
	s.log.Info("streaming", "slot", slot, "publication", s.cfg.Publication, "from", from.String(), "proto_version", proto)

	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	defer stopHeartbeat()
	if s.cfg.Heartbeat > 0 {
		go s.heartbeat(hbCtx)
	}

	r := &receiver{s: s, conn: conn, h: h, v2: v2, target: broadcaster.LSN(sys.XLogPos), started: time.Now()}
	err = r.loop(ctx)
	if cause := context.Cause(ctx); errors.Is(cause, errDeposed) {
		err = cause
	}
	return r.progressed, err
}

// errDeposed ends a leader's session when the log reports that another
// reader took over.
var errDeposed = errors.New("another reader took the log over")

// LockKey is the advisory lock (one bigint, in the slot's database) that
// the leader among a slot's electing readers holds on its replication
// connection.
func LockKey(slot string) int64 {
	h := fnv.New64a()
	h.Write([]byte("cdc-broadcaster reader " + slot))
	return int64(h.Sum64())
}

// standBy waits, on the replication connection, until it holds the slot's
// reader lock.
func (s *Stream) standBy(ctx context.Context, conn *pgconn.PgConn) error {
	s.standby.Store(true)
	defer s.standby.Store(false)
	poll := min(s.cfg.FailoverTimeout/20, 250*time.Millisecond)
	q := fmt.Sprintf("SELECT pg_catalog.pg_try_advisory_lock(%d)", LockKey(s.cfg.Slot))
	for logged := false; ; {
		res, err := conn.Exec(ctx, q).ReadAll()
		if err != nil {
			return fmt.Errorf("try the reader lock: %w", err)
		}
		if len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) == "t" {
			return nil
		}
		if !logged {
			s.log.Info("reader: standing by", "slot", s.cfg.Slot, "failover_timeout", s.cfg.FailoverTimeout.String())
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// checkPublication fails with ErrPublicationMissing when the publication is
// not there: pgoutput itself would only say so at the first change.
func (s *Stream) checkPublication(ctx context.Context, conn *pgconn.PgConn) error {
	rows, err := conn.Exec(ctx, "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = "+quoteLiteral(s.cfg.Publication)).ReadAll()
	if err != nil {
		return fmt.Errorf("look up publication %s: %w", s.cfg.Publication, err)
	}
	if len(rows) == 0 || len(rows[0].Rows) == 0 {
		return fmt.Errorf("%w: %q (run `cdc-broadcaster setup`, or set source.create: true)", ErrPublicationMissing, s.cfg.Publication)
	}
	return nil
}

// prepareSlot returns the slot to read and the position it will resume from,
// creating the slot when it is temporary or missing and creatable.
func (s *Stream) prepareSlot(ctx context.Context, conn *pgconn.PgConn) (slot string, from broadcaster.LSN, created bool, err error) {
	slot, from, err = s.findSlot(ctx, conn, &created)
	return slot, from, created, err
}

// findSlot is prepareSlot; *created is set when it created the slot.
func (s *Stream) findSlot(ctx context.Context, conn *pgconn.PgConn, created *bool) (string, broadcaster.LSN, error) {
	if s.cfg.Temporary {
		name := fmt.Sprintf("%s_tmp_%d_%d", s.cfg.Slot, os.Getpid(), rand.IntN(1_000_000))
		if len(name) > 63 {
			name = name[len(name)-63:]
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
			Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT",
		})
		if err != nil {
			return "", 0, fmt.Errorf("create temporary slot: %w", err)
		}
		s.slotName.Store(name)
		from, _ := broadcaster.ParseLSN(res.ConsistentPoint)
		return name, from, nil
	}
	q := "SELECT plugin, confirmed_flush_lsn, database = current_database() FROM pg_catalog.pg_replication_slots WHERE slot_name = " + quoteLiteral(s.cfg.Slot)
	res, err := conn.Exec(ctx, q).ReadAll()
	if err != nil {
		return "", 0, fmt.Errorf("look up slot %s: %w", s.cfg.Slot, err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		if !s.cfg.Create {
			return "", 0, fmt.Errorf("%w: %q (run `cdc-broadcaster setup`, or set source.create: true)", ErrSlotMissing, s.cfg.Slot)
		}
		res, err := conn.Exec(ctx, CreateSlotSQL(s.cfg.Slot, serverMajor(conn))).ReadAll()
		if err != nil {
			return "", 0, fmt.Errorf("create slot %s: %w", s.cfg.Slot, err)
		}
		if len(res) != 1 || len(res[0].Rows) != 1 {
			return "", 0, fmt.Errorf("create slot %s: no position returned", s.cfg.Slot)
		}
		at := string(res[0].Rows[0][1])
		s.log.Info("created replication slot", "slot", s.cfg.Slot, "at", at)
		from, _ := broadcaster.ParseLSN(at)
		*created = true
		return s.cfg.Slot, from, nil
	}
	row := res[0].Rows[0]
	if string(row[0]) != "pgoutput" {
		return "", 0, fmt.Errorf("%w: slot %q uses plugin %q, not pgoutput", ErrSlotMissing, s.cfg.Slot, row[0])
	}
	if string(row[2]) != "t" {
		return "", 0, fmt.Errorf("%w: slot %q belongs to another database", ErrSlotMissing, s.cfg.Slot)
	}
	from, _ := broadcaster.ParseLSN(string(row[1]))
	return s.cfg.Slot, from, nil
}

// heartbeat writes a non-transactional logical decoding message whenever the
// stream has been silent for a heartbeat interval. The message reaches the
// stream between transactions, and the position it carries can be confirmed:
// every transaction committed before it has been delivered.
func (s *Stream) heartbeat(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(max(s.cfg.Heartbeat/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, s.lastData.Load())) < s.cfg.Heartbeat {
			continue
		}
		if conn == nil {
			c, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
			if err != nil {
				s.log.Warn("heartbeat: connect", "err", redactErr(err, s.cfg.DatabaseURL))
				continue
			}
			conn = c
		}
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_logical_emit_message(false, $1, '')", HeartbeatPrefix); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("heartbeat: emit message", "err", err)
			conn.Close(context.Background())
			conn = nil
			continue
		}
		// Count the heartbeat as activity so the next one waits its turn.
		s.lastData.Store(time.Now().UnixNano())
	}
}

// serverMajor returns the server's major version, e.g. 15.
func serverMajor(conn *pgconn.PgConn) int {
	v := conn.ParameterStatus("server_version")
	major, _, _ := strings.Cut(v, ".")
	major, _, _ = strings.Cut(major, " ")
	n, _ := strconv.Atoi(major)
	return n
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// validIdent reports whether s is a plain lower-case SQL identifier, the only
// kind accepted for slot and publication names.
func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// receiver is the state of one session's receive loop.
type receiver struct {
	s          *Stream
	conn       *pgconn.PgConn
	h          broadcaster.TxHandler
	v2         bool
	progressed bool

	inTx bool
	tx   broadcaster.Tx
	seq  uint32

	// target is the server's WAL position when the session began; once the
	// stream has passed it, what the slot held back has been replayed.
	target   broadcaster.LSN
	started  time.Time
	caughtUp bool
}

func (r *receiver) loop(ctx context.Context) error {
	s := r.s
	// Reads wait at most until the next status update is due, through a
	// deadline on the socket set once per status interval (a context with
	// a deadline per message cost a timer and a registration for each of
	// millions of messages); ending ctx wakes a waiting read the same way.
	// A read that times out leaves the connection usable (pgconn).
	nc := r.conn.Conn()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Now()) })
	defer stop()
	nextStatus := time.Now().Add(s.cfg.StatusInterval)
	if err := nc.SetReadDeadline(nextStatus); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	for {
		if !time.Now().Before(nextStatus) {
			if err := r.sendStatus(ctx); err != nil {
				return err
			}
			nextStatus = time.Now().Add(s.cfg.StatusInterval)
			if err := nc.SetReadDeadline(nextStatus); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
			if ctx.Err() != nil {
				// Ended while the deadline was moved: wake the read.
				_ = nc.SetReadDeadline(time.Now())
			}
		}
		raw, err := r.conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("receive replication message: %w", err)
		}
		switch m := raw.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				return errors.New("empty replication frame")
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if pkm.ReplyRequested {
					if err := r.replyKeepalive(broadcaster.LSN(pkm.ServerWALEnd)); err != nil {
						return err
					}
				}
				if end := uint64(pkm.ServerWALEnd); end > s.walEnd.Load() {
					s.walEnd.Store(end)
				}
				if !r.caughtUp && !r.inTx && broadcaster.LSN(pkm.ServerWALEnd) >= r.target {
					// The walsender sends keepalives when it waits for WAL:
					// everything committed before target has been delivered.
					r.caughtUp = true
					s.caughtUp.Store(true)
					s.log.Info("caught up", "at", r.target.String(), "took", time.Since(r.started).Round(time.Millisecond).String())
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse xlogdata: %w", err)
				}
				r.progressed = true
				s.lastData.Store(time.Now().UnixNano())
				// In logical replication WALStart is the LSN of the record
				// the message comes from.
				if at := uint64(xld.WALStart); at > s.received.Load() {
					s.received.Store(at)
				}
				if err := r.handle(ctx, xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		case *pgproto3.CopyDone:
			return errors.New("server ended the replication stream")
		}
	}
}

// confirmable is the position to report as flushed: the last accepted
// transaction end, capped by the log's bound, never moving backwards.
func (r *receiver) confirmable() broadcaster.LSN {
	s := r.s
	pos := s.accepted
	if s.cfg.Bound != nil {
		if b := s.cfg.Bound(); b < pos {
			pos = b
		}
	}
	if prev := broadcaster.LSN(s.confirmed.Load()); pos < prev {
		pos = prev
	}
	return pos
}

func (r *receiver) sendStatus(ctx context.Context) error {
	pos := r.confirmable()
	if err := sendStandbyStatus(r.conn, pos, pos); err != nil {
		return err
	}
	r.s.confirmed.Store(uint64(pos))
	return nil
}

// replyKeepalive answers a keepalive that asks for a reply. It reports the
// server's sent position as written, and no flush position: it confirms
// nothing. A walsender asked to stop (a fast shutdown of the server) waits
// until its client's flush position, or its write position when the flush
// is invalid, reaches what it sent; the slot is held behind that on purpose
// (Config.Bound), so without this answer the server could not shut down
// while the stream is connected. The periodic status keeps confirming.
func (r *receiver) replyKeepalive(sent broadcaster.LSN) error {
	return sendStandbyStatus(r.conn, sent, 0)
}

// sendStandbyStatus sends a Standby Status Update. pglogrepl's own replaces
// a zero flush position with the write position; here zero stays zero,
// which PostgreSQL reads as "no flush position".
func sendStandbyStatus(conn *pgconn.PgConn, write, flush broadcaster.LSN) error {
	const pgEpochOffset = 946684800 // seconds from 1970-01-01 to 2000-01-01
	now := time.Now()
	micros := (now.Unix()-pgEpochOffset)*1_000_000 + int64(now.Nanosecond()/1000)
	data := make([]byte, 0, 34)
	data = append(data, pglogrepl.StandbyStatusUpdateByteID)
	data = binary.BigEndian.AppendUint64(data, uint64(write))
	data = binary.BigEndian.AppendUint64(data, uint64(flush))
	data = binary.BigEndian.AppendUint64(data, uint64(flush)) // applied
	data = binary.BigEndian.AppendUint64(data, uint64(micros))
	data = append(data, 0) // no reply requested
	buf, err := (&pgproto3.CopyData{Data: data}).Encode(nil)
	if err != nil {
		return fmt.Errorf("encode standby status: %w", err)
	}
	if err := conn.Frontend().SendUnbufferedEncodedCopyData(buf); err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// handle decodes one pgoutput message and drives the handler.
func (r *receiver) handle(ctx context.Context, data []byte) error {
	msg, err := ParseMessage(data, r.v2)
	if err != nil {
		return err
	}
	s := r.s
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if r.inTx {
			return fmt.Errorf("pgoutput: begin of xid %d inside xid %d", m.Xid, r.tx.Xid)
		}
		r.inTx, r.seq = true, 0
		r.tx = broadcaster.Tx{Xid: m.Xid, CommitLSN: broadcaster.LSN(m.FinalLSN), CommitTime: m.CommitTime}
		return r.call(r.h.Begin(ctx, &r.tx))
	case *pglogrepl.CommitMessage:
		if !r.inTx {
			return errors.New("pgoutput: commit outside a transaction")
		}
		r.tx.EndLSN = broadcaster.LSN(m.TransactionEndLSN)
		if err := r.call(r.h.Commit(ctx, &r.tx)); err != nil {
			return err
		}
		r.inTx = false
		s.accepted = max(s.accepted, r.tx.EndLSN)
		s.lastCommit.Store(r.tx.CommitTime.UnixNano())
		return nil
	case *pglogrepl.RelationMessage:
		s.rels[m.RelationID] = relationFrom(m)
		return nil
	case *pglogrepl.TypeMessage:
		s.dec.RegisterType(m.DataType, m.Namespace, m.Name)
		return nil
	case *pglogrepl.InsertMessage:
		return r.change(ctx, broadcaster.OpInsert, m.RelationID, m.Tuple, 0, nil)
	case *pglogrepl.UpdateMessage:
		return r.change(ctx, broadcaster.OpUpdate, m.RelationID, m.NewTuple, m.OldTupleType, m.OldTuple)
	case *pglogrepl.DeleteMessage:
		return r.change(ctx, broadcaster.OpDelete, m.RelationID, nil, m.OldTupleType, m.OldTuple)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if err := r.change(ctx, broadcaster.OpTruncate, id, nil, 0, nil); err != nil {
				return err
			}
		}
		return nil
	case *pglogrepl.LogicalDecodingMessage:
		switch {
		case m.Transactional && r.inTx && m.Prefix == ActorPrefix:
			r.tx.Actor = string(m.Content)
		case !m.Transactional && !r.inTx:
			// Between transactions: everything committed before this message
			// has been delivered and accepted.
			s.accepted = max(s.accepted, broadcaster.LSN(m.LSN))
		}
		return nil
	case *pglogrepl.OriginMessage:
		return nil
	case *pglogrepl.StreamStartMessageV2, *pglogrepl.StreamStopMessageV2,
		*pglogrepl.StreamCommitMessageV2, *pglogrepl.StreamAbortMessageV2:
		return fmt.Errorf("pgoutput: unexpected streaming message %T (streaming is not requested)", m)
	}
	return nil
}

// call wraps a handler error so Run does not retry it.
func (r *receiver) call(err error) error {
	if err != nil {
		return &handlerError{err: fmt.Errorf("handler refused xid %d: %w", r.tx.Xid, err)}
	}
	return nil
}

func (r *receiver) change(ctx context.Context, op broadcaster.Op, relID uint32, newTuple *pglogrepl.TupleData, oldKind uint8, oldTuple *pglogrepl.TupleData) error {
	if !r.inTx {
		return fmt.Errorf("pgoutput: %s outside a transaction", op)
	}
	rel, ok := r.s.rels[relID]
	if !ok {
		return fmt.Errorf("pgoutput: %s on relation %d before its Relation message", op, relID)
	}
	r.seq++
	c := broadcaster.Change{Seq: r.seq, Op: op, Rel: rel}
	var err error
	if newTuple != nil {
		if c.New, err = r.decodeTuple(rel, newTuple); err != nil {
			return err
		}
	}
	if oldTuple != nil && (oldKind == broadcaster.OldKey || oldKind == broadcaster.OldFull) {
		if c.Old, err = r.decodeTuple(rel, oldTuple); err != nil {
			return err
		}
		c.OldKind = oldKind
	}
	return r.call(r.h.Change(ctx, &r.tx, &c))
}

// decodeTuple decodes a tuple's columns. A value that fails to decode is
// kept as its text, with a warning once per type: nothing is dropped.
func (r *receiver) decodeTuple(rel *broadcaster.Relation, t *pglogrepl.TupleData) ([]any, error) {
	if len(t.Columns) != len(rel.Columns) {
		return nil, fmt.Errorf("pgoutput: tuple of %s has %d columns, relation has %d", rel.Table(), len(t.Columns), len(rel.Columns))
	}
	vals := make([]any, len(t.Columns))
	for i, col := range t.Columns {
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			vals[i] = nil
		case pglogrepl.TupleDataTypeToast:
			vals[i] = broadcaster.Unchanged
		case pglogrepl.TupleDataTypeText:
			oid := rel.Columns[i].TypeOID
			v, err := r.s.dec.Decode(oid, col.Data)
			if err != nil {
				if !r.s.decodeWarned[oid] {
					r.s.decodeWarned[oid] = true
					r.s.log.Warn("column value kept as text: it did not decode", "table", rel.Table(), "column", rel.Columns[i].Name, "type", r.s.dec.TypeName(oid), "err", err)
				}
				v = string(col.Data)
			}
			vals[i] = v
		default:
			return nil, fmt.Errorf("pgoutput: column %s.%s has data kind %q, want text", rel.Table(), rel.Columns[i].Name, col.DataType)
		}
	}
	return vals, nil
}

// relationFrom converts a Relation message.
func relationFrom(m *pglogrepl.RelationMessage) *broadcaster.Relation {
	rel := &broadcaster.Relation{
		ID:              m.RelationID,
		Schema:          m.Namespace,
		Name:            m.RelationName,
		ReplicaIdentity: m.ReplicaIdentity,
		Columns:         make([]broadcaster.Column, len(m.Columns)),
	}
	for i, c := range m.Columns {
		rel.Columns[i] = broadcaster.Column{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, Key: c.Flags&1 != 0}
	}
	return rel
}
