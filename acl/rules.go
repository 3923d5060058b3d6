package acl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/treasure-home/cdc-broadcaster/config"
)

// Querier runs the queries of sql allow rules; *pgxpool.Pool satisfies it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// RulesOptions are the optional dependencies of Rules.
type RulesOptions struct {
	// Logger receives `when` evaluation failures and refused sql values.
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock of the sql answer cache. Default time.Now.
	Now func() time.Time
	// CacheSize bounds the number of cached sql answers. Default
	// DefaultCacheSize.
	CacheSize int
	// ObserveSQL, when set, is called after each sql rule query with how
	// long it took, failed queries included (for a latency histogram). It
	// runs on the caller of Allowed: keep it cheap.
	ObserveSQL func(time.Duration)
}

// RulesStats are counters since NewRules.
type RulesStats struct {
	Granted    uint64 // Allowed calls that granted
	Denied     uint64 // Allowed calls that refused, SQL failures included
	CacheHits  uint64 // sql answers served from the cache
	SQLQueries uint64 // sql queries run
}

// Rules resolves channel names and decides access to them. It is safe for
// concurrent use.
type Rules struct {
	channels []*channelRule
	// maxName is the longest name any pattern can match (at most
	// MaxChannelBytes): Resolve refuses longer ones unread.
	maxName int
	admin   map[string]bool
	db      Querier
	log     *slog.Logger
	now     func() time.Time
	ttl     time.Duration
	cache   *answerCache
	tables  []string // every table of any recheck_on, normalized, sorted
	observe func(time.Duration)

	granted, denied, cacheHits, sqlQueries atomic.Uint64
}

// channelRule is one compiled entry of the channels config.
type channelRule struct {
	pat     *pattern
	allow   []*allowRule
	recheck map[string]bool // normalized table names
}

// allowRule is one compiled allow entry; unset conditions are nil/empty.
type allowRule struct {
	id     string // "3.1": channel pattern index and allow index, for cache keys
	index  int    // allow index, for messages
	roles  map[string]bool
	self   string
	claims []claimCond
	when   cel.Program
	sql    *sqlQuery
}

// claimCond requires the caller's claim name to equal want with the
// channel's params filled in.
type claimCond struct {
	name string
	want []patternPart
}

// whenCostLimit bounds the work of one `when` evaluation.
const whenCostLimit = 100000

// NewRules compiles the channel patterns and their allow rules: param
// regexps, `when` expressions (type-checked over claims and params) and
// the placeholders of `sql` queries. db may be nil only when no rule uses
// sql. Errors name the channel pattern.
func NewRules(channels []config.Channel, auth config.Auth, db Querier, opts RulesOptions) (*Rules, error) {
	r := &Rules{
		admin: map[string]bool{},
		db:    db,
		log:   opts.Logger,
		now:   opts.Now,
		ttl:   auth.ACLCacheTTL,
	}
	r.observe = opts.ObserveSQL
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	r.cache = newAnswerCache(size)
	for _, role := range auth.AdminRoles {
		r.admin[role] = true
	}
	env, err := cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("params", cel.MapType(cel.StringType, cel.StringType)),
	)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	tables := map[string]bool{}
	for i, ch := range channels {
		cr, err := compileChannel(i, ch, env)
		if err != nil {
			return nil, fmt.Errorf("channels[%d] (pattern %q): %w", i, ch.Pattern, err)
		}
		for _, a := range cr.allow {
			if a.sql != nil && db == nil {
				return nil, fmt.Errorf("channels[%d] (pattern %q): allow[%d] uses sql but no database was given", i, ch.Pattern, a.index)
			}
		}
		for t := range cr.recheck {
			tables[t] = true
		}
		r.channels = append(r.channels, cr)
		r.maxName = max(r.maxName, cr.pat.maxLen)
	}
	for t := range tables {
		r.tables = append(r.tables, t)
	}
	slices.Sort(r.tables)
	return r, nil
}

func compileChannel(i int, ch config.Channel, env *cel.Env) (*channelRule, error) {
	pat, err := compilePattern(ch.Pattern, ch.Params)
	if err != nil {
		return nil, err
	}
	params := map[string]bool{}
	for _, n := range pat.names {
		params[n] = true
	}
	cr := &channelRule{pat: pat, recheck: map[string]bool{}}
	if len(ch.Allow) == 0 {
		return nil, errors.New("allow: at least one rule is needed (nobody could read this channel)")
	}
	for j, a := range ch.Allow {
		ar, err := compileAllow(a, params, env)
		if err != nil {
			return nil, fmt.Errorf("allow[%d]: %w", j, err)
		}
		ar.id, ar.index = fmt.Sprintf("%d.%d", i, j), j
		cr.allow = append(cr.allow, ar)
	}
	for j, t := range ch.RecheckOn {
		n := normalizeTable(t)
		if n == "" {
			return nil, fmt.Errorf("recheck_on[%d]: empty table name", j)
		}
		cr.recheck[n] = true
	}
	return cr, nil
}

func compileAllow(a config.AllowRule, params map[string]bool, env *cel.Env) (*allowRule, error) {
	ar := &allowRule{self: a.Self}
	if len(a.Roles) > 0 {
		ar.roles = map[string]bool{}
		for _, role := range a.Roles {
			ar.roles[role] = true
		}
	}
	if a.Self != "" && !params[a.Self] {
		return nil, fmt.Errorf("self: %q is not a param of the pattern", a.Self)
	}
	for _, name := range slices.Sorted(maps.Keys(a.Claim)) {
		want, err := claimTemplate(a.Claim[name], params)
		if err != nil {
			return nil, fmt.Errorf("claim.%s: %w", name, err)
		}
		ar.claims = append(ar.claims, claimCond{name: name, want: want})
	}
	if expr := strings.TrimSpace(a.When); expr != "" {
		prg, err := compileWhen(env, expr)
		if err != nil {
			return nil, fmt.Errorf("when: %q: %w", expr, err)
		}
		ar.when = prg
	}
	if q := strings.TrimSpace(a.SQL); q != "" {
		sq, err := translateSQL(q, params)
		if err != nil {
			return nil, fmt.Errorf("sql: %w", err)
		}
		ar.sql = sq
	}
	if ar.roles == nil && ar.self == "" && ar.claims == nil && ar.when == nil && ar.sql == nil {
		return nil, errors.New("empty rule: give roles, self, claim, when or sql")
	}
	return ar, nil
}

// claimTemplate parses the wanted value of a claim condition: literal text
// with {param}s.
func claimTemplate(s string, params map[string]bool) ([]patternPart, error) {
	if !strings.ContainsAny(s, "{}") {
		return []patternPart{{text: s}}, nil
	}
	parts, err := splitPattern(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	for _, p := range parts {
		if p.param && !params[p.text] {
			return nil, fmt.Errorf("%q: {%s} is not a param of the pattern", s, p.text)
		}
	}
	return parts, nil
}

// compileWhen compiles a `when`: its result must be bool, or dyn (a claim's
// value) checked to be a bool at run time.
func compileWhen(env *cel.Env, expr string) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, issuesError(iss)
	}
	if out := ast.OutputType(); !out.IsExactType(types.BoolType) && !out.IsExactType(types.DynType) {
		return nil, fmt.Errorf("the result is %s, want bool", out)
	}
	prg, err := env.Program(ast, cel.CostLimit(whenCostLimit))
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return prg, nil
}

// issuesError puts cel's issues on one line: "1:8: reason; 1:20: reason".
func issuesError(iss *cel.Issues) error {
	var parts []string
	for _, e := range iss.Errors() {
		msg := e.Message
		if loc := e.Location; loc != nil && loc.Line() > 0 {
			msg = fmt.Sprintf("%d:%d: %s", loc.Line(), loc.Column()+1, msg)
		}
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		return errors.New(strings.Join(strings.Fields(iss.String()), " "))
	}
	return errors.New(strings.Join(parts, "; "))
}

// normalizeTable names a table as mappings do: "public.x" is "x".
func normalizeTable(t string) string {
	return strings.TrimPrefix(strings.TrimSpace(t), "public.")
}

// Resolve finds the pattern of a channel name: the first pattern that the
// name fits wins. A name that fits no pattern's shape is ErrUnknownChannel;
// one that has a pattern's shape but a param failing its regexp (and fits
// no other pattern) is ErrInvalidChannel, wrapped with the param's name;
// when several patterns have that shape, the message is about the most
// specific one (the most literal text).
func (r *Rules) Resolve(name string) (*Channel, error) {
	if len(name) > r.maxName && len(r.channels) > 0 {
		// No pattern can match it: refused before any regexp reads it.
		return nil, fmt.Errorf("%w: %d bytes, longer than any channel name (%d)", ErrInvalidChannel, len(name), r.maxName)
	}
	var invalidErr error
	literal := -1 // literal length of the pattern invalidErr comes from
	for i, cr := range r.channels {
		params, fits, err := cr.pat.match(name)
		if fits {
			return &Channel{Name: name, Pattern: cr.pat.text, Params: params, rule: i}, nil
		}
		if err != nil && cr.pat.literal > literal {
			invalidErr, literal = fmt.Errorf("%w (pattern %s)", err, cr.pat.text), cr.pat.literal
		}
	}
	if invalidErr != nil {
		return nil, invalidErr
	}
	return nil, ErrUnknownChannel
}

// rule returns the compiled pattern ch was resolved to, nil for a Channel
// that no Resolve of r made.
func (r *Rules) rule(ch *Channel) *channelRule {
	if ch == nil || ch.rule < 0 || ch.rule >= len(r.channels) || r.channels[ch.rule].pat.text != ch.Pattern {
		return nil
	}
	return r.channels[ch.rule]
}

// Allowed reports whether the holder of c may read ch: any allow entry
// grants, and within an entry every condition given must hold. Entries
// without sql are tried first. An SQL failure is returned (and the answer
// is then "not allowed") unless another entry grants; a data exception
// (SQLSTATE class 22, such as 22P02 for a value that is not a number)
// counts as "not allowed" without an error.
func (r *Rules) Allowed(ctx context.Context, c *Claims, ch *Channel) (bool, error) {
	cr := r.rule(ch)
	if c == nil || cr == nil {
		r.denied.Add(1)
		return false, nil
	}
	var firstErr error
	for pass := range 2 {
		for _, a := range cr.allow {
			if (a.sql != nil) != (pass == 1) || !r.holds(ctx, a, c, ch) {
				continue
			}
			if a.sql == nil {
				r.granted.Add(1)
				return true, nil
			}
			ok, err := r.query(ctx, a, c, ch)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("channel %s: allow[%d] sql: %w", ch.Pattern, a.index, err)
				}
				continue
			}
			if ok {
				r.granted.Add(1)
				return true, nil
			}
		}
	}
	r.denied.Add(1)
	return false, firstErr
}

// holds checks the conditions of a that need no database.
func (r *Rules) holds(ctx context.Context, a *allowRule, c *Claims, ch *Channel) bool {
	if a.roles != nil && !a.roles[c.Role] {
		return false
	}
	if a.self != "" && (c.UserID == "" || c.UserID != ch.Params[a.self]) {
		return false
	}
	for _, cc := range a.claims {
		if !claimEquals(c, cc.name, fillTemplate(cc.want, ch.Params)) {
			return false
		}
	}
	if a.when != nil && !r.evalWhen(ctx, a, c, ch) {
		return false
	}
	return true
}

func (r *Rules) evalWhen(ctx context.Context, a *allowRule, c *Claims, ch *Channel) bool {
	claims := c.All
	if claims == nil {
		claims = map[string]any{}
	}
	out, _, err := a.when.ContextEval(ctx, map[string]any{"claims": claims, "params": ch.Params})
	if err != nil {
		r.log.Debug("acl: when failed; counts as false", "pattern", ch.Pattern, "allow", a.index, "err", err)
		return false
	}
	b, ok := out.Value().(bool)
	if !ok {
		r.log.Debug("acl: when is not a bool; counts as false", "pattern", ch.Pattern, "allow", a.index, "type", out.Type())
	}
	return ok && b
}

// fillTemplate puts the params into a claim template.
func fillTemplate(parts []patternPart, params map[string]string) string {
	if len(parts) == 1 && !parts[0].param {
		return parts[0].text
	}
	var b strings.Builder
	for _, p := range parts {
		if p.param {
			b.WriteString(params[p.text])
		} else {
			b.WriteString(p.text)
		}
	}
	return b.String()
}

// claimEquals reports whether the caller's claim name equals want. The
// name is the token's claim name; "user_id" and "role", when the token has
// no claim of that name, mean the mapped user id and role. Numbers compare
// as decimal text, booleans as "true"/"false"; a list claim matches when
// any element does. A missing claim never matches.
func claimEquals(c *Claims, name, want string) bool {
	v, ok := c.All[name]
	if !ok {
		switch name {
		case argUserID:
			return c.UserID != "" && c.UserID == want
		case argRole:
			return c.Role != "" && c.Role == want
		}
		return false
	}
	if list, ok := v.([]any); ok {
		return slices.ContainsFunc(list, func(e any) bool { return scalarEquals(e, want) })
	}
	return scalarEquals(v, want)
}

func scalarEquals(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return x == want
	case int64:
		return strconv.FormatInt(x, 10) == want
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64) == want
	case json.Number:
		return numberText(x) == want
	case bool:
		return strconv.FormatBool(x) == want
	}
	return false
}

// query answers an sql rule, from the cache when it can.
func (r *Rules) query(ctx context.Context, a *allowRule, c *Claims, ch *Channel) (bool, error) {
	args := make([]any, len(a.sql.args))
	var key strings.Builder
	key.WriteString(a.id)
	for i, name := range a.sql.args {
		var v string
		switch name {
		case argUserID:
			v = c.UserID
		case argRole:
			v = c.Role
		default:
			v = ch.Params[name]
		}
		args[i] = v
		fmt.Fprintf(&key, "\x00%d:%s", len(v), v)
	}
	cacheKey := key.String()
	if r.ttl > 0 {
		if ok, hit := r.cache.get(cacheKey, r.now()); hit {
			r.cacheHits.Add(1)
			return ok, nil
		}
	}
	gen := r.cache.generation(ch.rule)
	r.sqlQueries.Add(1)
	start := time.Now()
	ok, err := runExists(ctx, r.db, a.sql.text, args)
	if r.observe != nil {
		r.observe(time.Since(start))
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.Code, "22") {
			return false, err
		}
		r.log.Debug("acl: sql rule refused a value; not allowed", "pattern", ch.Pattern, "allow", a.index, "sqlstate", pgErr.Code)
		ok = false
	}
	if r.ttl > 0 {
		r.cache.put(cacheKey, ch.rule, ok, r.now().Add(r.ttl), gen)
	}
	return ok, nil
}

// runExists reports whether q returns a row.
func runExists(ctx context.Context, db Querier, q string, args []any) (bool, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return false, err
	}
	found := rows.Next()
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	return found, nil
}

// RecheckTables lists every table named in any recheck_on, sorted, without
// duplicates, named as mappings name tables ("public.x" is "x").
func (r *Rules) RecheckTables() []string {
	return slices.Clone(r.tables)
}

// Invalidate drops the cached sql answers of every channel pattern whose
// recheck_on names table, so that the next Allowed asks the database.
func (r *Rules) Invalidate(table string) {
	t := normalizeTable(table)
	for i, cr := range r.channels {
		if cr.recheck[t] {
			r.cache.invalidate(i)
		}
	}
}

// AffectedBy reports whether ch's pattern lists table in recheck_on.
func (r *Rules) AffectedBy(table string, ch *Channel) bool {
	cr := r.rule(ch)
	return cr != nil && cr.recheck[normalizeTable(table)]
}

// IsAdmin reports whether the holder of c has one of auth.admin_roles.
func (r *Rules) IsAdmin(c *Claims) bool {
	return c != nil && c.Role != "" && r.admin[c.Role]
}

// Stats returns the counters.
func (r *Rules) Stats() RulesStats {
	return RulesStats{
		Granted:    r.granted.Load(),
		Denied:     r.denied.Load(),
		CacheHits:  r.cacheHits.Load(),
		SQLQueries: r.sqlQueries.Load(),
	}
}
