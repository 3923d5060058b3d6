package main

import (
	"github.com/treasure-home/cdc-broadcaster/cdc"
	"github.com/treasure-home/cdc-broadcaster/config"
)

// recheckTables returns the tables named in any channel's recheck_on.
func recheckTables(cfg *config.Config) []string {
	seen := make(map[string]bool)
	var out []string
	for _, ch := range cfg.Channels {
		for _, t := range ch.RecheckOn {
			t = cdc.Normalize(t)
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// publishedTables is every table the publication must hold: the mapped
// ones and those whose changes re-check access.
func publishedTables(cfg *config.Config) []string {
	seen := make(map[string]bool)
	var out []string
	for _, t := range append(mappedTables(cfg), recheckTables(cfg)...) {
		t = cdc.Normalize(t)
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}
