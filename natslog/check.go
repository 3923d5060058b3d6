package natslog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Finding is one thing Check found, about a config key (log.nats.*).
type Finding struct {
	Key string
	Msg string
}

func (f Finding) String() string { return f.Key + ": " + f.Msg }

// CheckResult is what Check found: Problems make `check` fail, Notes are
// what serve or setup will do (create the stream).
type CheckResult struct {
	Problems []Finding
	Notes    []string
	// Exists reports that the stream exists.
	Exists bool
}

func (r *CheckResult) fail(key, format string, a ...any) {
	r.Problems = append(r.Problems, Finding{Key: key, Msg: fmt.Sprintf(format, a...)})
}

// Check checks the bus the options describe, creating nothing: JetStream
// answers for the account; the stream exists, or (when it is missing) can
// be created with the configured replicas (the account's limits, and a
// server that is not clustered or a cluster with fewer servers than
// replicas, as its servers advertise them); when it exists, it takes the
// subjects the writer publishes to; and no other stream's subjects overlap
// <prefix>.>. The error is for a JetStream that could not be asked at all.
func Check(ctx context.Context, js jetstream.JetStream, o Options) (CheckResult, error) {
	o = o.withDefaults()
	var r CheckResult
	subject := o.SubjectPrefix + ".>"
	acct, err := js.AccountInfo(ctx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		r.fail("log.nats.urls", "JetStream is not enabled for this NATS account (server option -js, or the account's jetstream limits)")
		return r, nil
	case err != nil:
		r.fail("log.nats.urls", "cannot read the account's JetStream info: %v", err)
		return r, nil
	}

	info, err := js.Stream(ctx, o.Stream)
	switch {
	case err == nil:
		r.Exists = true
		si := info.CachedInfo()
		covered := false
		for _, s := range si.Config.Subjects {
			if SubjectCovers(s, subject) {
				covered = true
			}
		}
		if !covered {
			r.fail("log.nats.subject_prefix", "stream %s takes subjects %s, not %s: events would not be stored (another stream of that name? choose another log.nats.stream)", o.Stream, strings.Join(si.Config.Subjects, ", "), subject)
		}
		if si.Config.Replicas != o.Replicas {
			r.Notes = append(r.Notes, fmt.Sprintf("stream %s has %d replica(s), log.nats.replicas says %d: an existing stream is left as it is (change it with `nats stream edit`)", o.Stream, si.Config.Replicas, o.Replicas))
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if !o.Create {
			r.fail("log.nats.stream", "stream %s does not exist: run `cdc-broadcaster setup` (or set source.create: true)", o.Stream)
		} else {
			r.Notes = append(r.Notes, fmt.Sprintf("stream %s does not exist yet; serve creates it (source.create is true)", o.Stream))
		}
		checkCreatable(&r, js, acct, o)
	default:
		r.fail("log.nats.stream", "cannot look up stream %s: %v", o.Stream, err)
	}

	lister := js.ListStreams(ctx)
	for si := range lister.Info() {
		if si.Config.Name == o.Stream {
			continue
		}
		for _, s := range si.Config.Subjects {
			if SubjectsOverlap(s, subject) {
				r.fail("log.nats.subject_prefix", "the subjects of stream %s (%s) overlap %s, this stream's: a NATS subject can be stored by one stream only; choose another log.nats.subject_prefix", si.Config.Name, s, subject)
				break
			}
		}
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		r.fail("log.nats.urls", "cannot list the account's streams to compare their subjects: %v", err)
	}
	return r, nil
}

// checkCreatable reports what would keep a missing stream from being
// created with o.Replicas replicas.
func checkCreatable(r *CheckResult, js jetstream.JetStream, acct *jetstream.AccountInfo, o Options) {
	nc := js.Conn()
	if o.Replicas > 1 {
		if nc.ConnectedClusterName() == "" {
			r.fail("log.nats.replicas", "%d replicas need a JetStream cluster of at least %d servers, and %s is a single server: set log.nats.replicas: 1", o.Replicas, o.Replicas, nc.ConnectedUrlRedacted())
		} else if len(nc.DiscoveredServers()) > 0 {
			// The servers advertise each other's client URLs: the
			// connection's pool holds the whole cluster (and maybe a
			// configured address more, so this never undercounts).
			if n := len(nc.Servers()); n < o.Replicas {
				r.fail("log.nats.replicas", "%d replicas need at least %d JetStream servers, and cluster %s has %d", o.Replicas, o.Replicas, nc.ConnectedClusterName(), n)
			}
		}
	}
	tier := acct.Tier
	if len(acct.Tiers) > 0 {
		t, ok := acct.Tiers[fmt.Sprintf("R%d", o.Replicas)]
		if !ok {
			r.fail("log.nats.replicas", "the NATS account has no JetStream limits for streams of %d replicas (tiers %s)", o.Replicas, strings.Join(sortedKeys(acct.Tiers), ", "))
			return
		}
		tier = t
	}
	if limit := tier.Limits.MaxStreams; limit > 0 && tier.Streams >= limit {
		r.fail("log.nats.stream", "the NATS account holds %d streams, its limit: stream %s cannot be created", tier.Streams, o.Stream)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// SubjectsOverlap reports whether some subject matches both NATS subject
// filters a and b (tokens separated by '.', '*' one token, '>' one or more
// at the end).
func SubjectsOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) && i == len(bt):
			return true
		case i == len(at) || i == len(bt):
			return false // '>' needs a token more
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
			continue
		}
		return false
	}
}

// SubjectCovers reports whether every subject that filter sub matches is
// matched by filter super.
func SubjectCovers(super, sub string) bool {
	pt, st := strings.Split(super, "."), strings.Split(sub, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(pt) && i == len(st):
			return true
		case i == len(pt):
			return false
		case pt[i] == ">":
			return i < len(st)
		case i == len(st):
			return false
		case pt[i] == "*" && st[i] != ">":
			continue
		case pt[i] == st[i]:
			continue
		}
		return false
	}
}
