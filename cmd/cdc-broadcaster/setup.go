package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/treasure-home/cdc-broadcaster/cdc"
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
	if len(plan.Statements) == 0 {
		fmt.Fprintln(c.main.Stdout, "-- nothing to do: publication, replica identities and slot are in place")
		return nil
	}
	for _, st := range plan.Statements {
		fmt.Fprintf(c.main.Stdout, "%s;\n", st)
	}
	if c.dryRun {
		return nil
	}
	if err := plan.Apply(ctx, conn); err != nil {
		return err
	}
	fmt.Fprintf(c.main.Stdout, "-- done: %d statement(s)\n", len(plan.Statements))
	return nil
}
