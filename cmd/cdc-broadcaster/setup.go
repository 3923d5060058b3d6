package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// SetupCommand prepares the database: publication, replica identities, slot.
type SetupCommand struct {
	main   *Main
	dryRun bool
}

// Run parses flags and plans, then prints or applies the plan.
func (c *SetupCommand) Run(ctx context.Context, args []string) error {
	cfg, log, err := c.main.configured("setup", args, false, func(fs *flag.FlagSet) {
		fs.BoolVar(&c.dryRun, "dry-run", false, "print the SQL instead of running it")
	}, nil)
	if err != nil {
		return err
	}
	conn, err := connect(ctx, cfg.Source.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	mapper, _, err := compileMapping(ctx, conn, cfg, discard{}, log)
	if err != nil {
		return err
	}
	// A slot of that name in another database would pass for done.
	pf := &preflight{cfg: cfg}
	if err := pf.checkSlot(ctx, conn); err != nil {
		return err
	}
	if err := pf.err(); err != nil {
		return err
	}
	var full []string
	for _, req := range mapper.Requirements() {
		if len(req.OldColumns) > 0 {
			full = append(full, req.Table)
		}
	}
	plan, err := cdc.PlanSetup(ctx, conn, cfg.Source.Publication, cfg.Source.Slot, publishedTables(cfg), full)
	if err != nil {
		return err
	}
	for _, st := range plan.Statements {
		fmt.Fprintf(c.main.Stdout, "%s;\n", st)
	}
	if !c.dryRun && len(plan.Statements) > 0 {
		if err := plan.Apply(ctx, conn); err != nil {
			return err
		}
		fmt.Fprintf(c.main.Stdout, "-- done: %d statement(s)\n", len(plan.Statements))
	}
	stream := false
	if cfg.Log.Backend == config.BackendNATS {
		if stream, err = setupStream(ctx, cfg, c.main.Stdout, c.dryRun); err != nil {
			return err
		}
		if stream && !c.dryRun {
			fmt.Fprintf(c.main.Stdout, "-- done: stream %s created\n", cfg.Log.NATS.Stream)
		}
	}
	if len(plan.Statements) == 0 && !stream {
		what := "publication, replica identities and slot are"
		if cfg.Log.Backend == config.BackendNATS {
			what = "publication, replica identities, slot and stream are"
		}
		fmt.Fprintf(c.main.Stdout, "-- nothing to do: %s in place\n", what)
	}
	return nil
}
