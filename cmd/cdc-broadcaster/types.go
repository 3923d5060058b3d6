package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
	"github.com/treasure-home/cdc-broadcaster/mapping"
	"github.com/treasure-home/cdc-broadcaster/tsgen"
)

// TypesCommand writes the TypeScript declarations of the mapping's events.
type TypesCommand struct {
	main *Main
	out  string
}

// Run parses flags, reads the mapping and the catalog, and writes the
// declarations to --out or stdout. Like check, it exits 1 when the mapping
// does not fit the database or the database cannot be reached.
func (c *TypesCommand) Run(ctx context.Context, args []string) error {
	cfg, log, err := c.main.configured("types", args, false, func(fs *flag.FlagSet) {
		fs.StringVar(&c.out, "out", "", "file to write (replaced whole, only once the declarations are complete); default stdout")
	}, nil)
	if err != nil {
		return err
	}
	conn, err := connect(ctx, cfg.Source.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("read the database name: %w", err)
	}
	mapper, tables, err := compileMapping(ctx, conn, cfg, discard{}, log)
	if err != nil {
		problems, err := configProblems(err)
		if err != nil {
			return err
		}
		lines := make([]string, len(problems))
		for i, p := range problems {
			lines[i] = "  " + p.Error()
		}
		return fmt.Errorf("types: the mapping does not fit database %s:\n%s", db, strings.Join(lines, "\n"))
	}

	src := tsgen.Source{Config: cfg.File, Database: db, Date: time.Now()}
	for _, te := range mapper.Describe() {
		t, err := c.table(ctx, conn, cfg, te, tables[te.Table])
		if err != nil {
			return err
		}
		src.Tables = append(src.Tables, t)
	}
	src.Emitted = emittedTypes(cfg.Emit)
	var buf bytes.Buffer
	if err := tsgen.Write(&buf, src); err != nil {
		return err
	}
	if c.out == "" {
		_, err := c.main.Stdout.Write(buf.Bytes())
		return err
	}
	if err := writeFileAtomic(c.out, buf.Bytes()); err != nil {
		return fmt.Errorf("types: %w", err)
	}
	fmt.Fprintf(c.main.Stderr, "cdc-broadcaster: types: wrote %d event types of %d tables to %s\n", len(tsgen.EventTypes(src)), len(src.Tables), c.out)
	return nil
}

// table describes one mapped table for tsgen: its payload columns as the
// catalog types them, less those the stream never sends (warned about).
func (c *TypesCommand) table(ctx context.Context, conn cdc.Querier, cfg *config.Config, te mapping.TableEvents, info *cdc.TableInfo) (tsgen.Table, error) {
	t := tsgen.Table{Name: te.Table, FullIdentity: info.ReplicaIdentity == broadcaster.IdentityFull}
	for _, e := range te.Events {
		t.Events = append(t.Events, tsgen.Event{Type: e.Type, Op: e.Op, Channels: e.Channels})
	}
	cols, err := cdc.LoadColumns(ctx, conn, te.Table)
	if err != nil {
		return t, err
	}
	published, err := cdc.PublishedColumns(ctx, conn, cfg.Source.Publication, te.Table)
	if err != nil {
		return t, err
	}
	for _, name := range te.Payload {
		i := slices.IndexFunc(cols, func(d cdc.ColumnDetail) bool { return d.Name == name })
		if i < 0 {
			return t, fmt.Errorf("types: column %s of table %s disappeared while reading the catalog", name, te.Table)
		}
		d := cols[i]
		listed := published == nil || slices.Contains(published, name)
		switch {
		case d.Generated && (published == nil || !listed):
			c.warn(cfg, te.Key+".payload", "column %s of table %s is a generated column, which publication %q does not send: events never carry it", name, te.Table, cfg.Source.Publication)
			continue
		case !listed:
			c.warn(cfg, te.Key+".payload", "column %s of table %s is not in publication %q's column list: events never carry it", name, te.Table, cfg.Source.Publication)
			continue
		}
		t.Columns = append(t.Columns, tsgen.Column{
			Name:      d.Name,
			SQLType:   d.SQLType,
			Shape:     cdc.ShapeOf(d.TypeOID),
			Dims:      d.Dims,
			Labels:    d.Labels,
			Nullable:  !d.NotNull,
			Identity:  slices.Contains(info.IdentityColumns, d.Name),
			Toastable: d.Toastable,
		})
	}
	return t, nil
}

// emittedTypes describes for tsgen the event types emit.events declares,
// their fields by name. Validate has read every field's type.
func emittedTypes(e config.Emit) []tsgen.Emitted {
	var out []tsgen.Emitted
	for _, ev := range e.Events {
		t := tsgen.Emitted{Type: ev.Type, Description: ev.Description, Channels: ev.Channels}
		if len(ev.Channels) == 0 {
			t.Channels = e.Channels
		}
		for _, name := range slices.Sorted(maps.Keys(ev.Data)) {
			dt, err := config.ParseDataType(ev.Data[name])
			if err != nil {
				continue
			}
			t.Fields = append(t.Fields, tsgen.EmittedField{Name: name, Type: dt})
		}
		out = append(out, t)
	}
	return out
}

// warn prints a warning about the config key on stderr.
func (c *TypesCommand) warn(cfg *config.Config, key, format string, args ...any) {
	e := config.Error{File: cfg.File, Line: cfg.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
	fmt.Fprintf(c.main.Stderr, "cdc-broadcaster: warning: types: %s\n", e.Error())
}

// writeFileAtomic replaces path with data: written to a temporary file in
// the same directory, then renamed over it, so that a reader (a compiler
// in watch mode) never sees half a file and a failure leaves the old one.
func writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
