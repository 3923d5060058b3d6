package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/treasure-home/cdc-broadcaster/acl"
)

// TokenCommand mints a development JWT with the configured HMAC secret.
type TokenCommand struct {
	main      *Main
	sub, role string
	ttl       time.Duration
}

// Run parses flags and prints a token.
func (c *TokenCommand) Run(_ context.Context, args []string) error {
	cfg, _, err := c.main.configured("token", args, true, func(fs *flag.FlagSet) {
		fs.StringVar(&c.sub, "sub", "", "user id (required)")
		fs.StringVar(&c.role, "role", "", "role claim (e.g. teacher)")
		fs.DurationVar(&c.ttl, "ttl", time.Hour, "lifetime")
	}, func() error {
		switch {
		case c.sub == "":
			return &usageError{msg: "token: --sub is required"}
		case c.ttl <= 0:
			return &usageError{msg: "token: --ttl must be positive"}
		}
		return nil
	})
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
