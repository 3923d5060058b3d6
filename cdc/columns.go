package cdc

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// ColumnDetail is what the catalog says about one column, beyond what the
// stream announces: what a client of its events can rely on.
type ColumnDetail struct {
	Name    string
	TypeOID uint32
	// SQLType is the declared type as PostgreSQL prints it: "bigint",
	// "numeric(5,2)", "text[]".
	SQLType string
	NotNull bool
	// Dims is the number of array dimensions the column declares
	// (PostgreSQL does not enforce it); 0 for other types.
	Dims int
	// Labels are the labels of an enum type, in their order; nil for other
	// types.
	Labels []string
	// Toastable reports whether a value can be stored out of line (TOAST):
	// an UPDATE that leaves such a value unchanged does not send it. Only
	// values longer than a TOAST pointer are ever moved out of line, so a
	// varlena type whose typmod bounds its size below that (numeric(5,2),
	// varchar(4)) is not toastable.
	Toastable bool
	// Generated reports a generated column, which logical replication does
	// not send before PostgreSQL 18.
	Generated bool
}

// toastPointerSize is MAXALIGN(TOAST_POINTER_SIZE): PostgreSQL moves only
// values longer than this out of line (toast_tuple_find_biggest_attribute).
const toastPointerSize = 24

// LoadColumns reads the columns of the named table (a mapping name:
// "exams", "audit.logins") from the catalog, in column order; nil when the
// table does not exist.
func LoadColumns(ctx context.Context, q Querier, name string) ([]ColumnDetail, error) {
	var major int
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}
	generated := "false"
	if major >= 12 {
		generated = "a.attgenerated <> ''"
	}
	schema, table := SplitTable(name)
	rows, err := q.Query(ctx, `
		SELECT a.attname, a.atttypid, pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypmod,
		       a.attnotnull, a.attndims, t.typlen, a.attstorage::text, `+generated+`,
		       CASE WHEN t.typtype = 'e' THEN
		           ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
		       END
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
		  AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, schema, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", name, err)
	}
	defer rows.Close()
	var out []ColumnDetail
	for rows.Next() {
		var (
			c       ColumnDetail
			typmod  int32
			typlen  int16
			storage string
		)
		if err := rows.Scan(&c.Name, &c.TypeOID, &c.SQLType, &typmod, &c.NotNull, &c.Dims, &typlen, &storage, &c.Generated, &c.Labels); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", name, err)
		}
		c.Toastable = typlen == -1 && storage != "p" && !fitsInline(c.TypeOID, typmod)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", name, err)
	}
	return out, nil
}

// fitsInline reports whether the typmod of a varlena type bounds its
// values to at most toastPointerSize bytes, so that they are never stored
// out of line.
func fitsInline(oid uint32, typmod int32) bool {
	return typmod >= 0 && maxSize(oid, typmod) <= toastPointerSize
}

// maxSize is the largest size, header included, of a value of the varlena
// type oid with typmod (>= 0); a large number when unknown.
func maxSize(oid uint32, typmod int32) int {
	const unknown = 1 << 30
	switch oid {
	case pgtype.VarcharOID, pgtype.BPCharOID:
		// typmod is the length in characters plus the header; a character
		// takes at most 4 bytes in any server encoding.
		return 4 + 4*int(typmod-4)
	case pgtype.NumericOID:
		// Base-10000 digits of 2 bytes: p decimal digits span at most
		// p/4 + 2 of them; a 4-byte varlena header and a 2-byte numeric one.
		precision := int((typmod-4)>>16) & 0xffff
		return 4 + 2 + 2*(precision/4+2)
	}
	return unknown
}

// PublishedColumns returns the columns of table that publication pub
// sends: those the server lists (pg_publication_tables.attnames,
// PostgreSQL 15 and later), which is the column list when the table has
// one, less generated columns before PostgreSQL 18 (which never sends
// them, though 15 to 17 list them). It returns nil when the server does not
// say (before 15, or the table is not in the publication yet): then every
// column but a generated one is sent.
func PublishedColumns(ctx context.Context, q Querier, pub, table string) ([]string, error) {
	var major int
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}
	if major < 15 {
		return nil, nil
	}
	schema, name := SplitTable(table)
	var cols []string
	err := q.QueryRow(ctx, `
		SELECT CASE WHEN pt.attnames IS NOT NULL THEN ARRAY(
			SELECT a.attname::text FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = c.oid AND a.attname = ANY(pt.attnames) AND (a.attgenerated = '' OR $4)
			ORDER BY a.attnum) END
		FROM pg_catalog.pg_publication_tables pt
		JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
		WHERE pt.pubname = $1 AND pt.schemaname = $2 AND pt.tablename = $3`,
		pub, schema, name, major >= 18).Scan(&cols)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the columns publication %s sends of %s: %w", pub, table, err)
	}
	return cols, nil
}
