package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// VersionCommand prints version and build information.
type VersionCommand struct{ main *Main }

// Run prints the version.
func (c *VersionCommand) Run(_ context.Context, args []string) error {
	if err := c.main.parseFlags(c.main.newFlagSet("version"), args); err != nil {
		return err
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
	}
	fmt.Fprintf(c.main.Stdout, "cdc-broadcaster %s (%s %s/%s%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, rev)
	return nil
}
