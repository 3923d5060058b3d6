package ws

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// FuzzParseSync fuzzes the query of GET /api/realtime/sync. The query is
// checked against the rules of docs/protocol.md written out again here: a
// query is accepted exactly when every parameter is valid, a refusal names
// the first bad parameter, and an accepted query yields exactly what it
// asked for.
func FuzzParseSync(f *testing.F) {
	for _, seed := range []string{
		"channels=class:42",
		"channels=class:42,exam:7&tables=exams&since=0000000016B3748C-00000003&limit=100&wait=25s",
		"channels=%20class:1%20,,class:1&channels=class:1&tables=,exams,%20",
		"tables=exams&since=1764403200123",
		"tables=exams&since=99999999999999999999",
		"tables=exams&since=-5",
		"tables=exams&since=0000000016b3748c-0000000g",
		"channels=a&limit=0", "channels=a&limit=5000", "channels=a&limit=5001", "channels=a&limit=+7",
		"channels=a&wait=30", "channels=a&wait=31", "channels=a&wait=-1s", "channels=a&wait=0",
		"channels=a&wait=1h", "channels=a&wait=29.9s", "channels=a&wait=abc",
		"channels=a&wait=18446744074",
		"", "channels=", "channels=%zz&tables=x", "since=&channels=a;b",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/api/realtime/sync", RawQuery: rawQuery}}
		q := r.URL.Query()
		req, err := parseSync(r)
		bad := firstBadSyncParam(q)
		if err != nil {
			msg := err.Error()
			if msg == "" {
				t.Fatal("refusal without a message")
			}
			if r, _ := utf8.DecodeRuneInString(msg); unicode.IsUpper(r) {
				t.Fatalf("error %q does not start lowercase", msg)
			}
			if bad == "" {
				t.Fatalf("query %q refused (%v) but every parameter is valid", rawQuery, err)
			}
			if !strings.HasPrefix(msg, bad) {
				t.Fatalf("query %q refused with %q, want the first bad parameter %q", rawQuery, msg, bad)
			}
			return
		}
		if bad != "" {
			t.Fatalf("query %q accepted but %q is bad: %+v", rawQuery, bad, req)
		}
		checkSyncRequest(t, q, req)
	})
}

// firstBadSyncParam returns the start of the refusal of the first invalid
// parameter of a /sync query, in the order parseSync checks them, or "".
func firstBadSyncParam(q url.Values) string {
	if s := q.Get("since"); s != "" {
		if strings.Trim(s, "0123456789") == "" {
			if _, err := strconv.ParseInt(s, 10, 64); err != nil {
				return "since:"
			}
		} else if _, err := broadcaster.ParseCursor(s); err != nil {
			return "since:"
		}
	}
	if len(wantSyncChannels(q)) == 0 {
		return "name at least one channel"
	}
	if s := q.Get("limit"); s != "" {
		if n, err := strconv.Atoi(s); err != nil || n < 1 || n > MaxSyncLimit {
			return "limit:"
		}
	}
	if s := q.Get("wait"); s != "" {
		if _, ok := wantSyncWait(s); !ok {
			return "wait:"
		}
	}
	return ""
}

// wantSyncChannels lists the channels a /sync query names: the trimmed,
// non-empty entries of every channels= then "table:" + every tables= entry,
// first occurrence only.
func wantSyncChannels(q url.Values) []string {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, v := range q["channels"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				add(name)
			}
		}
	}
	for _, v := range q["tables"] {
		for _, table := range strings.Split(v, ",") {
			if table = strings.TrimSpace(table); table != "" {
				add("table:" + table)
			}
		}
	}
	return out
}

// wantSyncWait is the long-poll a wait= value asks for: a Go duration, or a
// whole number of seconds, from 0 to MaxSyncWait.
func wantSyncWait(s string) (time.Duration, bool) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, d >= 0 && d <= MaxSyncWait
	}
	secs, err := strconv.Atoi(s)
	if err != nil || secs < 0 || secs > int(MaxSyncWait/time.Second) {
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}

// checkSyncRequest checks that an accepted /sync query was read as asked.
func checkSyncRequest(t *testing.T, q url.Values, req *syncRequest) {
	t.Helper()
	switch s := q.Get("since"); {
	case s == "":
		if req.sinceMS != nil || !req.since.IsZero() {
			t.Fatalf("no since, but parsed since=%v sinceMS=%v", req.since, req.sinceMS)
		}
	case strings.Trim(s, "0123456789") == "":
		ms, _ := strconv.ParseInt(s, 10, 64)
		if req.sinceMS == nil || req.sinceMS.UnixMilli() != ms || !req.since.IsZero() {
			t.Fatalf("since=%q parsed as since=%v sinceMS=%v, want %d ms", s, req.since, req.sinceMS, ms)
		}
	default:
		if req.sinceMS != nil || !strings.EqualFold(req.since.String(), s) {
			t.Fatalf("since=%q parsed as since=%v sinceMS=%v", s, req.since, req.sinceMS)
		}
	}
	want := wantSyncChannels(q)
	if strings.Join(req.channels, "\x00") != strings.Join(want, "\x00") || len(req.channels) != len(want) {
		t.Fatalf("channels %q, want %q", req.channels, want)
	}
	for _, name := range req.channels {
		if name == "" || strings.TrimSpace(name) != name {
			t.Fatalf("channel %q is empty or untrimmed", name)
		}
	}
	wantLimit := DefaultSyncLimit
	if s := q.Get("limit"); s != "" {
		wantLimit, _ = strconv.Atoi(s)
	}
	if req.limit != wantLimit || req.limit < 1 || req.limit > MaxSyncLimit {
		t.Fatalf("limit %d, want %d", req.limit, wantLimit)
	}
	var wantWait time.Duration
	if s := q.Get("wait"); s != "" {
		wantWait, _ = wantSyncWait(s)
	}
	if req.wait != wantWait || req.wait < 0 || req.wait > MaxSyncWait {
		t.Fatalf("wait=%q parsed as %v, want %v", q.Get("wait"), req.wait, wantWait)
	}
}

// FuzzClientIP fuzzes the reading of X-Forwarded-For behind
// server.trusted_proxies (docs/operations.md): the client is the nearest
// entry that is not a trusted proxy, and entries further left, which a
// client could forge, never change the answer.
func FuzzClientIP(f *testing.F) {
	for _, seed := range []struct{ proxies, remote, xff1, xff2 string }{
		{"", "203.0.113.7:5000", "1.2.3.4", ""},
		{"10.0.0.0/8,192.168.1.5,::1", "203.0.113.7:5000", "1.2.3.4", ""},
		{"10.0.0.0/8,192.168.1.5,::1", "10.1.2.3:5000", "198.51.100.9, 192.168.1.5", ""},
		{"10.0.0.0/8", "10.1.2.3:5000", "6.6.6.6, 198.51.100.9", "10.9.9.9"},
		{"10.0.0.0/8", "10.1.2.3:5000", "", ""},
		{"::1", "[::1]:5000", "198.51.100.10", ""},
		{"10.0.0.0/8", "10.1.2.3:5000", "not-an-ip", ""},
		{"10.0.0.0/8", "10.1.2.3", " , ,10.0.0.1", "::ffff:10.0.0.2"},
		{"::ffff:10.0.0.0/104", "10.0.0.1:1", "1.1.1.1", ""},
		{"fe80::1", "[fe80::1%eth0]:80", "1.1.1.1", ""},
		{"2001:db8::/32,0.0.0.0/0", "[2001:db8::5]:443", "2001:db8::6,1.2.3.4", ""},
		{"nonsense", "1.2.3.4:1", "", ""},
		{"10.0.0.0/33", "", "", ""},
	} {
		f.Add(seed.proxies, seed.remote, seed.xff1, seed.xff2)
	}
	f.Fuzz(func(t *testing.T, proxyList, remote, xff1, xff2 string) {
		var entries []string
		if proxyList != "" {
			entries = strings.Split(proxyList, ",")
		}
		proxies, err := parseProxies(entries)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "server.trusted_proxies: ") {
				t.Fatalf("error %q does not name the setting", err)
			}
			return
		}
		if len(proxies) != len(entries) {
			t.Fatalf("%d entries parsed into %d prefixes", len(entries), len(proxies))
		}
		s := &Server{proxies: proxies}
		for i, p := range proxies {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("entry %q parsed into %v, not a valid masked prefix", entries[i], p)
			}
			// An entry trusts the address it names or starts with.
			addr := p.Addr()
			if a, err := netip.ParseAddr(entries[i]); err == nil {
				addr = a
			}
			if !s.trusted(addr.String()) {
				t.Fatalf("entry %q (%v) does not trust %v", entries[i], p, addr)
			}
		}

		header := http.Header{}
		for _, v := range []string{xff1, xff2} {
			if v != "" {
				header.Add("X-Forwarded-For", v)
			}
		}
		r := &http.Request{RemoteAddr: remote, Header: header}
		got := s.clientIP(r)
		want := wantClientIP(s, remoteIP(r), header.Values("X-Forwarded-For"))
		if got != want {
			t.Fatalf("clientIP(remote %q, X-Forwarded-For %q, proxies %q) = %q, want %q", remote, header.Values("X-Forwarded-For"), proxyList, got, want)
		}
		if got != remoteIP(r) && (strings.Contains(got, ",") || strings.TrimSpace(got) != got || got == "") {
			t.Fatalf("clientIP = %q, not one trimmed entry", got)
		}

		// A forged entry at the far left changes nothing once some entry
		// right of it is untrusted.
		if got != remoteIP(r) && !s.trusted(got) {
			forged := http.Header{"X-Forwarded-For": append([]string{"6.6.6.6, not-an-ip"}, header.Values("X-Forwarded-For")...)}
			if g := s.clientIP(&http.Request{RemoteAddr: remote, Header: forged}); g != got {
				t.Fatalf("forged left entries changed clientIP from %q to %q", got, g)
			}
		}
	})
}

// wantClientIP is docs/operations.md's rule: the socket's address unless it
// is a trusted proxy; then the nearest X-Forwarded-For entry that is not a
// trusted proxy, or the furthest one when all are.
func wantClientIP(s *Server, remote string, xff []string) string {
	if !s.trusted(remote) {
		return remote
	}
	var hops []string
	for _, v := range xff {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if !s.trusted(hops[i]) {
			return hops[i]
		}
	}
	if len(hops) > 0 {
		return hops[0]
	}
	return remote
}

// FuzzRequestToken fuzzes how an upgrade or /sync request carries its
// token: an Authorization Bearer header, else access_token in the query.
func FuzzRequestToken(f *testing.F) {
	for _, seed := range []struct {
		auth     string
		hasAuth  bool
		rawQuery string
	}{
		{"Bearer abc.def.ghi", true, ""},
		{"bearer  abc ", true, "access_token=zzz"},
		{"Basic dXNlcjpwYXNz", true, ""},
		{"Bearer", true, ""},
		{"Bearer \t ", true, ""},
		{"", false, "access_token=abc.def"},
		{"", false, "access_token="},
		{"", false, "access_token=%zz&access_token=b"},
		{"", true, "access_token=x"},
		{"", false, ""},
	} {
		f.Add(seed.auth, seed.hasAuth, seed.rawQuery)
	}
	f.Fuzz(func(t *testing.T, auth string, hasAuth bool, rawQuery string) {
		r := &http.Request{URL: &url.URL{RawQuery: rawQuery}, Header: http.Header{}}
		if hasAuth {
			r.Header.Set("Authorization", auth)
		}
		token, ok, err := requestToken(r)
		if err != nil {
			if ok || token != "" {
				t.Fatalf("error %v with ok=%v token=%q", err, ok, token)
			}
			if err.Error() == "" {
				t.Fatal("error without a message")
			}
			if auth == "" {
				t.Fatal("an empty Authorization header is an error")
			}
			return
		}
		if auth != "" && hasAuth {
			scheme, rest, _ := strings.Cut(auth, " ")
			if !ok || token == "" || token != strings.TrimSpace(rest) || !strings.EqualFold(scheme, "Bearer") {
				t.Fatalf("Authorization %q read as ok=%v token=%q", auth, ok, token)
			}
			return
		}
		q := r.URL.Query()
		if ok != q.Has("access_token") || token != q.Get("access_token") {
			t.Fatalf("query %q read as ok=%v token=%q", rawQuery, ok, token)
		}
	})
}

// FuzzOriginAllowed fuzzes the Origin check of an upgrade request against
// server.allowed_origins patterns.
func FuzzOriginAllowed(f *testing.F) {
	for _, seed := range []struct{ origin, host, patterns string }{
		{"https://school.example", "realtime.school.example", "school.example"},
		{"https://evil.example", "realtime.school.example", "school.example"},
		{"https://a.school.example", "realtime.school.example", "*.school.example"},
		{"http://school.example", "realtime.school.example", "https://school.example"},
		{"https://REALTIME.school.example", "realtime.school.example", "x"},
		{"https://school.example:8443", "h", "school.example:*"},
		{"null", "h", "*"},
		{"://bad", "h", "x"},
		{"https://a/b", "h", "a"},
		{"", "h", "x"},
		{"https://x", "h", ""},
	} {
		f.Add(seed.origin, seed.host, seed.patterns)
	}
	f.Fuzz(func(t *testing.T, origin, host, patternList string) {
		var patterns []string
		if patternList != "" {
			patterns = strings.Split(patternList, "\n")
		}
		r := &http.Request{Host: host, Header: http.Header{}}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		got := originAllowed(r, patterns)
		if len(patterns) == 0 || origin == "" {
			if !got {
				t.Fatalf("origin %q refused with patterns %q", origin, patterns)
			}
			return
		}
		u, err := url.Parse(origin)
		if err != nil {
			if got {
				t.Fatalf("unparsable origin %q allowed", origin)
			}
			return
		}
		if strings.EqualFold(u.Host, host) && !got {
			t.Fatalf("origin %q refused on its own host %q", origin, host)
		}
		// Without wildcards a pattern allows exactly its own host (or
		// scheme://host), case aside.
		literal := true
		for _, p := range patterns {
			literal = literal && !strings.ContainsAny(p, `*?[\`)
		}
		if literal && got && !strings.EqualFold(u.Host, host) {
			matched := false
			for _, p := range patterns {
				matched = matched || strings.EqualFold(p, u.Host) || strings.EqualFold(p, u.Scheme+"://"+u.Host)
			}
			if !matched {
				t.Fatalf("origin %q allowed by literal patterns %q", origin, patterns)
			}
		}
	})
}

// TestFuzzFindings keeps the inputs that broke the parsers above, with the
// answer each should get.
func TestFuzzFindings(t *testing.T) {
	t.Run("wait in seconds past int64 nanoseconds", func(t *testing.T) {
		for _, wait := range []string{"18446744074", "9223372037", "31"} {
			r := &http.Request{URL: &url.URL{RawQuery: "channels=a&wait=" + wait}}
			if req, err := parseSync(r); err == nil || !strings.HasPrefix(err.Error(), "wait:") {
				t.Errorf("wait=%s: got %+v, %v; want a wait: error", wait, req, err)
			}
		}
	})
	tests := []struct {
		name, proxy, remote string
	}{
		{"ipv4-mapped cidr", "::ffff:10.0.0.0/104", "10.1.2.3:5000"},
		{"ipv4-mapped cidr, mapped peer", "::ffff:10.0.0.0/104", "[::ffff:10.1.2.3]:5000"},
		{"ipv4-mapped address", "::ffff:10.0.0.1", "10.0.0.1:5000"},
		{"link-local proxy, zoned peer", "fe80::1", "[fe80::1%eth0]:5000"},
		{"zoned entry", "fe80::1%eth0", "[fe80::1%eth0]:5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxies, err := parseProxies([]string{tt.proxy})
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{proxies: proxies}
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{"X-Forwarded-For": {"198.51.100.9"}}}
			if got := s.clientIP(r); got != "198.51.100.9" {
				t.Fatalf("proxy %q, peer %s: clientIP = %q, want the forwarded 198.51.100.9", tt.proxy, tt.remote, got)
			}
		})
	}
}
