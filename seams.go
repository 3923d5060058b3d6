package broadcaster

import (
	"context"
	"errors"
	"math"
	"time"
)

// MaxLSN is the largest LSN: as a bound it means "no bound".
const MaxLSN = LSN(math.MaxUint64)

// Source reads committed transactions from the database and delivers them,
// in commit order, to a TxHandler. Run returns when ctx is done or on an
// error it cannot recover from.
type Source interface {
	Run(ctx context.Context, h TxHandler) error
}

// TxHandler receives the changes of committed transactions, one transaction
// at a time: Begin, Change for each change in order, then Commit. After a
// reconnect the Source may deliver a transaction again from its Begin; the
// handler must give its events the same ids as before.
//
// The Source calls a TxHandler from one goroutine. An error stops the Source.
type TxHandler interface {
	Begin(ctx context.Context, tx *Tx) error
	Change(ctx context.Context, tx *Tx, c *Change) error
	// Commit ends the transaction. When it returns nil the next stage has
	// accepted every event of the transaction.
	Commit(ctx context.Context, tx *Tx) error
}

// Batch is a run of events appended to a Log. A large transaction arrives in
// several batches; the last one has TxEnd set to the transaction's end LSN.
// A transaction that maps to no event still ends with an empty batch.
type Batch struct {
	Events []Event
	TxEnd  LSN
}

// Sink receives mapped events in commit order.
type Sink interface {
	// Append adds the batch's events after every event appended before. An
	// event whose ID is at or before the sink's head was appended already
	// (the Source replays after reconnecting) and is skipped.
	Append(ctx context.Context, b Batch) error
}

// Log is the replayable event log between the mapping and the clients.
type Log interface {
	Sink
	// Confirmable bounds how far the Source may confirm the replication
	// slot: the Source confirms the end of the last transaction the log
	// accepted, but never past Confirmable. A log that must rebuild itself
	// from the slot after a restart holds the bound at the start of what it
	// still serves; one that needs nothing back returns MaxLSN.
	Confirmable() LSN
	// Head returns the cursor of the newest event, or of the end of the newest
	// transaction appended, whichever is later: a valid starting point.
	Head() Cursor
}

// ErrCursorExpired is returned by LogReader.Since for a cursor older than
// the retained log: the events after it are no longer all there, and the
// client must refetch its state.
var ErrCursorExpired = errors.New("cursor is older than the retained log")

// ErrCursorAhead is returned by LogReader.Since for a cursor past anything
// the log has or is rebuilding: it comes from another history (a restored
// or different database) or was made up, and the log cannot place it. It
// wraps ErrCursorExpired: the client is told to refetch, like for a cursor
// too old.
var ErrCursorAhead error = cursorAhead{}

type cursorAhead struct{}

func (cursorAhead) Error() string        { return "cursor is ahead of the log" }
func (cursorAhead) Is(target error) bool { return target == ErrCursorExpired }

// ErrFenced is returned by a Log's Append when another writer has appended
// to the log since this one last did: this writer was deposed and must not
// append again (it steps down).
var ErrFenced = errors.New("the log was appended to by another writer")

// Terms is the log side of a source elected among several readers: the
// source tells the log when its term as the leader begins and ends, and
// learns from it when another reader took over.
type Terms interface {
	// Begin starts a term: the log fences off every earlier writer (their
	// appends fail with ErrFenced from then on) and goes on after its
	// last event. It retries until it succeeds or ctx ends.
	Begin(ctx context.Context) error
	// Deposed is closed once the log finds that another writer took over
	// after this term began.
	Deposed() <-chan struct{}
	// End ends the term: what is not yet durable is dropped (the next
	// leader delivers it again).
	End()
}

// Hold keeps the events after a position readable for one reader, beyond
// the log's retention, while the reader makes progress (LogReader.Hold).
type Hold interface {
	// Move says the reader has read everything up to c: the events up to
	// it may go. A hold never moves back.
	Move(c Cursor)
	// Release ends the hold.
	Release()
}

// LogReader is the read side of the event log, what the gateway serves
// from. It is safe for concurrent use.
type LogReader interface {
	// Head returns the cursor of the newest event, or of the end of the newest
	// transaction appended: a valid starting point for a client.
	Head() Cursor
	// Since returns up to limit retained events after c, oldest first (no
	// limit when limit <= 0), and whether more follow. A cursor older than
	// the retained log gives ErrCursorExpired. The events are shared: treat
	// them as read-only.
	Since(c Cursor, limit int) (events []Event, more bool, err error)
	// Wait returns a channel that is closed once the log holds an event
	// after c: at once if it already does.
	Wait(c Cursor) <-chan struct{}
	// Floor returns the oldest cursor Since accepts: the events after it
	// are all retained.
	Floor() Cursor
	// SinceTime returns the cursor to resume from to get the retained
	// events committed after t; ErrCursorExpired when t is older than the
	// retained log.
	SinceTime(t time.Time) (Cursor, error)
	// Hold keeps the events after c readable for a reader that reads them
	// at its own pace (a connection catching up after a burst), beyond the
	// retention and within the log's budget for held events: past that
	// budget the oldest held events go, and a reader still behind them
	// gets ErrCursorExpired. ErrCursorExpired when c is not retained.
	Hold(c Cursor) (Hold, error)
	// Pin says the gateway's fan-out has read every event up to c and
	// needs the ones after it: until it pins further (or Unpins), appends
	// wait rather than drop them. The fan-out never waits for a client,
	// so a burst larger than the retention slows the intake to the
	// fan-out's pace instead of losing events. A pin never moves back.
	Pin(c Cursor)
	// Unpin removes the pin.
	Unpin()
}
