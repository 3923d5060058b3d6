package main

import (
	"context"
	"fmt"
	"time"

	"github.com/treasure-home/cdc-broadcaster/acl"
)

// TokenCommand mints a development JWT with the configured HMAC secret.
type TokenCommand struct {
	main       *Main
	configPath string
	sub, role  string
	ttl        time.Duration
}

// Run parses flags and prints a token.
func (c *TokenCommand) Run(_ context.Context, args []string) error {
	fs := c.main.newFlagSet("token")
	fs.StringVar(&c.configPath, "config", "config.yaml", "config file")
	fs.StringVar(&c.sub, "sub", "", "user id (required)")
	fs.StringVar(&c.role, "role", "", "role claim (e.g. teacher)")
	fs.DurationVar(&c.ttl, "ttl", time.Hour, "lifetime")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if c.sub == "" {
		return &usageError{"token: --sub is required"}
	}
	if c.ttl <= 0 {
		return &usageError{"token: --ttl must be positive"}
	}
	cfg, err := c.main.loadConfig(c.configPath)
	if err != nil {
		return err
	}
	tok, err := acl.Mint(cfg.Auth.JWT, acl.MintOptions{Subject: c.sub, Role: c.role, TTL: c.ttl})
	if err != nil {
		return &configError{err}
	}
	fmt.Fprintln(c.main.Stdout, tok)
	return nil
}
