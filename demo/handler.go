package demo

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/config"
)

//go:embed static
var staticFiles embed.FS

// Verifier checks a Bearer token; *acl.Verifier is one.
type Verifier interface {
	Verify(token string) (*acl.Claims, error)
}

// Options configure Handler.
type Options struct {
	// JWT is auth.jwt: POST /demo/api/token mints with its HMAC secret,
	// issuer, audience and claim names (acl.Mint), so the gateway accepts
	// the tokens. Without a secret the token endpoint answers 503.
	JWT config.JWT
	// Verifier checks the Bearer token of the data endpoints. Required.
	Verifier Verifier
	// DB is the school database, read-only use (the gateway's read pool
	// is fine). Required.
	DB DB
	// AdminRoles may read every dashboard's data. Default auth.admin_roles'
	// default: admin, super_admin.
	AdminRoles []string
	// TokenTTL is the lifetime of minted tokens. Default 1h.
	TokenTTL time.Duration
	// Logger receives failed queries. Default: discard.
	Logger *slog.Logger
	// Now is the clock for minting. Default time.Now.
	Now func() time.Time
}

// DefaultTokenTTL is the lifetime of the demo's tokens.
const DefaultTokenTTL = time.Hour

// Prefix is the path the demo is served under; mount Handler on it
// without stripping it.
const Prefix = "/demo/"

// maxBodyBytes bounds a POST body.
const maxBodyBytes = 4 << 10

// Handler serves the demo pages under /demo/ and their API under
// /demo/api/. Mount it on Prefix of the top-level mux, in front of the
// gateway's handler; it expects the full path. It panics when Verifier or
// DB is nil, a wiring mistake.
func Handler(opts Options) http.Handler {
	if opts.DB == nil {
		panic("demo.Handler: Options.DB is nil")
	}
	return newHandler(opts, pgStore{db: opts.DB})
}

// handler is the demo's HTTP side over a store.
type handler struct {
	opts  Options
	store store
	mux   *http.ServeMux
}

func newHandler(opts Options, st store) *handler {
	if opts.Verifier == nil {
		panic("demo.Handler: Options.Verifier is nil")
	}
	if len(opts.AdminRoles) == 0 {
		opts.AdminRoles = []string{"admin", "super_admin"}
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &handler{opts: opts, store: st, mux: http.NewServeMux()}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(fmt.Sprintf("demo: embedded files: %v", err))
	}
	files := http.StripPrefix("/demo", http.FileServerFS(static))
	h.mux.Handle("GET /demo/", noCache(files))
	h.mux.HandleFunc("GET /demo/api/people", h.people)
	h.mux.HandleFunc("POST /demo/api/token", h.token)
	h.mux.HandleFunc("GET /demo/api/me", h.authed(h.me))
	h.mux.HandleFunc("GET /demo/api/announcements", h.authed(h.announcements))
	h.mux.HandleFunc("GET /demo/api/teacher/{id}", h.authed(h.teacher))
	h.mux.HandleFunc("GET /demo/api/student/{id}", h.authed(h.student))
	h.mux.HandleFunc("GET /demo/api/parent/{id}", h.authed(h.parent))
	h.mux.HandleFunc("GET /demo/api/admin", h.authed(h.admin))
	h.mux.HandleFunc("GET /demo/api/names", h.authed(h.names))
	h.mux.HandleFunc("GET /demo/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such demo endpoint")
	})
	return h
}

// ServeHTTP sets the security headers every demo response carries: the
// pages load nothing from elsewhere.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy",
		"default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	h.mux.ServeHTTP(w, r)
}

// noCache makes browsers revalidate the embedded files, so a rebuilt
// binary's pages show at once.
func noCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// apiError is the body of every error answer.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

// fail answers a store error: 404 for errNotFound, else 500 with a hint
// when the database refused a column.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no such record")
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the browser went away
	}
	h.opts.Logger.Error("demo: query failed", "path", r.URL.Path, "err", err)
	msg := "the demo could not read the school database (see the server log)"
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		msg = "the database role may not read what the demo shows: " +
			"GRANT SELECT (first_name, last_name) ON users TO <the broadcaster's role> (demo/doc.go)"
	}
	writeError(w, http.StatusInternalServerError, "internal", msg)
}

// caller is the verified holder of a request's token.
type caller struct {
	claims *acl.Claims
	id     int64 // the user id as a number; 0 when it is not one
}

// authed verifies the Bearer token before next.
func (h *handler) authed(next func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "Authorization: Bearer <token> required")
			return
		}
		claims, err := h.opts.Verifier.Verify(strings.TrimSpace(tok))
		if err != nil {
			writeError(w, http.StatusUnauthorized, "unauthenticated", err.Error())
			return
		}
		c := caller{claims: claims}
		c.id, _ = strconv.ParseInt(claims.UserID, 10, 64)
		next(w, r, c)
	}
}

func (h *handler) isAdmin(c caller) bool {
	return c.claims.Role != "" && slices.Contains(h.opts.AdminRoles, c.claims.Role)
}

// pathID is the {id} of the path, or 0 after answering 400.
func pathID(w http.ResponseWriter, r *http.Request) int64 {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "the id must be a positive whole number")
		return 0
	}
	return id
}

func forbidden(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, "forbidden", "this user may not see that")
}

// people is the sign-in picker's list. It needs no token: it is the page
// that gets one.
func (h *handler) people(w http.ResponseWriter, r *http.Request) {
	p, err := h.store.People(r.Context())
	h.reply(w, r, p, err)
}

// tokenRequest is the body of POST /demo/api/token; userId may be a
// string or a number.
type tokenRequest struct {
	UserID json.RawMessage `json:"userId"`
}

// TokenResponse is the answer of POST /demo/api/token.
type TokenResponse struct {
	Token     string `json:"token"`
	UserID    string `json:"userId"`
	Role      string `json:"role"`
	Name      string `json:"name"`
	ExpiresAt int64  `json:"expiresAt"` // Unix milliseconds
}

// parseUserID accepts "10" or 10.
func parseUserID(raw json.RawMessage) (int64, error) {
	s := strings.TrimSpace(string(raw))
	if unq, err := strconv.Unquote(s); err == nil {
		s = strings.TrimSpace(unq)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("userId %s: want a positive whole number", raw)
	}
	return id, nil
}

// token mints a token for any user of the database: the reason the demo
// must never be on in production.
func (h *handler) token(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body: want {\"userId\": \"10\"}: %v", err))
		return
	}
	id, err := parseUserID(req.UserID)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	u, err := h.store.User(r.Context(), id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !u.IsActive {
		writeError(w, http.StatusForbidden, "inactive", fmt.Sprintf("user %d is deactivated", id))
		return
	}
	now := h.opts.Now()
	tok, err := acl.Mint(h.opts.JWT, acl.MintOptions{
		Subject: strconv.FormatInt(u.ID, 10),
		Role:    u.Role,
		TTL:     h.opts.TokenTTL,
		Now:     func() time.Time { return now },
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot_mint", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, TokenResponse{
		Token:     tok,
		UserID:    strconv.FormatInt(u.ID, 10),
		Role:      u.Role,
		Name:      u.Name,
		ExpiresAt: now.Add(h.opts.TokenTTL).UnixMilli(),
	})
}

func (h *handler) me(w http.ResponseWriter, r *http.Request, c caller) {
	if c.id <= 0 {
		writeError(w, http.StatusNotFound, "not_found", "the token's user is not a user of the school")
		return
	}
	me, err := h.store.Me(r.Context(), c.id)
	h.reply(w, r, me, err)
}

func (h *handler) announcements(w http.ResponseWriter, r *http.Request, c caller) {
	list, err := h.store.Announcements(r.Context(), c.claims.Role, h.isAdmin(c))
	h.reply(w, r, map[string]any{"announcements": list}, err)
}

// reply writes v as the answer, or the error when err is set.
func (h *handler) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// teacher: the teacher themself or an admin.
func (h *handler) teacher(w http.ResponseWriter, r *http.Request, c caller) {
	id := pathID(w, r)
	if id == 0 {
		return
	}
	if id != c.id && !h.isAdmin(c) {
		forbidden(w)
		return
	}
	v, err := h.store.Teacher(r.Context(), id)
	h.reply(w, r, v, err)
}

// student: as the channel student:{id} of config.example.yaml, the student
// themself, a linked parent, a teacher of the student's class, or an admin.
func (h *handler) student(w http.ResponseWriter, r *http.Request, c caller) {
	id := pathID(w, r)
	if id == 0 {
		return
	}
	if !h.isAdmin(c) {
		ok := false
		if c.id > 0 {
			var err error
			if ok, err = h.store.MayReadStudent(r.Context(), c.id, id); err != nil {
				h.fail(w, r, err)
				return
			}
		}
		if !ok {
			forbidden(w)
			return
		}
	}
	v, err := h.store.Student(r.Context(), id)
	h.reply(w, r, v, err)
}

// parent: the parent themself or an admin.
func (h *handler) parent(w http.ResponseWriter, r *http.Request, c caller) {
	id := pathID(w, r)
	if id == 0 {
		return
	}
	if id != c.id && !h.isAdmin(c) {
		forbidden(w)
		return
	}
	v, err := h.store.Parent(r.Context(), id)
	h.reply(w, r, v, err)
}

func (h *handler) admin(w http.ResponseWriter, r *http.Request, c caller) {
	if !h.isAdmin(c) {
		forbidden(w)
		return
	}
	v, err := h.store.Admin(r.Context())
	h.reply(w, r, v, err)
}

// maxNamesPerKind bounds the ids of one kind in a names request.
const maxNamesPerKind = 100

// names answers the names behind the ids events carry, for the activity
// feed: ?users=1,2&students=31&exams=4&classes=5&terms=1&vacancies=2. Any
// caller may ask: it tells names and titles only, and the sign-in picker
// (GET people) already lists every person's name to anyone.
func (h *handler) names(w http.ResponseWriter, r *http.Request, _ caller) {
	ids, err := parseNameIDs(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	v, err := h.store.Names(r.Context(), ids)
	h.reply(w, r, v, err)
}

// parseNameIDs reads the names request's comma-separated id lists, one
// parameter per kind of nameKinds.
func parseNameIDs(q url.Values) (map[string][]int64, error) {
	for k := range q {
		if !slices.Contains(nameKinds, k) {
			return nil, fmt.Errorf("unknown parameter %q: want some of %s", k, strings.Join(nameKinds, ", "))
		}
	}
	ids := map[string][]int64{}
	for _, kind := range nameKinds {
		for _, v := range q[kind] {
			for _, s := range strings.Split(v, ",") {
				if s == "" {
					continue
				}
				id, err := strconv.ParseInt(s, 10, 64)
				if err != nil || id <= 0 {
					return nil, fmt.Errorf("%s: %q is not a positive whole number", kind, s)
				}
				if slices.Contains(ids[kind], id) {
					continue
				}
				if len(ids[kind]) == maxNamesPerKind {
					return nil, fmt.Errorf("%s: more than %d ids", kind, maxNamesPerKind)
				}
				ids[kind] = append(ids[kind], id)
			}
		}
	}
	return ids, nil
}
