package ws

import (
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
	want := make(map[string]bool, len(req.channels))
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
		want[name] = true
	}
	from := req.since
	if req.sinceMS != nil {
		if from, err = s.log.SinceTime(*req.sinceMS); err != nil {
			s.syncExpired(w)
			return
		}
	} else if from.IsZero() && r.URL.Query().Get("since") == "" {
		from = s.log.Head()
	}
	ans, err := s.collect(from, want, req.limit)
	if errors.Is(err, broadcaster.ErrCursorExpired) {
		s.syncExpired(w)
		return
	}
	if len(ans.Events) == 0 && !ans.More && req.wait > 0 {
		timer := time.NewTimer(req.wait)
		defer timer.Stop()
		for len(ans.Events) == 0 && !ans.More {
			select {
			case <-s.log.Wait(ans.Cursor):
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
			if ans, err = s.collect(ans.Cursor, want, req.limit); err != nil {
				s.syncExpired(w)
				return
			}
		}
	}
	if len(ans.Events) == 0 {
		s.syncOutcome("empty")
	} else {
		s.syncOutcome("events")
	}
	writeJSON(w, http.StatusOK, ans)
}

// collect gathers up to limit events after from on the wanted channels. The
// answer's cursor is the last event read (matching or not), or from.
func (s *Server) collect(from broadcaster.Cursor, want map[string]bool, limit int) (syncAnswer, error) {
	ans := syncAnswer{Events: []syncEvent{}, Cursor: from}
	scanned := 0
	for {
		evs, more, err := s.log.Since(ans.Cursor, min(limit*4, 2048))
		if err != nil {
			return ans, err
		}
		for i := range evs {
			ev := &evs[i]
			var match []string
			for _, name := range ev.Channels {
				if want[name] && !slices.Contains(match, name) {
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
				return ans, nil
			}
		}
		if !more {
			if len(evs) == 0 && ans.Cursor.Before(s.log.Head()) {
				// Nothing after the cursor but the end of a transaction
				// with no event: move the cursor there.
				ans.Cursor = s.log.Head()
			}
			return ans, nil
		}
		if scanned >= syncScan {
			ans.More = true
			return ans, nil
		}
	}
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
