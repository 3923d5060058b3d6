package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/acl"
)

// /api/realtime/sync limits.
const (
	// DefaultSyncLimit is how many events one /sync answer holds when the
	// request does not say; MaxSyncLimit is the most it may ask for.
	DefaultSyncLimit = 500
	MaxSyncLimit     = 5000
	// MaxSyncWait is the longest long-poll.
	MaxSyncWait = 30 * time.Second
	// syncScan is how many log events one /sync reads at most before it
	// answers (with more: true) even when few of them matched.
	syncScan = 20000
)

// syncEvent is one entry of a /sync answer.
type syncEvent struct {
	Channels []string        `json:"channels"`
	Event    json.RawMessage `json:"event"`
}

// syncAnswer is the body of a /sync answer.
type syncAnswer struct {
	Events []syncEvent        `json:"events"`
	Cursor broadcaster.Cursor `json:"cursor"`
	More   bool               `json:"more"`
}

// syncError is the body of a /sync error.
type syncError struct {
	Error   string `json:"error"`
	Channel string `json:"channel,omitempty"`
	Message string `json:"message,omitempty"`
}

// syncRequest is a parsed /sync query.
type syncRequest struct {
	since    broadcaster.Cursor
	sinceMS  *time.Time
	channels []string
	limit    int
	wait     time.Duration
}

// parseSync reads the query of a /sync request. Errors are for a 400.
func parseSync(r *http.Request) (*syncRequest, error) {
	q := r.URL.Query()
	req := &syncRequest{limit: DefaultSyncLimit}
	if s := q.Get("since"); s != "" {
		if isDigits(s) {
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, errors.New("since: not a Unix time in milliseconds")
			}
			t := time.UnixMilli(ms)
			req.sinceMS = &t
		} else {
			c, err := broadcaster.ParseCursor(s)
			if err != nil {
				return nil, errors.New("since: neither a cursor nor Unix milliseconds")
			}
			req.since = c
		}
	}
	seen := map[string]bool{}
	add := func(name string) {
		if name = strings.TrimSpace(name); name != "" && !seen[name] {
			seen[name] = true
			req.channels = append(req.channels, name)
		}
	}
	for _, v := range q["channels"] {
		for _, name := range strings.Split(v, ",") {
			add(name)
		}
	}
	for _, v := range q["tables"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				add("table:" + t)
			}
		}
	}
	if len(req.channels) == 0 {
		return nil, errors.New("name at least one channel (channels=) or table (tables=)")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxSyncLimit {
			return nil, errors.New("limit: a whole number from 1 to " + strconv.Itoa(MaxSyncLimit))
		}
		req.limit = n
	}
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			secs, serr := strconv.Atoi(s)
			if serr != nil {
				return nil, errors.New("wait: a duration such as 25s")
			}
			// Range-checked before converting: wait=18446744074 overflowed
			// time.Duration to 0.29s and was accepted (FuzzParseSync seed).
			if secs < 0 || secs > int(MaxSyncWait/time.Second) {
				return nil, errors.New("wait: from 0 to 30s")
			}
			d = time.Duration(secs) * time.Second
		}
		if d < 0 || d > MaxSyncWait {
			return nil, errors.New("wait: from 0 to 30s")
		}
		req.wait = d
	}
	return req, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// serveSync is GET /api/realtime/sync: the events after a cursor (or a Unix
// time) on channels the caller may read, paged, with long-polling. It is the
// polling fallback and the re-sync after a reconnect.
func (s *Server) serveSync(w http.ResponseWriter, r *http.Request) {
	if hasQueryToken(r) {
		// Whatever server.allow_query_token says: a poller can always set
		// a header, and a token in a URL lands in proxy logs.
		s.syncOutcome("unauthenticated")
		writeJSON(w, http.StatusUnauthorized, syncError{Error: "unauthenticated",
			Message: "a token in the URL (access_token) is not accepted here: send Authorization: Bearer <token>"})
		return
	}
	token, ok, err := requestToken(r)
	if err != nil || !ok {
		s.syncOutcome("unauthenticated")
		writeJSON(w, http.StatusUnauthorized, syncError{Error: "unauthenticated", Message: "send Authorization: Bearer <token>"})
		return
	}
	claims, err := s.verify(token)
	if err != nil {
		s.authFailed("", s.clientIP(r), redact(err.Error(), token))
		s.syncOutcome("unauthenticated")
		writeJSON(w, http.StatusUnauthorized, syncError{Error: "unauthenticated", Message: redact(err.Error(), token)})
		return
	}
	ip := s.clientIP(r)
	switch s.polls.acquire(claims.UserID, ip) {
	case "user":
		s.syncBusy(w, fmt.Sprintf("more than %d /sync requests at once for this user (limits.max_sync_polls_per_user)", s.limits.MaxSyncPollsPerUser))
		return
	case "ip":
		s.syncBusy(w, fmt.Sprintf("more than %d /sync requests at once from this address (limits.max_sync_polls_per_ip)", s.limits.MaxSyncPollsPerIP))
		return
	}
	defer s.polls.release(claims.UserID, ip)
	req, err := parseSync(r)
	if err != nil {
		s.syncOutcome("bad_request")
		writeJSON(w, http.StatusBadRequest, syncError{Error: codeBadRequest, Message: err.Error()})
		return
	}
	if n := len(req.channels); n > s.limits.MaxSubscriptionsPerConn {
		// Each channel costs an access check: as many as a connection may
		// hold, no more.
		s.syncOutcome("bad_request")
		writeJSON(w, http.StatusBadRequest, syncError{Error: codeTooManySubs,
			Message: fmt.Sprintf("name at most %d channels (limits.max_subscriptions_per_connection), not %d", s.limits.MaxSubscriptionsPerConn, n)})
		return
	}
	scope := syncScope{ctx: r.Context(), claims: claims, want: make(map[string]*acl.Channel, len(req.channels))}
	for _, name := range req.channels {
		ch, err := s.access.Resolve(name)
		switch {
		case errors.Is(err, acl.ErrUnknownChannel):
			s.syncOutcome("bad_request")
			writeJSON(w, http.StatusBadRequest, syncError{Error: codeUnknownChannel, Channel: echoChannel(name, codeUnknownChannel), Message: "no channel pattern matches it"})
			return
		case err != nil:
			s.syncOutcome("bad_request")
			writeJSON(w, http.StatusBadRequest, syncError{Error: codeInvalidChannel, Channel: echoChannel(name, codeInvalidChannel), Message: truncate(err.Error(), 200)})
			return
		}
		allowed, err := s.access.Allowed(r.Context(), claims, ch)
		if err != nil || !allowed {
			s.syncOutcome("forbidden")
			writeJSON(w, http.StatusForbidden, syncError{Error: codeForbidden, Channel: name, Message: "not allowed to read " + truncate(name, 100)})
			return
		}
		scope.want[name] = ch
	}
	from := req.since
	if req.sinceMS != nil {
		if from, err = s.log.SinceTime(*req.sinceMS); err != nil {
			s.syncExpired(w)
			return
		}
	} else if from.IsZero() && r.URL.Query().Get("since") == "" {
		from = s.hub.position()
	}
	ans, revoked, err := s.collect(from, &scope, req.limit)
	if err != nil {
		s.syncReadFailed(w, err)
		return
	}
	if len(ans.Events) == 0 && !ans.More && revoked == "" && req.wait > 0 {
		timer := time.NewTimer(req.wait)
		defer timer.Stop()
		for len(ans.Events) == 0 && !ans.More && revoked == "" {
			select {
			case <-s.hub.past(ans.Cursor):
			case <-timer.C:
				s.syncOutcome("empty")
				writeJSON(w, http.StatusOK, ans)
				return
			case <-r.Context().Done():
				return
			case <-s.ctx.Done():
				writeJSON(w, http.StatusOK, ans)
				return
			}
			if ans, revoked, err = s.collect(ans.Cursor, &scope, req.limit); err != nil {
				s.syncReadFailed(w, err)
				return
			}
		}
	}
	if revoked != "" && len(ans.Events) == 0 {
		// Access was lost at a change committed after the cursor; what
		// came before it was answered already.
		s.syncOutcome("forbidden")
		writeJSON(w, http.StatusForbidden, syncError{Error: codeForbidden, Channel: revoked, Message: "no longer allowed to read " + truncate(revoked, 100)})
		return
	}
	if len(ans.Events) == 0 {
		s.syncOutcome("empty")
	} else {
		s.syncOutcome("events")
	}
	writeJSON(w, http.StatusOK, ans)
}

// syncScope is who asks /sync for which channels.
type syncScope struct {
	ctx    context.Context
	claims *acl.Claims
	want   map[string]*acl.Channel
}

// collect gathers up to limit events after from on the wanted channels, up
// to the hub's position: the hub applies control records before anything
// after them is served. The answer's cursor is the last event read
// (matching or not), or from. At a control record that changed tables the
// access to a wanted channel depends on, access is checked again; when it
// was lost, collect stops before the record and names the channel: nothing
// committed after the change reaches the caller.
func (s *Server) collect(from broadcaster.Cursor, scope *syncScope, limit int) (ans syncAnswer, revoked string, err error) {
	ans = syncAnswer{Events: []syncEvent{}, Cursor: from}
	bound := s.hub.position()
	scanned := 0
	for {
		evs, more, err := s.log.Since(ans.Cursor, min(limit*4, 2048))
		if err != nil {
			return ans, "", err
		}
		for len(evs) > 0 && bound.Before(evs[len(evs)-1].ID) {
			evs, more = evs[:len(evs)-1], false
		}
		for i := range evs {
			ev := &evs[i]
			if ev.IsControl() {
				if name := s.lostAccess(ev, scope); name != "" {
					return ans, name, nil
				}
				ans.Cursor = ev.ID
				scanned++
				continue
			}
			var match []string
			for _, name := range ev.Channels {
				if scope.want[name] != nil && !slices.Contains(match, name) {
					match = append(match, name)
				}
			}
			ans.Cursor = ev.ID
			scanned++
			if len(match) == 0 {
				continue
			}
			body, ok := encodeEvent(ev, s.logger)
			if !ok {
				continue
			}
			ans.Events = append(ans.Events, syncEvent{Channels: match, Event: body})
			if len(ans.Events) == limit {
				ans.More = i < len(evs)-1 || more
				return ans, "", nil
			}
		}
		if !more {
			if ans.Cursor.Before(bound) {
				// Nothing more up to the hub's position but the end of a
				// transaction with no event: move the cursor there.
				ans.Cursor = bound
			}
			return ans, "", nil
		}
		if scanned >= syncScan {
			ans.More = true
			return ans, "", nil
		}
	}
}

// lostAccess checks again the wanted channels whose access depends on the
// tables a control record names, and returns the first one no longer
// allowed, or "". A check that fails counts as lost: it is asked again.
func (s *Server) lostAccess(ev *broadcaster.Event, scope *syncScope) string {
	for name, ch := range scope.want {
		if !slices.ContainsFunc(ev.Recheck, func(t string) bool { return s.access.AffectedBy(t, ch) }) {
			continue
		}
		ok, err := s.access.Allowed(scope.ctx, scope.claims, ch)
		if err != nil || !ok {
			return name
		}
	}
	return ""
}

// syncReadFailed answers a failed read of the log: 410 for a cursor the log
// no longer (or never) had, 500 otherwise.
func (s *Server) syncReadFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, broadcaster.ErrCursorExpired) {
		s.syncExpired(w)
		return
	}
	s.logger.Error("ws: /sync cannot read the log", "err", err)
	s.syncOutcome("error")
	writeJSON(w, http.StatusInternalServerError, syncError{Error: "internal", Message: "the event log could not be read; try again"})
}

func (s *Server) syncExpired(w http.ResponseWriter) {
	s.syncOutcome("expired")
	writeJSON(w, http.StatusGone, syncError{Error: "cursor_expired", Message: "the events after this point are no longer retained: refetch, then sync from the cursor of the answer"})
}

// syncBusy answers a /sync request over a concurrency limit: 429.
func (s *Server) syncBusy(w http.ResponseWriter, msg string) {
	s.syncOutcome("rate_limited")
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusTooManyRequests, syncError{Error: codeRateLimited, Message: msg})
}

func (s *Server) syncOutcome(outcome string) {
	s.stats.sync(outcome)
}
