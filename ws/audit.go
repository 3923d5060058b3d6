package ws

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// auditLine is one line of the audit log; the fields each event sets are
// listed in the package doc.
type auditLine struct {
	Time         string `json:"time"`
	Event        string `json:"event"`
	ConnectionID string `json:"connectionId,omitempty"`
	UserID       string `json:"userId,omitempty"`
	Role         string `json:"role,omitempty"`
	IP           string `json:"ip,omitempty"`
	Channel      string `json:"channel,omitempty"`
	// Code is the error code (subscribe_denied, a string) or the close code
	// (disconnect, a number).
	Code         any     `json:"code,omitempty"`
	Reason       string  `json:"reason,omitempty"`
	DurationMS   *int64  `json:"duration_ms,omitempty"`
	MessagesSent *uint64 `json:"messages_sent,omitempty"`
}

// auditLog writes audit lines to one writer.
type auditLog struct {
	now func() time.Time

	mu     sync.Mutex // protects enc (and so the writer) and failed
	enc    *json.Encoder
	failed bool
	onFail func(error)
}

func newAuditLog(w io.Writer, now func() time.Time, onFail func(error)) *auditLog {
	if w == nil {
		w = io.Discard
	}
	return &auditLog{now: now, enc: json.NewEncoder(w), onFail: onFail}
}

// write stamps and writes one line. A write error is reported once.
func (a *auditLog) write(l auditLine) {
	l.Time = a.now().UTC().Format(time.RFC3339Nano)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.enc.Encode(l); err != nil && !a.failed {
		a.failed = true
		a.onFail(err)
	}
}

func (a *auditLog) connect(c *conn, userID, role string) {
	a.write(auditLine{Event: "connect", ConnectionID: c.id, UserID: userID, Role: role, IP: c.ip})
}

// authFailed records a refused token; connID is empty before the upgrade.
// reason never holds the token (see redact).
func (a *auditLog) authFailed(connID, ip, reason string) {
	a.write(auditLine{Event: "auth_failed", ConnectionID: connID, IP: ip, Reason: reason})
}

func (a *auditLog) subscribeDenied(c *conn, userID, channel, code string) {
	a.write(auditLine{Event: "subscribe_denied", ConnectionID: c.id, UserID: userID, Channel: channel, Code: code})
}

func (a *auditLog) revoke(c *conn, userID, channel, reason string) {
	a.write(auditLine{Event: "revoke", ConnectionID: c.id, UserID: userID, Channel: channel, Reason: reason})
}

func (a *auditLog) disconnect(c *conn, userID string, code int, reason string, d time.Duration, sent uint64) {
	ms := d.Milliseconds()
	a.write(auditLine{Event: "disconnect", ConnectionID: c.id, UserID: userID, Code: code, Reason: reason,
		DurationMS: &ms, MessagesSent: &sent})
}
