package mapping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// DefaultMaxBuffered is how many events of one transaction a Mapper buffers
// before it appends them to the sink ahead of the commit.
const DefaultMaxBuffered = 4096

// warnEvery is how often the same problem (keyed by its rule's key path) is
// logged at most.
const warnEvery = time.Minute

// Options tune a Mapper; zero values mean the defaults.
type Options struct {
	// MaxBuffered is how many events of one transaction are buffered before
	// they are flushed to the sink as a batch without TxEnd, so memory does
	// not grow with the transaction. Default DefaultMaxBuffered (4096).
	MaxBuffered int
	// Logger receives warnings about rules that cannot be applied to a
	// change (a column gone, a `when` that fails). Default slog.Default().
	Logger *slog.Logger
	// Watch names tables (as Relation.Table names them: schema-qualified
	// outside public) whose changes access rules depend on. A transaction
	// that changes one ends with a control record (Event.Recheck) listing
	// those it changed, mapped or not.
	Watch []string
	// Emit says which of the application's logical decoding messages
	// become events (docs/config.md, "Emitted events"). Default: none,
	// and messages with the default prefix are dropped as disabled.
	Emit config.Emit
}

// Requirement is what a mapped table needs from its replica identity.
type Requirement struct {
	// Table is the qualified table name.
	Table string
	// OldColumns are the non-key columns the rules read from the old row
	// (through old. in a `when` or {old.x} in a channel template), sorted.
	// When there are any, the table needs REPLICA IDENTITY FULL; when there
	// are none, the default identity is enough.
	OldColumns []string
	// Key is the key path of the first such use, e.g.
	// "mappings[2].events[0].when"; "" when OldColumns is empty.
	Key string
}

// Mapper maps the changes of committed transactions, and the application's
// emit messages (Message), to events and appends them to a Sink. It
// implements broadcaster.TxHandler.
//
// Events of a transaction are buffered and appended at Commit as one batch
// ending the transaction. A transaction with more than Options.MaxBuffered
// events is appended in several batches; only the last carries TxEnd. The
// transaction's `cdc.actor` message becomes the userId of every event still
// buffered when it is applied (at each flush), so an actor message that
// arrives after a mid-transaction flush applies only to the later events.
//
// The events of one change may share their Data, OldData and Channels
// slices: whoever receives them must treat them as read-only.
//
// A Mapper is used by one goroutine: see the package doc.
type Mapper struct {
	sink   broadcaster.Sink
	maxBuf int
	log    *slog.Logger

	byTable map[string]*tableMapping
	tables  []string
	reqs    []Requirement
	emitted *emitRules

	// The run-time state below belongs to the Source's goroutine.

	// plans caches the column plan of each Relation seen; latest is the
	// newest Relation of each table, so older plans can be dropped.
	plans  map[*broadcaster.Relation]*relPlan
	latest map[string]*broadcaster.Relation
	// buf holds the events of the current transaction not yet appended; a
	// new slice is made after each flush, because the sink keeps it.
	buf     []broadcaster.Event
	nextCap int
	// pos is the position of the last event of the current transaction.
	pos   uint32
	act   activation
	warns map[string]warnState
	// watch is Options.Watch; touched lists the watched tables the
	// current transaction changed.
	watch   map[string]bool
	touched []string
}

var _ broadcaster.TxHandler = (*Mapper)(nil)

// relPlan is where a mapping finds its columns in one Relation.
type relPlan struct {
	m     *tableMapping // nil: the table is not mapped
	table string
	slots []int // load-time column slot → index in the Relation, -1 when gone
}

// warnState is the last time a problem was logged and how often it was
// suppressed since.
type warnState struct {
	at         time.Time
	suppressed int
}

// errNoSink is returned by the TxHandler methods of a Mapper built without
// a sink.
var errNoSink = errors.New("mapping: mapper built without a sink (validation only)")

// New checks rules against the table schemas, keyed by qualified table name
// (broadcaster.QualifiedName), and returns a Mapper that appends events to
// sink. Every problem in the rules is returned at once, as Errors. sink may
// be nil for a Mapper built only to check the rules; its TxHandler methods
// then fail.
func New(rules []config.Mapping, tables map[string]*broadcaster.Relation, sink broadcaster.Sink, opts Options) (*Mapper, error) {
	l := &loader{tables: tables, types: &rowTypes{byName: map[string]*rowType{}}}
	env, err := newCELEnv(l.types)
	if err != nil {
		return nil, fmt.Errorf("mapping: build cel environment: %w", err)
	}
	l.env = env
	loaded := l.load(rules)
	emitted := l.loadEmit(opts.Emit, mappedTypes(loaded))
	if len(l.errs) > 0 {
		return nil, l.errs
	}
	m := &Mapper{
		sink:    sink,
		maxBuf:  opts.MaxBuffered,
		log:     opts.Logger,
		byTable: make(map[string]*tableMapping, len(loaded)),
		plans:   map[*broadcaster.Relation]*relPlan{},
		latest:  map[string]*broadcaster.Relation{},
		warns:   map[string]warnState{},
		watch:   make(map[string]bool, len(opts.Watch)),
		emitted: emitted,
	}
	for _, t := range opts.Watch {
		m.watch[t] = true
	}
	if m.maxBuf <= 0 {
		m.maxBuf = DefaultMaxBuffered
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	for _, tm := range loaded {
		m.byTable[tm.table] = tm
		m.reqs = append(m.reqs, tm.req)
	}
	m.tables = slices.Sorted(maps.Keys(m.byTable))
	slices.SortFunc(m.reqs, func(a, b Requirement) int { return strings.Compare(a.Table, b.Table) })
	return m, nil
}

// Tables returns the qualified names of the mapped tables, sorted.
func (m *Mapper) Tables() []string { return slices.Clone(m.tables) }

// Requirements returns, for each mapped table in name order, what it needs
// from its replica identity.
func (m *Mapper) Requirements() []Requirement {
	out := make([]Requirement, len(m.reqs))
	for i, r := range m.reqs {
		r.OldColumns = slices.Clone(r.OldColumns)
		out[i] = r
	}
	return out
}

// Begin implements broadcaster.TxHandler: it starts a transaction's buffer.
// A transaction delivered again after a reconnect starts over, with the same
// event ids.
func (m *Mapper) Begin(ctx context.Context, tx *broadcaster.Tx) error {
	if m.sink == nil {
		return errNoSink
	}
	m.buf = nil
	m.pos = 0
	m.nextCap = min(16, m.maxBuf)
	m.touched = m.touched[:0]
	return nil
}

// Change implements broadcaster.TxHandler: it maps one change and buffers
// its events, flushing the buffer to the sink when it is full.
func (m *Mapper) Change(ctx context.Context, tx *broadcaster.Tx, c *broadcaster.Change) error {
	if m.sink == nil {
		return errNoSink
	}
	if c == nil || c.Rel == nil {
		return errors.New("mapping: change without relation")
	}
	p := m.plan(c.Rel)
	if m.watch[p.table] && !slices.Contains(m.touched, p.table) {
		m.touched = append(m.touched, p.table)
	}
	if p.m == nil || c.Op < broadcaster.OpInsert || c.Op > broadcaster.OpTruncate {
		return nil
	}
	var out changeOut
	if p.m.rules == nil {
		return m.emit(ctx, tx, c, p, p.m.defaults[c.Op], nil, &out)
	}
	for _, r := range p.m.rules {
		if r.op != c.Op || (r.when != nil && !m.eval(r, c, p)) {
			continue
		}
		if err := m.emit(ctx, tx, c, p, r.typ, r.channels, &out); err != nil {
			return err
		}
		if !r.cont {
			break
		}
	}
	return nil
}

// Commit implements broadcaster.TxHandler: it appends the transaction's
// remaining events, possibly none, as the batch that ends it.
func (m *Mapper) Commit(ctx context.Context, tx *broadcaster.Tx) error {
	if m.sink == nil {
		return errNoSink
	}
	if len(m.touched) > 0 {
		m.pos++
		m.buf = append(m.buf, broadcaster.Event{
			ID:        broadcaster.Cursor{LSN: tx.CommitLSN, Pos: m.pos},
			Timestamp: tx.CommitTime,
			TxID:      tx.Xid,
			Recheck:   slices.Clone(m.touched),
		})
	}
	return m.flush(ctx, tx, tx.EndLSN)
}

// Message implements broadcaster.TxHandler: a message with the emit
// prefix (Options.Emit) becomes an event when it passes the emit rules,
// and is dropped, logged (at most once a minute per reason) and counted
// (EmitDropped) when it does not; other messages are not the Mapper's. A
// transactional message's event takes the next position in its
// transaction, among the row events; a non-transactional one's is
// appended at once, in a batch of its own ending at the message's LSN, with
// the ID Event.NonTransactional describes.
func (m *Mapper) Message(ctx context.Context, tx *broadcaster.Tx, msg *broadcaster.Message) error {
	if m.sink == nil {
		return errNoSink
	}
	r := m.emitted
	if msg == nil || msg.Prefix != r.prefix {
		return nil
	}
	ev, reason, detail := r.check(msg.Content)
	if reason != "" {
		r.dropped[slices.Index(DropReasons[:], reason)].Add(1)
		m.limited("emit dropped "+reason, "emit: message dropped", "reason", reason, "detail", detail,
			"type", ev.Type, "lsn", msg.LSN.String(), "transactional", msg.Transactional)
		return nil
	}
	if tx != nil {
		return m.push(ctx, tx, ev)
	}
	// msg.LSN ends the message's record and may be the next commit's:
	// one less lies inside the record, where no transaction commits.
	ev.ID = broadcaster.Cursor{LSN: msg.LSN - 1, Pos: 1}
	ev.Timestamp = msg.Sent
	b := broadcaster.Batch{Events: []broadcaster.Event{ev}, TxEnd: msg.LSN}
	if err := m.sink.Append(ctx, b); err != nil {
		return fmt.Errorf("mapping: append the event of the message at %s: %w", msg.LSN, err)
	}
	return nil
}

// EmitDropped returns how many emit messages were dropped, by reason
// (every one of DropReasons, zero or not). Safe from any goroutine.
func (m *Mapper) EmitDropped() map[string]uint64 {
	out := make(map[string]uint64, len(DropReasons))
	for i, reason := range DropReasons {
		out[reason] = m.emitted.dropped[i].Load()
	}
	return out
}

// flush appends the buffered events as one batch, applying the
// transaction's actor.
func (m *Mapper) flush(ctx context.Context, tx *broadcaster.Tx, end broadcaster.LSN) error {
	evs := m.buf
	m.buf = nil
	if tx.Actor != "" {
		for i := range evs {
			evs[i].UserID = tx.Actor
		}
	}
	if err := m.sink.Append(ctx, broadcaster.Batch{Events: evs, TxEnd: end}); err != nil {
		return fmt.Errorf("mapping: append %d events of transaction %d: %w", len(evs), tx.Xid, err)
	}
	return nil
}

// plan returns the column plan of rel, building it on first sight.
func (m *Mapper) plan(rel *broadcaster.Relation) *relPlan {
	if p, ok := m.plans[rel]; ok {
		return p
	}
	table := rel.Table()
	p := &relPlan{table: table, m: m.byTable[table]}
	if p.m != nil {
		p.slots = make([]int, len(p.m.cols))
		for slot, name := range p.m.cols {
			p.slots[slot] = rel.ColumnIndex(name)
		}
		var gone []string
		for _, slot := range p.m.used {
			if p.slots[slot] < 0 {
				gone = append(gone, p.m.cols[slot])
			}
		}
		if len(gone) > 0 {
			m.log.Warn("mapping: columns used by the mapping are no longer in the table; what needs them is skipped",
				"key", p.m.key, "table", table, "columns", gone)
		}
	}
	if prev, ok := m.latest[table]; ok && prev != rel {
		delete(m.plans, prev)
	}
	m.latest[table] = rel
	m.plans[rel] = p
	return p
}

// changeOut holds what the events of one change share, computed once.
type changeOut struct {
	rowsDone      bool
	data, oldData broadcaster.Row
	userID        string
	chansDone     bool
	chans         []string // from the mapping's channels
}

// emit buffers one event of change c. ruleChans, when not nil, replaces the
// mapping's channels.
func (m *Mapper) emit(ctx context.Context, tx *broadcaster.Tx, c *broadcaster.Change, p *relPlan, typ string, ruleChans []*template, out *changeOut) error {
	if !out.rowsDone {
		out.data, out.oldData = payloadRows(c, p)
		out.userID = actorText(c, p)
		out.rowsDone = true
	}
	var chans []string
	if ruleChans != nil {
		chans = renderChannels(ruleChans, c, p)
	} else {
		if !out.chansDone {
			out.chans = renderChannels(p.m.channels, c, p)
			out.chansDone = true
		}
		chans = out.chans
	}
	return m.push(ctx, tx, broadcaster.Event{
		Type:     typ,
		Table:    p.table,
		Op:       c.Op,
		Data:     out.data,
		OldData:  out.oldData,
		UserID:   out.userID,
		Channels: chans,
	})
}

// push buffers ev as the transaction's next event, giving it its id, time
// and transaction, and flushes the buffer to the sink first when it is
// full.
func (m *Mapper) push(ctx context.Context, tx *broadcaster.Tx, ev broadcaster.Event) error {
	if len(m.buf) >= m.maxBuf {
		if err := m.flush(ctx, tx, 0); err != nil {
			return err
		}
		m.nextCap = m.maxBuf
	}
	if m.buf == nil {
		m.buf = make([]broadcaster.Event, 0, m.nextCap)
	}
	m.pos++
	ev.ID = broadcaster.Cursor{LSN: tx.CommitLSN, Pos: m.pos}
	ev.Timestamp = tx.CommitTime
	ev.TxID = tx.Xid
	m.buf = append(m.buf, ev)
	return nil
}

// eval runs a rule's `when` on change c. Errors and non-bool results count
// as false, with a rate-limited warning.
func (m *Mapper) eval(r *rule, c *broadcaster.Change, p *relPlan) bool {
	m.act.set(c, p.slots)
	v, _, err := r.when.prg.Eval(&m.act)
	m.act = activation{} // do not keep the change alive
	if err != nil {
		m.warn(r.key+".when", "mapping: when could not be evaluated; counted as false", "table", p.table, "error", err)
		return false
	}
	match, ok := evalBool(v)
	if !ok {
		m.warn(r.key+".when", "mapping: when did not give a bool; counted as false", "table", p.table, "type", v.Type())
	}
	return match
}

// warn logs a problem of the rule at key, at most once per warnEvery.
func (m *Mapper) warn(key, msg string, args ...any) {
	m.limited(key, msg, append([]any{"key", key}, args...)...)
}

// limited logs msg at most once per warnEvery for each id, saying how
// often it was suppressed since.
func (m *Mapper) limited(id, msg string, args ...any) {
	now := time.Now()
	st := m.warns[id]
	if !st.at.IsZero() && now.Sub(st.at) < warnEvery {
		st.suppressed++
		m.warns[id] = st
		return
	}
	if st.suppressed > 0 {
		args = append(args, "suppressed", st.suppressed)
	}
	m.log.Warn(msg, args...)
	m.warns[id] = warnState{at: now}
}
