package main

import (
	"flag"
	"fmt"
	"strings"
)

// commandHelp is what `<command> -h` says besides the flags.
type commandHelp struct {
	purpose string   // one line
	example string   // a command line
	env     []string // the CDC_* variables the command mostly reads
}

// helps holds each command's help, by name.
var helps = map[string]commandHelp{
	"serve": {
		purpose: "Run the service: replication -> mapping -> event log -> WebSocket and HTTP clients. Everything check verifies is verified first; a config error exits 2 before anything is created in the database.",
		example: "CDC_AUTH_JWT_SECRET=... cdc-broadcaster serve --config /etc/cdc-broadcaster/config.yaml",
		env:     []string{"CDC_SOURCE_DATABASE_URL", "CDC_AUTH_JWT_SECRET"},
	},
	"check": {
		purpose: "Verify the config against the live database, as serve would, and with log.backend nats the NATS stream, without changing anything; print every problem (exit 1) and warning.",
		example: "CDC_AUTH_JWT_SECRET=... cdc-broadcaster check --config config.yaml",
		env:     []string{"CDC_SOURCE_DATABASE_URL", "CDC_AUTH_JWT_SECRET"},
	},
	"setup": {
		purpose: "Create the publication, the replication slot and the replica identities the mapping needs, and with log.backend nats the stream; idempotent. Needs no JWT key material.",
		example: "cdc-broadcaster setup --dry-run --config config.yaml",
		env:     []string{"CDC_SOURCE_DATABASE_URL", "CDC_SOURCE_SLOT", "CDC_SOURCE_PUBLICATION"},
	},
	"tail": {
		purpose: "Print mapped and emitted events as JSON lines from a temporary slot, touching nothing else; until interrupted. Needs no JWT key material.",
		example: "cdc-broadcaster tail --types 'exam.*,user.created' --config config.yaml",
		env:     []string{"CDC_SOURCE_DATABASE_URL", "CDC_SOURCE_PUBLICATION"},
	},
	"types": {
		purpose: "Write a TypeScript declaration file of the mapping's events, from the config and the live database: for each event type its operations and the fields of data and oldData, typed as the server encodes each column, the emitted event types emit.events declares with their data fields, and the channel names (Channel). The browser adapter's generics take it, so that the compiler checks e.data.score. Exits 1 when the mapping does not fit the database or the database cannot be reached. Needs no JWT key material.",
		example: "cdc-broadcaster types --config config.yaml --out src/realtime-events.d.ts",
		env:     []string{"CDC_SOURCE_DATABASE_URL", "CDC_SOURCE_PUBLICATION"},
	},
	"token": {
		purpose: "Mint a JWT with the configured HMAC secret, for development and tests.",
		example: "CDC_AUTH_JWT_SECRET=... cdc-broadcaster token --sub 19 --role teacher --ttl 1h",
		env:     []string{"CDC_AUTH_JWT_SECRET", "CDC_AUTH_JWT_ISSUER", "CDC_AUTH_JWT_AUDIENCE"},
	},
	"version": {
		purpose: "Print the version and build information (also: cdc-broadcaster --version).",
		example: "cdc-broadcaster version",
	},
}

// commandUsage is the help of the command fs parses flags for: its
// purpose, an example, its flags and the environment it reads.
func commandUsage(fs *flag.FlagSet) string {
	h := helps[fs.Name()]
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: cdc-broadcaster %s [flags]\n\n%s\n\nExample:\n  %s\n", fs.Name(), h.purpose, h.example)
	flags := false
	fs.VisitAll(func(*flag.Flag) { flags = true })
	if flags {
		b.WriteString("\nFlags:\n")
		out := fs.Output()
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
	if len(h.env) > 0 {
		fmt.Fprintf(&b, "\nEnvironment: any config key can be set as CDC_ + its path in upper case with _ for .; this command reads mostly:\n  %s\n", strings.Join(h.env, "\n  "))
	}
	return b.String()
}
