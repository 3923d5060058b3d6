package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// preflight finds, before anything is created in the database, what would
// make serve refuse to run or fail later: everything config.Validate cannot
// see. check prints what it finds; serve and setup refuse to go on (exit 2)
// when it finds a problem, so that a refused config never leaves a slot
// behind. The checks that need no database run in newPreflight, the others
// in database, on a connection as the configured role.
type preflight struct {
	cfg *config.Config
	// rules are the compiled access rules; nil when they do not compile.
	rules *acl.Rules
	// verifier is the token verifier, kept when preflightOptions.keepVerifier
	// asked for it (serve); nil otherwise or when the key material is bad.
	verifier *acl.Verifier
	// problems are what must be fixed before serve can run.
	problems config.Errors
	// warnings are what serve runs with, but probably should not.
	warnings []string
}

// preflightOptions say what newPreflight checks and keeps.
type preflightOptions struct {
	// db is the pool the sql rules will query (serve's read pool); nil
	// compiles the rules against one that is never queried.
	db acl.Querier
	// jwt checks the token key material: the secret, key files, JWKS.
	jwt bool
	// keepVerifier keeps the verifier built to check the key material
	// (the caller closes it); otherwise it is closed at once.
	keepVerifier bool
	// rulesOptions are passed to acl.NewRules.
	rulesOptions acl.RulesOptions
	// logger receives the verifier's own logs.
	logger *slog.Logger
}

// newPreflight runs the checks that need no database: the database URL's
// syntax, server.trusted_proxies, the audit destination, the token key
// material (when opts.jwt), the access rules, and whether each mapping
// channel template can fit a channel pattern.
func newPreflight(ctx context.Context, cfg *config.Config, opts preflightOptions) *preflight {
	p := &preflight{cfg: cfg}
	p.checkURL()
	for i, s := range cfg.Server.TrustedProxies {
		if _, err := netip.ParsePrefix(s); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(s); err != nil {
			p.fail(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is neither an address nor a CIDR (want e.g. 10.0.0.7 or 10.0.0.0/8)", s)
		}
	}
	if err := checkAuditDest(cfg.Audit.Log); err != nil {
		p.fail("audit.log", "%v", err)
	}
	if opts.jwt {
		p.checkJWT(ctx, opts)
	}
	p.compileRules(opts)
	p.checkTemplates()
	return p
}

// checkURL reports a source.database_url that does not parse.
func (p *preflight) checkURL() {
	if _, err := pgconn.ParseConfig(p.cfg.Source.DatabaseURL); err != nil {
		p.fail("source.database_url", "%v", err)
	}
}

// fail records a problem with key.
func (p *preflight) fail(key, format string, args ...any) {
	p.problems = append(p.problems, &config.Error{File: p.cfg.File, Line: p.cfg.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// warn records a warning about key.
func (p *preflight) warn(key, format string, args ...any) {
	e := config.Error{File: p.cfg.File, Line: p.cfg.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
	p.warnings = append(p.warnings, e.Error())
}

// err returns the problems as one error, nil when there are none.
func (p *preflight) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	return &configError{p.problems}
}

// checkJWT reports missing key material as Validate does, and otherwise
// builds a verifier, which reads the key files and the JWKS.
func (p *preflight) checkJWT(ctx context.Context, opts preflightOptions) {
	var errs config.Errors
	if err := p.cfg.Validate(); errors.As(err, &errs) {
		for _, e := range errs {
			if isKeyMaterial(e.Key) {
				p.problems = append(p.problems, e)
			}
		}
	}
	if len(errs) > 0 {
		return // what Validate refused NewVerifier would refuse again
	}
	v, err := acl.NewVerifier(ctx, p.cfg.Auth.JWT, acl.VerifierOptions{Logger: opts.logger})
	if err != nil {
		p.fail("auth.jwt", "%v", err)
		return
	}
	if opts.keepVerifier {
		p.verifier = v
		return
	}
	v.Close()
}

// isKeyMaterial tells the config errors about the token keys: the ones
// that commands verifying no token (setup, tail) do not care about.
func isKeyMaterial(key string) bool { return key == "auth.jwt.secret" || key == "auth.jwt" }

// compileRules compiles the access rules, each channel alone first so that
// every broken one is named with its line.
func (p *preflight) compileRules(opts preflightOptions) {
	db := opts.db
	if db == nil {
		db = unusedQuerier{}
	}
	broken := false
	for i, ch := range p.cfg.Channels {
		if _, err := acl.NewRules([]config.Channel{ch}, p.cfg.Auth, db, acl.RulesOptions{}); err != nil {
			broken = true
			key, msg := fmt.Sprintf("channels[%d]", i), strings.TrimPrefix(err.Error(), fmt.Sprintf("channels[0] (pattern %q): ", ch.Pattern))
			if m := allowPrefix.FindStringSubmatch(msg); m != nil {
				key, msg = key+".allow["+m[1]+"]", msg[len(m[0]):]
				if m[2] != "" {
					key += "." + m[2]
				}
			}
			p.fail(key, "%s", msg)
		}
	}
	if broken {
		return
	}
	rules, err := acl.NewRules(p.cfg.Channels, p.cfg.Auth, db, opts.rulesOptions)
	if err != nil {
		p.fail("channels", "%v", err)
		return
	}
	p.rules = rules
}

// allowPrefix reads "allow[1]: sql: " off a rule compile error.
var allowPrefix = regexp.MustCompile(`^allow\[(\d+)\]: (?:(when|sql|self|claim\.[^:]*): )?`)

// unusedQuerier stands in for the database when rules are only compiled.
type unusedQuerier struct{}

func (unusedQuerier) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errors.New("no database: the rules were compiled for a check only")
}

// checkTemplates reports each mapping channel template, and each channel
// pattern of emitted events, that no channel pattern can fit: its events
// would reach nobody. It warns about emitted events declared while emit
// is off.
func (p *preflight) checkTemplates() {
	if e := p.cfg.Emit; !e.Enabled && (len(e.Events) > 0 || len(e.Types) > 0) {
		p.warn("emit.enabled", "off, so every message of the emit prefix is dropped (counted as disabled), the types the section allows included")
	}
	if p.rules == nil {
		return
	}
	check := func(key string, templates []string) {
		for k, t := range templates {
			if !p.rules.CanMatch(t) {
				p.fail(fmt.Sprintf("%s[%d]", key, k), "channel template %q fits no channel pattern (channels[].pattern), so nobody could subscribe to its events", t)
			}
		}
	}
	for i, mp := range p.cfg.Mappings {
		check(fmt.Sprintf("mappings[%d].channels", i), mp.Channels)
		for j, ev := range mp.Events {
			check(fmt.Sprintf("mappings[%d].events[%d].channels", i, j), ev.Channels)
		}
	}
	check("emit.channels", p.cfg.Emit.Channels)
	for i, ev := range p.cfg.Emit.Events {
		check(fmt.Sprintf("emit.events[%d].channels", i), ev.Channels)
	}
}

// checkAuditDest makes sure the audit log can be written, creating
// nothing: a file is opened for appending when it exists, and otherwise
// its directory must take a new file.
func checkAuditDest(dest string) error {
	switch dest {
	case "", "stdout", "stderr":
		return nil
	}
	fi, err := os.Stat(dest)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory: want stdout, stderr or a file path", dest)
	case err == nil:
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("cannot append to it: %w", err)
		}
		return f.Close()
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	probe, err := os.CreateTemp(filepath.Dir(dest), ".cdc-broadcaster-audit-check-*")
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", dest, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// database runs the checks that need the database, on conn (a connection
// as the configured role): the slot belongs to this database, and each sql
// rule plans (its tables and columns exist) and may be run by the role.
// It warns about a sql rule reading a table its channel's recheck_on does
// not list. The error is for a database that could not be asked.
func (p *preflight) database(ctx context.Context, conn *pgx.Conn) error {
	if err := p.checkSlot(ctx, conn); err != nil {
		return err
	}
	if p.rules == nil {
		return nil
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		return fmt.Errorf("read current user: %w", err)
	}
	for _, r := range p.rules.SQLRules() {
		key := fmt.Sprintf("channels[%d].allow[%d].sql", r.Channel, r.Allow)
		tables, err := describeRule(ctx, conn, r)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "42501":
			p.fail(key, "the database user %s may not run this rule: %s (GRANT SELECT on it to %s); every subscription to %s would be refused", user, pgErr.Message, user, r.Pattern)
			continue
		case errors.As(err, &pgErr):
			p.fail(key, "the query does not run against this database: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
			continue
		case err != nil:
			return fmt.Errorf("%s: %w", key, err)
		}
		for _, t := range tables {
			if !slices.Contains(r.RecheckOn, t) {
				p.warn(key, "reads table %s, which channels[%d].recheck_on does not list: a change to it will not re-check live subscriptions to %s", t, r.Channel, r.Pattern)
			}
		}
	}
	return nil
}

// checkSlot refuses a slot of the configured name that another database
// of the cluster (or a physical replication) owns: slot names are
// cluster-wide, and serve could never stream from it.
func (p *preflight) checkSlot(ctx context.Context, conn *pgx.Conn) error {
	slot, err := cdc.LookupSlot(ctx, conn, p.cfg.Source.Slot)
	if err != nil || slot == nil {
		return err
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("read current database: %w", err)
	}
	switch {
	case slot.Database == "":
		p.fail("source.slot", "replication slot %q is a physical slot: choose another name for source.slot", p.cfg.Source.Slot)
	case slot.Database != db:
		p.fail("source.slot", "replication slot %q belongs to database %q, not %q (slot names are cluster-wide): choose another name for source.slot", p.cfg.Source.Slot, slot.Database, db)
	}
	return nil
}

// describeRule plans a sql rule the way it will run, in a read-only
// transaction, and returns the tables the plan reads, named as mappings
// name tables. Planning a generic plan (parameters unknown) keeps every
// table in the plan, and planning checks the role's privileges, so a
// missing table or column, a missing privilege, or a rule that would
// write all come back as the server's error.
func describeRule(ctx context.Context, conn *pgx.Conn, r acl.SQLRule) ([]string, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	name := fmt.Sprintf("cdc_check_%d_%d", r.Channel, r.Allow)
	sd, err := tx.Prepare(ctx, name, r.Query)
	if err != nil {
		return nil, err
	}
	defer func() {
		bg := context.WithoutCancel(ctx)
		_ = tx.Rollback(bg)
		_ = conn.Deallocate(bg, name)
	}()
	if _, err := tx.Exec(ctx, "SAVEPOINT generic_plan"); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		// Before PostgreSQL 12: the NULLs may fold scans away and hide a
		// table from the warnings, but privileges are checked all the same.
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT generic_plan"); err != nil {
			return nil, err
		}
	}
	stmt := "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE " + name
	if n := len(sd.ParamOIDs); n > 0 {
		stmt += "(" + strings.TrimSuffix(strings.Repeat("NULL,", n), ",") + ")"
	}
	var out []byte
	if err := tx.QueryRow(ctx, stmt, pgx.QueryExecModeSimpleProtocol).Scan(&out); err != nil {
		return nil, err
	}
	return planTables(out)
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node that names tables.
type planNode struct {
	Relation string     `json:"Relation Name"`
	Schema   string     `json:"Schema"`
	Plans    []planNode `json:"Plans"`
}

// planTables collects the tables an EXPLAIN (VERBOSE, FORMAT JSON) plan
// scans, sorted, without duplicates.
func planTables(explain []byte) ([]string, error) {
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(explain, &plans); err != nil {
		return nil, fmt.Errorf("read query plan: %w", err)
	}
	var tables []string
	var walk func(n *planNode)
	walk = func(n *planNode) {
		switch {
		case n.Relation != "" && n.Schema != "":
			tables = append(tables, cdc.Normalize(n.Schema+"."+n.Relation))
		case n.Relation != "":
			tables = append(tables, n.Relation)
		}
		for i := range n.Plans {
			walk(&n.Plans[i])
		}
	}
	for i := range plans {
		walk(&plans[i].Plan)
	}
	slices.Sort(tables)
	return slices.Compact(tables), nil
}
