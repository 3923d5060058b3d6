package cdc

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// Querier is what the catalog functions need from a database connection:
// a *pgx.Conn or a *pgxpool.Pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SplitTable splits a mapping's table name into schema and table; a name
// without a schema is in "public".
func SplitTable(name string) (schema, table string) {
	if s, t, ok := strings.Cut(name, "."); ok {
		return s, t
	}
	return "public", name
}

// Normalize returns a mapping's table name in the form events use: "x" for
// "public.x", "s.x" otherwise.
func Normalize(name string) string {
	return broadcaster.QualifiedName(SplitTable(name))
}

// TableInfo is what the catalog says about one table.
type TableInfo struct {
	*broadcaster.Relation
	// HasPrimaryKey reports whether the table has one; Column.Key marks its
	// columns.
	HasPrimaryKey bool
	// IdentityColumns lists the columns of the replica identity: the
	// primary key, the chosen index, or every column for FULL.
	IdentityColumns []string
}

// LoadTables reads the named tables (mapping names: "exams", "audit.logins")
// from the catalog, keyed by their Normalize'd names. Tables that do not
// exist are absent from the result.
func LoadTables(ctx context.Context, q Querier, names []string) (map[string]*TableInfo, error) {
	out := make(map[string]*TableInfo, len(names))
	for _, name := range names {
		schema, table := SplitTable(name)
		var (
			oid   uint32
			ident string
		)
		err := q.QueryRow(ctx, `
			SELECT c.oid, c.relreplident::text
			FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, table).Scan(&oid, &ident)
		if err == pgx.ErrNoRows {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up table %s: %w", name, err)
		}
		rows, err := q.Query(ctx, `
			SELECT a.attname, a.atttypid, a.atttypmod,
			       COALESCE(a.attnum = ANY(pk.conkey), false),
			       COALESCE(a.attnum = ANY(ri.indkey::int2[]), false)
			FROM pg_catalog.pg_attribute a
			LEFT JOIN pg_catalog.pg_constraint pk ON pk.conrelid = a.attrelid AND pk.contype = 'p'
			LEFT JOIN pg_catalog.pg_index ri ON ri.indrelid = a.attrelid AND ri.indisreplident
			WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
			ORDER BY a.attnum`, oid)
		if err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", name, err)
		}
		info := &TableInfo{Relation: &broadcaster.Relation{ID: oid, Schema: schema, Name: table, ReplicaIdentity: ident[0]}}
		var riCols []string
		for rows.Next() {
			var (
				c        broadcaster.Column
				inRIndex bool
			)
			if err := rows.Scan(&c.Name, &c.TypeOID, &c.TypeMod, &c.Key, &inRIndex); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read columns of %s: %w", name, err)
			}
			info.HasPrimaryKey = info.HasPrimaryKey || c.Key
			if inRIndex {
				riCols = append(riCols, c.Name)
			}
			info.Columns = append(info.Columns, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", name, err)
		}
		switch info.ReplicaIdentity {
		case broadcaster.IdentityFull:
			for _, c := range info.Columns {
				info.IdentityColumns = append(info.IdentityColumns, c.Name)
			}
		case broadcaster.IdentityIndex:
			info.IdentityColumns = riCols
		case broadcaster.IdentityDefault:
			for _, c := range info.Columns {
				if c.Key {
					info.IdentityColumns = append(info.IdentityColumns, c.Name)
				}
			}
		}
		out[Normalize(name)] = info
	}
	return out, nil
}

// Relations returns the relations of tables, keyed like tables.
func Relations(tables map[string]*TableInfo) map[string]*broadcaster.Relation {
	out := make(map[string]*broadcaster.Relation, len(tables))
	for k, t := range tables {
		out[k] = t.Relation
	}
	return out
}

// PublicationTables returns the tables of a publication, named the way
// mappings name them, and whether the publication exists. A publication FOR
// ALL TABLES reports all as true.
func PublicationTables(ctx context.Context, q Querier, pub string) (tables map[string]bool, all, exists bool, err error) {
	err = q.QueryRow(ctx, `SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1`, pub).Scan(&all)
	if err == pgx.ErrNoRows {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, false, false, fmt.Errorf("look up publication %s: %w", pub, err)
	}
	rows, err := q.Query(ctx, `SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return nil, false, true, fmt.Errorf("read tables of publication %s: %w", pub, err)
	}
	defer rows.Close()
	tables = make(map[string]bool)
	for rows.Next() {
		var s, t string
		if err := rows.Scan(&s, &t); err != nil {
			return nil, false, true, err
		}
		tables[broadcaster.QualifiedName(s, t)] = true
	}
	return tables, all, true, rows.Err()
}

// SlotInfo describes an existing replication slot.
type SlotInfo struct {
	Plugin    string
	Database  string
	Temporary bool
	Active    bool
	// ActivePID is the process streaming it (0 when none).
	ActivePID    int
	ConfirmedLSN broadcaster.LSN
	// WALStatus is pg_replication_slots.wal_status ("reserved", "extended",
	// "unreserved", "lost").
	WALStatus string
}

// CreateSlotSQL is the statement that creates the pgoutput slot, and
// returns its name and position. On PostgreSQL 17 and later the slot is a
// failover slot (failover => true): a physical standby with
// sync_replication_slots keeps a copy of it, so that it survives the
// standby's promotion.
func CreateSlotSQL(slot string, major int) string {
	if major >= 17 {
		return fmt.Sprintf("SELECT slot_name, lsn::text FROM pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput', failover => true)", quoteLiteral(slot))
	}
	return fmt.Sprintf("SELECT slot_name, lsn::text FROM pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')", quoteLiteral(slot))
}

// LookupSlot returns the named slot, or nil when there is none.
func LookupSlot(ctx context.Context, q Querier, name string) (*SlotInfo, error) {
	var (
		si  SlotInfo
		lsn *string
		db  *string
		ws  *string
	)
	err := q.QueryRow(ctx, `
		SELECT plugin, database, temporary, active, coalesce(active_pid, 0), confirmed_flush_lsn::text, wal_status
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&si.Plugin, &db, &si.Temporary, &si.Active, &si.ActivePID, &lsn, &ws)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up slot %s: %w", name, err)
	}
	if db != nil {
		si.Database = *db
	}
	if ws != nil {
		si.WALStatus = *ws
	}
	if lsn != nil {
		si.ConfirmedLSN, _ = broadcaster.ParseLSN(*lsn)
	}
	return &si, nil
}

// Ident quotes an identifier, or a schema-qualified name, for SQL.
func Ident(name string) string {
	if s, t, ok := strings.Cut(name, "."); ok {
		return pgx.Identifier{s, t}.Sanitize()
	}
	return pgx.Identifier{name}.Sanitize()
}

// SetupPlan lists the SQL that makes a database ready: the publication with
// every mapped table, the replica identities the mapping needs, and the slot.
type SetupPlan struct {
	Statements []string
}

// PlanSetup compares the database with what is needed and returns the
// statements that close the gap; none when it is ready. fullIdentity lists
// tables that need REPLICA IDENTITY FULL.
func PlanSetup(ctx context.Context, q Querier, pub, slot string, tables []string, fullIdentity []string) (*SetupPlan, error) {
	plan := &SetupPlan{}
	have, all, exists, err := PublicationTables(ctx, q, pub)
	if err != nil {
		return nil, err
	}
	sorted := append([]string(nil), tables...)
	sort.Strings(sorted)
	var quoted []string
	for _, t := range sorted {
		if !have[t] {
			quoted = append(quoted, Ident(t))
		}
	}
	switch {
	case !exists:
		plan.Statements = append(plan.Statements, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", Ident(pub), strings.Join(quoted, ", ")))
	case !all && len(quoted) > 0:
		plan.Statements = append(plan.Statements, fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", Ident(pub), strings.Join(quoted, ", ")))
	}
	if len(fullIdentity) > 0 {
		infos, err := LoadTables(ctx, q, fullIdentity)
		if err != nil {
			return nil, err
		}
		full := append([]string(nil), fullIdentity...)
		sort.Strings(full)
		for _, t := range full {
			if info, ok := infos[t]; ok && info.ReplicaIdentity != broadcaster.IdentityFull {
				plan.Statements = append(plan.Statements, fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL", Ident(t)))
			}
		}
	}
	si, err := LookupSlot(ctx, q, slot)
	if err != nil {
		return nil, err
	}
	if si == nil {
		var major int
		if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
			return nil, fmt.Errorf("server version: %w", err)
		}
		plan.Statements = append(plan.Statements, CreateSlotSQL(slot, major))
	}
	return plan, nil
}

// Apply runs the plan's statements in order, stopping at the first error.
func (p *SetupPlan) Apply(ctx context.Context, conn *pgx.Conn) error {
	for _, st := range p.Statements {
		if _, err := conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}

// visibleSQL reports whether the transaction with the 32-bit id $1 is
// visible to a snapshot taken now, widening the id to the 64-bit form with
// the epoch of the current snapshot's xmax (the one before, when the id is
// larger than xmax's low half: it wrapped since).
const visibleSQL = `WITH s AS (SELECT txid_current_snapshot() AS snap)
SELECT txid_visible_in_snapshot(
	(((txid_snapshot_xmax(snap) >> 32) - CASE WHEN $1::bigint > (txid_snapshot_xmax(snap) & 4294967295) THEN 1 ELSE 0 END) << 32) | $1::bigint,
	snap)
FROM s`

// AwaitVisible waits until the transaction xid is visible to new
// snapshots. A transaction's changes can reach a logical replication
// client a moment before the committing backend has left the proc array,
// and a query made on hearing of them may still see the rows as they were:
// an access re-check after a membership change must not. It polls for at
// most timeout and reports whether the transaction became visible.
func AwaitVisible(parent context.Context, q Querier, xid uint32, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		var visible bool
		rows, err := q.Query(ctx, visibleSQL, int64(xid))
		if err == nil {
			if rows.Next() {
				err = rows.Scan(&visible)
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		switch {
		case err != nil && ctx.Err() != nil && parent.Err() == nil:
			// The timeout ended a query (a slow database): not visible
			// within it, as when it ends between two.
			return false, nil
		case err != nil:
			return false, fmt.Errorf("cdc: is transaction %d visible: %w", xid, err)
		case visible:
			return true, nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return false, nil
		}
	}
}
