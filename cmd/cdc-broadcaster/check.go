package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// errProblemsFound makes check exit 1 after printing its findings.
var errProblemsFound = errors.New("problems found")

// CheckCommand verifies the config against the live database.
type CheckCommand struct {
	main *Main
}

// Run parses flags, checks, prints every problem and fails when there is one.
func (c *CheckCommand) Run(ctx context.Context, args []string) error {
	// The token key material is checked with the rest (preflight), so
	// that a missing secret is one finding among all the others.
	cfg, log, err := c.main.configured("check", args, false, nil, nil)
	if err != nil {
		return err
	}
	pf := newPreflight(ctx, cfg, preflightOptions{jwt: true, logger: log})
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	for _, e := range pf.problems {
		if e.Key == "source.database_url" {
			return c.report(problems, pf)
		}
	}
	conn, err := connect(ctx, cfg.Source.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := pf.database(ctx, conn); err != nil {
		return err
	}

	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		add("wal_level is %q: logical replication needs wal_level = logical (postgresql.conf, then restart)", walLevel)
	}
	var canReplicate bool
	if err := conn.QueryRow(ctx, "SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&canReplicate); err != nil {
		return fmt.Errorf("read role: %w", err)
	}
	if !canReplicate {
		add("the database user lacks the REPLICATION attribute: ALTER ROLE ... REPLICATION")
	}

	mapper, tables, err := compileMapping(ctx, conn, cfg, discard{}, log)
	if err != nil {
		var ce *configError
		if !errors.As(err, &ce) {
			return err
		}
		var errs config.Errors
		if errors.As(ce.err, &errs) {
			for _, e := range errs {
				add("%s", e.Error())
			}
		} else {
			add("%v", ce.err)
		}
	}

	pubTables, all, pubExists, err := cdc.PublicationTables(ctx, conn, cfg.Source.Publication)
	if err != nil {
		return err
	}
	switch {
	case !pubExists && cfg.Source.Create:
		fmt.Fprintf(c.main.Stdout, "note: publication %q does not exist yet; serve creates it (source.create is true)\n", cfg.Source.Publication)
	case !pubExists:
		add("publication %q does not exist: run `cdc-broadcaster setup` (or set source.create: true)", cfg.Source.Publication)
	case !all:
		for i, mp := range cfg.Mappings {
			if _, ok := tables[cdc.Normalize(mp.Table)]; ok && !pubTables[cdc.Normalize(mp.Table)] {
				if cfg.Source.Create {
					fmt.Fprintf(c.main.Stdout, "note: table %s is not in publication %q yet; serve adds it (source.create is true)\n", mp.Table, cfg.Source.Publication)
					continue
				}
				add("%s: table %s is not in publication %q: run `cdc-broadcaster setup`", c.where(cfg, fmt.Sprintf("mappings[%d].table", i)), mp.Table, cfg.Source.Publication)
			}
		}
	}

	slot, err := cdc.LookupSlot(ctx, conn, cfg.Source.Slot)
	if err != nil {
		return err
	}
	switch {
	case slot == nil && !cfg.Source.Create:
		add("replication slot %q does not exist: run `cdc-broadcaster setup` (or set source.create: true)", cfg.Source.Slot)
	case slot != nil && slot.Plugin != "pgoutput":
		add("replication slot %q uses plugin %q; it must use pgoutput", cfg.Source.Slot, slot.Plugin)
	case slot != nil && slot.WALStatus == "lost":
		add("replication slot %q is invalidated (wal_status lost): the WAL it needed is gone; drop it and run setup, then clients resync", cfg.Source.Slot)
	}

	if rt := recheckTables(cfg); len(rt) > 0 {
		infos, err := cdc.LoadTables(ctx, conn, rt)
		if err != nil {
			return err
		}
		for i, ch := range cfg.Channels {
			for j, t := range ch.RecheckOn {
				key := fmt.Sprintf("channels[%d].recheck_on[%d]", i, j)
				switch {
				case infos[cdc.Normalize(t)] == nil:
					add("%s: table %s does not exist", c.where(cfg, key), t)
				case pubExists && !all && !pubTables[cdc.Normalize(t)] && !cfg.Source.Create:
					add("%s: table %s is not in publication %q, so its changes cannot re-check access: run `cdc-broadcaster setup`", c.where(cfg, key), t, cfg.Source.Publication)
				}
			}
		}
	}

	if mapper != nil {
		for _, req := range mapper.Requirements() {
			info := tables[req.Table]
			if info == nil || info.ReplicaIdentity == broadcaster.IdentityFull || len(req.OldColumns) == 0 {
				continue
			}
			add("%s: reads old %s of table %s, but its replica identity (%s) only gives old values of %s: ALTER TABLE %s REPLICA IDENTITY FULL (or run `cdc-broadcaster setup`)",
				c.where(cfg, req.Key), strings.Join(req.OldColumns, ", "), req.Table, identityName(info.ReplicaIdentity), listOrNone(info.IdentityColumns), cdc.Ident(req.Table))
		}
		for i, mp := range cfg.Mappings {
			info := tables[cdc.Normalize(mp.Table)]
			if info == nil || len(info.IdentityColumns) > 0 {
				continue
			}
			add("%s: table %s has replica identity %s with no columns: UPDATE and DELETE events would carry no old values (and PostgreSQL refuses UPDATE/DELETE on a published table without one): add a primary key or set REPLICA IDENTITY FULL",
				c.where(cfg, fmt.Sprintf("mappings[%d].table", i)), mp.Table, identityName(info.ReplicaIdentity))
		}
	}

	bus := ""
	if cfg.Log.Backend == config.BackendNATS {
		r, err := checkBus(ctx, cfg)
		if err != nil {
			return err
		}
		for _, p := range r.Problems {
			add("%s: %s", c.where(cfg, p.Key), p.Msg)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(c.main.Stdout, "note: %s\n", n)
		}
		bus = fmt.Sprintf(", stream %q on NATS", cfg.Log.NATS.Stream)
	}

	if len(problems) == 0 && len(pf.problems) == 0 {
		fmt.Fprintf(c.main.Stdout, "ok: %d mappings on %d tables, publication %q, slot %q, wal_level logical%s\n",
			len(cfg.Mappings), len(tables), cfg.Source.Publication, cfg.Source.Slot, bus)
	}
	return c.report(problems, pf)
}

// report prints the problems, the preflight's after the others, then the
// warnings, and fails when there is a problem.
func (c *CheckCommand) report(problems []string, pf *preflight) error {
	for _, e := range pf.problems {
		problems = append(problems, e.Error())
	}
	for _, p := range problems {
		fmt.Fprintf(c.main.Stdout, "problem: %s\n", p)
	}
	for _, w := range pf.warnings {
		fmt.Fprintf(c.main.Stdout, "warning: %s\n", w)
	}
	if len(problems) == 0 {
		return nil
	}
	fmt.Fprintf(c.main.Stdout, "%d problem(s) found\n", len(problems))
	return errProblemsFound
}

// where names a config key with its file and line.
func (c *CheckCommand) where(cfg *config.Config, key string) string {
	e := config.Error{File: cfg.File, Line: cfg.Line(key), Key: key}
	s := e.Error()
	return strings.TrimSuffix(strings.TrimSuffix(s, " "), ":")
}

func identityName(b byte) string {
	switch b {
	case broadcaster.IdentityDefault:
		return "DEFAULT"
	case broadcaster.IdentityFull:
		return "FULL"
	case broadcaster.IdentityIndex:
		return "USING INDEX"
	case broadcaster.IdentityNothing:
		return "NOTHING"
	}
	return string(b)
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "no column"
	}
	return strings.Join(s, ", ")
}
