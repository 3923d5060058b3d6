package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// TailCommand prints mapped events as JSON lines from a temporary slot.
type TailCommand struct {
	main  *Main
	types string
}

// Run parses flags and tails until ctx ends.
func (c *TailCommand) Run(ctx context.Context, args []string) error {
	var globs []string
	cfg, log, err := c.main.configured("tail", args, false, func(fs *flag.FlagSet) {
		fs.StringVar(&c.types, "types", "", "comma-separated globs of event types to print (e.g. exam.*,user.created); default all")
	}, func() (err error) {
		globs, err = parseGlobs(c.types)
		return err
	})
	if err != nil {
		return err
	}
	catalogue := eventTypes(cfg)
	for _, g := range globs {
		// A glob of emit.types stands for the types it allows.
		if !slices.ContainsFunc(append(catalogue, emitGlobs(cfg)...), func(t string) bool { ok, _ := path.Match(g, t); return ok }) {
			fmt.Fprintf(c.main.Stderr, "cdc-broadcaster: warning: tail: --types %q matches no event type of the mapping or of emit, so it prints nothing; the types are: %s\n", g, strings.Join(catalogue, ", "))
		}
	}
	out := &lineSink{w: bufio.NewWriter(c.main.Stdout), globs: globs}

	conn, err := connect(ctx, cfg.Source.DatabaseURL)
	if err != nil {
		return err
	}
	mapper, _, err := compileMapping(ctx, conn, cfg, out, log)
	conn.Close(context.Background())
	if err != nil {
		return err
	}
	stream, err := cdc.NewStream(cdc.Config{
		DatabaseURL:    cfg.Source.DatabaseURL,
		Slot:           "cdc_tail",
		Publication:    cfg.Source.Publication,
		Temporary:      true,
		StatusInterval: cfg.Source.StatusInterval,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	return stream.Run(ctx, mapper)
}

// eventTypes is the config's catalogue: every event type the mapping can
// produce and every emitted one emit.events declares, sorted. A mapping
// without events produces the default four of its domain.
func eventTypes(cfg *config.Config) []string {
	var types []string
	for _, mp := range cfg.Mappings {
		if len(mp.Events) == 0 {
			for _, action := range []string{"created", "updated", "deleted", "truncated"} {
				types = append(types, mp.Domain+"."+action)
			}
		}
		for _, ev := range mp.Events {
			types = append(types, ev.Type)
		}
	}
	for _, ev := range cfg.Emit.Events {
		types = append(types, ev.Type)
	}
	slices.Sort(types)
	return slices.Compact(types)
}

// emitGlobs are the globs of emit.types, when emit is on: the emitted types
// not declared one by one.
func emitGlobs(cfg *config.Config) []string {
	if !cfg.Emit.Enabled {
		return nil
	}
	return cfg.Emit.Types
}

// parseGlobs splits and checks a --types value.
func parseGlobs(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var globs []string
	for _, g := range strings.Split(s, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		if _, err := path.Match(g, ""); err != nil {
			return nil, &usageError{msg: fmt.Sprintf("tail: --types: bad pattern %q: %v", g, err)}
		}
		globs = append(globs, g)
	}
	return globs, nil
}

// lineSink writes each event as one JSON line, the envelope clients see:
// {"channels":[...],"event":{...}}.
type lineSink struct {
	w     *bufio.Writer
	globs []string
}

type envelope struct {
	Channels []string           `json:"channels"`
	Event    *broadcaster.Event `json:"event"`
}

func (s *lineSink) Append(_ context.Context, b broadcaster.Batch) error {
	for i := range b.Events {
		ev := &b.Events[i]
		if ev.IsControl() || !s.match(ev.Type) {
			continue
		}
		channels := ev.Channels
		if channels == nil {
			channels = []string{}
		}
		line, err := json.Marshal(envelope{Channels: channels, Event: ev})
		if err != nil {
			return fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		s.w.Write(line)
		s.w.WriteByte('\n')
	}
	if err := s.w.Flush(); err != nil && err != io.ErrShortWrite {
		return fmt.Errorf("write events: %w", err)
	}
	return nil
}

func (s *lineSink) match(eventType string) bool {
	if len(s.globs) == 0 {
		return true
	}
	for _, g := range s.globs {
		if ok, _ := path.Match(g, eventType); ok {
			return true
		}
	}
	return false
}
