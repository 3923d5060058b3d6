package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"github.com/jackc/pgx/v5/pgtype"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// rowTypePrefix starts the CEL type name of a table's rows: "row.exams".
const rowTypePrefix = "row."

// rowType is the CEL object type of one table's rows: one field per column
// of the table as the schema had it at load. A field's slot is the column's
// index in that schema.
type rowType struct {
	name   string
	names  []string
	fields map[string]*types.FieldType
}

// rowTypes is the types.Provider that declares the row type of every mapped
// table, so that `new.nosuch` and `new.id == 'x'` fail type-checking at
// load. At run time the fields are read from a *celRow by their GetFrom
// functions, without building a map per change.
type rowTypes struct {
	byName map[string]*rowType
}

var _ types.Provider = (*rowTypes)(nil)

// add declares the row type of rel and returns its CEL type.
func (p *rowTypes) add(table string, rel *broadcaster.Relation) *types.Type {
	rt := &rowType{
		name:   rowTypePrefix + table,
		names:  make([]string, len(rel.Columns)),
		fields: make(map[string]*types.FieldType, len(rel.Columns)),
	}
	for i, c := range rel.Columns {
		rt.names[i] = c.Name
		if _, dup := rt.fields[c.Name]; dup {
			continue
		}
		rt.fields[c.Name] = fieldType(i, c)
	}
	p.byName[rt.name] = rt
	return types.NewObjectType(rt.name)
}

// fieldType declares column c, found at slot in the load-time schema.
func fieldType(slot int, c broadcaster.Column) *types.FieldType {
	return &types.FieldType{
		Type: celType(c.TypeOID, !c.Key),
		IsSet: func(target any) bool {
			r, ok := target.(*celRow)
			if !ok {
				return false
			}
			_, why := r.lookup(slot)
			return why == known
		},
		GetFrom: func(target any) (any, error) {
			r, ok := target.(*celRow)
			if !ok {
				return nil, fmt.Errorf("column %s: not a row (%T)", c.Name, target)
			}
			v, why := r.lookup(slot)
			if why != known {
				return nil, r.absent(c.Name, why)
			}
			return celValue(v)
		},
	}
}

// EnumValue implements types.Provider: rows declare no enums.
func (p *rowTypes) EnumValue(name string) ref.Val {
	return types.NewErr("unknown enum name '%s'", name)
}

// FindIdent implements types.Provider: rows declare no identifiers.
func (p *rowTypes) FindIdent(string) (ref.Val, bool) { return nil, false }

// FindStructType implements types.Provider.
func (p *rowTypes) FindStructType(name string) (*types.Type, bool) {
	if _, ok := p.byName[name]; !ok {
		return nil, false
	}
	return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
}

// FindStructFieldNames implements types.Provider.
func (p *rowTypes) FindStructFieldNames(name string) ([]string, bool) {
	rt, ok := p.byName[name]
	if !ok {
		return nil, false
	}
	return append([]string(nil), rt.names...), true
}

// FindStructFieldType implements types.Provider.
func (p *rowTypes) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	rt, ok := p.byName[name]
	if !ok {
		return nil, false
	}
	ft, ok := rt.fields[field]
	return ft, ok
}

// NewValue implements types.Provider. Rows come from the database only; an
// expression cannot build one.
func (p *rowTypes) NewValue(name string, _ map[string]ref.Val) ref.Val {
	return types.NewErr("cannot create a value of type '%s'", name)
}

// Type OIDs of the built-in types that decode to something other than a
// string (see package cdc).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidXID         = 28
	oidCID         = 29
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// celType returns the CEL type of a column of type oid. Nullable columns
// get CEL's nullable wrapper types where CEL has one, so that both
// `new.score > 3` and `new.score == null` type-check.
func celType(oid uint32, nullable bool) *types.Type {
	var t *types.Type
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID, oidXID, oidCID:
		t = types.IntType
	case oidFloat4, oidFloat8, oidNumeric:
		t = types.DoubleType
	case oidBool:
		t = types.BoolType
	case oidBytea:
		t = types.BytesType
	case oidTimestamp, oidTimestamptz:
		return types.TimestampType
	case oidJSON, oidJSONB:
		return types.DynType
	default:
		if isArrayOID(oid) {
			return types.NewListType(types.DynType)
		}
		// text, varchar, uuid, date, enums and every type decoded as its text.
		t = types.StringType
	}
	if nullable {
		return types.NewNullableType(t)
	}
	return t
}

// pgTypes knows the array types, the same way package cdc decodes them.
var pgTypes = sync.OnceValue(func() *lockedTypeMap { return &lockedTypeMap{m: pgtype.NewMap()} })

// lockedTypeMap guards a pgtype.Map, which is not documented as safe for
// concurrent reads.
type lockedTypeMap struct {
	mu sync.Mutex // protects m
	m  *pgtype.Map
}

// isArrayOID reports whether oid is an array type pgx knows.
func isArrayOID(oid uint32) bool {
	tm := pgTypes()
	tm.mu.Lock()
	defer tm.mu.Unlock()
	t, ok := tm.m.TypeForOID(oid)
	if !ok {
		return false
	}
	ac, ok := t.Codec.(*pgtype.ArrayCodec)
	return ok && ac.ElementType != nil
}

// celValue converts a decoded column value to the native value CEL expects
// for the column's declared type; the CEL adapter does the rest.
func celValue(v any) (any, error) {
	switch x := v.(type) {
	case broadcaster.Numeric:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range: ±Inf or 0
			return nil, fmt.Errorf("numeric %q: %w", clip(string(x)), err)
		}
		return f, nil
	case broadcaster.Date:
		return string(x), nil
	case json.RawMessage:
		var out any
		if err := json.Unmarshal(x, &out); err != nil {
			return nil, fmt.Errorf("json value: %w", err)
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i := range x {
			e, err := celValue(x[i])
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	}
	// nil, int64, float64, bool, string, time.Time, []byte: CEL-native.
	return v, nil
}

// celRow is the `new` or `old` of a CEL activation: one side of the change
// being mapped, with its column plan.
type celRow struct {
	c     *broadcaster.Change
	slots []int // load-time column slot → index in c.Rel.Columns, -1 when gone
	old   bool
}

// lookup returns the value of the column at slot, and why it is not known.
func (r *celRow) lookup(slot int) (any, reason) {
	if r.c == nil {
		return nil, noRow
	}
	i := r.slots[slot]
	if i < 0 {
		return nil, dropped
	}
	if r.old {
		return oldValue(r.c, i)
	}
	return newValue(r.c, i)
}

// absent explains why a column has no value.
func (r *celRow) absent(col string, why reason) error {
	side := "new"
	if r.old {
		side = "old"
	}
	return fmt.Errorf("%s.%s: %s", side, col, why.text(r.old))
}

// reason says whether a column's value is known in a change, and why not.
type reason uint8

const (
	known     reason = iota
	noRow            // the change has no such row (no new row on DELETE...)
	dropped          // the column is no longer in the table
	notSent          // the stream did not send it (TOAST or replica identity)
	malformed        // the change's values do not line up with its relation
)

func (w reason) text(old bool) string {
	switch w {
	case noRow:
		if old {
			return "the change has no old row"
		}
		return "the change has no new row"
	case dropped:
		return "the column is no longer in the table"
	case notSent:
		if old {
			return "the old value is not known (the table's replica identity does not provide it)"
		}
		return "the value is an unchanged TOAST value and the old row is not known"
	case malformed:
		return "the change's values do not match its relation"
	}
	return "known"
}

// newValue returns the new row's value of column i. An unchanged TOAST value
// is the old row's value, when the stream sent it.
func newValue(c *broadcaster.Change, i int) (any, reason) {
	if c.New == nil {
		return nil, noRow
	}
	if i >= len(c.New) {
		return nil, malformed
	}
	v := c.New[i]
	if v == broadcaster.Unchanged {
		if ov, why := oldValue(c, i); why == known {
			return ov, known
		}
		return nil, notSent
	}
	return v, known
}

// oldValue returns the old row's value of column i when the change tells it.
func oldValue(c *broadcaster.Change, i int) (any, reason) {
	if i >= len(c.Rel.Columns) {
		return nil, malformed
	}
	switch c.OldKind {
	case broadcaster.OldFull:
		if i >= len(c.Old) {
			return nil, malformed
		}
		if v := c.Old[i]; v != broadcaster.Unchanged {
			return v, known
		}
		return nil, notSent
	case broadcaster.OldKey:
		if i >= len(c.Old) {
			return nil, malformed
		}
		if c.Rel.Columns[i].Key {
			return c.Old[i], known
		}
		return nil, notSent
	}
	switch c.Op {
	case broadcaster.OpUpdate:
		// With a default or index replica identity, pgoutput sends the old
		// key only when the key changed: no old tuple means the key is the
		// new row's.
		ri := c.Rel.ReplicaIdentity
		if c.Rel.Columns[i].Key && (ri == broadcaster.IdentityDefault || ri == broadcaster.IdentityIndex) &&
			i < len(c.New) && c.New[i] != broadcaster.Unchanged {
			return c.New[i], known
		}
		return nil, notSent
	case broadcaster.OpDelete:
		return nil, notSent
	}
	return nil, noRow
}

// opVals are the values of `op`, by broadcaster.Op.
var opVals = [...]ref.Val{
	types.String("unknown"),
	types.String("insert"),
	types.String("update"),
	types.String("delete"),
	types.String("truncate"),
}

// activation binds `new`, `old` and `op` for one evaluation. It is reused:
// the Mapper runs one evaluation at a time.
type activation struct {
	newRow, oldRow celRow
	op             ref.Val
}

var _ interpreter.Activation = (*activation)(nil)

// set points the activation at change c, whose relation's column plan is
// slots.
func (a *activation) set(c *broadcaster.Change, slots []int) {
	a.newRow = celRow{c: c, slots: slots}
	a.oldRow = celRow{c: c, slots: slots, old: true}
	a.op = opVals[0]
	if int(c.Op) < len(opVals) {
		a.op = opVals[c.Op]
	}
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "new":
		return &a.newRow, true
	case "old":
		return &a.oldRow, true
	case "op":
		return a.op, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// newCELEnv returns the environment `when` expressions of all tables share:
// the standard library, the row types and `op`.
func newCELEnv(p *rowTypes) (*cel.Env, error) {
	return cel.NewEnv(
		cel.CustomTypeProvider(p),
		cel.Variable("op", cel.StringType),
	)
}

// tableEnv extends env with `new` and `old` of row type rt.
func tableEnv(env *cel.Env, rt *types.Type) (*cel.Env, error) {
	return env.Extend(cel.Variable("new", rt), cel.Variable("old", rt))
}

// compiled is a checked `when` expression and what it reads.
type compiled struct {
	prg cel.Program
	// cols are the columns read through new. or old.; oldCols those read
	// through old.
	cols, oldCols    []string
	usesNew, usesOld bool
}

// compileWhen compiles and checks expr in the environment of a table.
func compileWhen(tenv *cel.Env, expr string) (*compiled, error) {
	ast, iss := tenv.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, issuesError(iss)
	}
	out := ast.OutputType()
	if !boolResult(out) {
		return nil, fmt.Errorf("the result is %s, want bool", typeText(out))
	}
	prg, err := tenv.Program(ast)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	cp := &compiled{prg: prg}
	celast.PreOrderVisit(ast.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.IdentKind:
			switch e.AsIdent() {
			case "new":
				cp.usesNew = true
			case "old":
				cp.usesOld = true
			}
		case celast.SelectKind:
			s := e.AsSelect()
			op := s.Operand()
			if op.Kind() != celast.IdentKind {
				break
			}
			switch op.AsIdent() {
			case "old":
				cp.oldCols = append(cp.oldCols, s.FieldName())
				cp.cols = append(cp.cols, s.FieldName())
			case "new":
				cp.cols = append(cp.cols, s.FieldName())
			}
		}
	}))
	return cp, nil
}

// boolResult reports whether an expression of type t can be a condition:
// bool, a nullable bool column (null counts as false) or dyn (a json
// column's field), whose value is checked at run time.
func boolResult(t *types.Type) bool {
	return t.IsExactType(types.BoolType) || t.IsExactType(types.DynType) || types.BoolType.IsAssignableType(t)
}

// typeText names a CEL type for operators: "string or null" rather than
// "wrapper(string)".
func typeText(t *types.Type) string {
	s := t.String()
	if inner, ok := strings.CutPrefix(s, "wrapper("); ok && strings.HasSuffix(inner, ")") {
		return strings.TrimSuffix(inner, ")") + " or null"
	}
	return s
}

// issuesError turns cel's issues into one line: "1:8: reason; 1:20: reason".
func issuesError(iss *cel.Issues) error {
	var parts []string
	for _, e := range iss.Errors() {
		msg := e.Message
		if loc := e.Location; loc != nil && loc.Line() > 0 {
			msg = fmt.Sprintf("%d:%d: %s", loc.Line(), loc.Column()+1, msg)
		}
		parts = append(parts, msg)
		if len(parts) == 3 {
			break
		}
	}
	if n := len(iss.Errors()); n > len(parts) {
		parts = append(parts, fmt.Sprintf("and %d more", n-len(parts)))
	}
	if len(parts) == 0 {
		return errors.New(strings.TrimSpace(iss.String()))
	}
	return errors.New(strings.Join(parts, "; "))
}

// evalBool reads the result of a `when`: true only for true. ok is false
// when the result is neither a bool nor null.
func evalBool(v ref.Val) (match, ok bool) {
	switch x := v.(type) {
	case types.Bool:
		return bool(x), true
	case types.Null:
		return false, true
	}
	return false, false
}
