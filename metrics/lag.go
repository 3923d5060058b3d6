package metrics

import (
	"time"

	broadcaster "github.com/treasure-home/cdc-broadcaster"
)

// walSample is the server's WAL position at a moment, by the local clock.
type walSample struct {
	lsn broadcaster.LSN
	at  time.Time
}

// maxWALSamples bounds the samples kept while the stream is behind: at the
// default interval, over eleven hours of them.
const maxWALSamples = 4096

// addSample appends s, and when there are too many drops the second oldest:
// the oldest gives the lower bound of a long lag and is kept.
func addSample(samples []walSample, s walSample) []walSample {
	samples = append(samples, s)
	if len(samples) > maxWALSamples {
		samples = append(samples[:1], samples[2:]...)
	}
	return samples
}

// pruneSamples drops the samples the stream has passed, except the newest
// of them, which bounds the lag from above.
func pruneSamples(samples []walSample, pos broadcaster.LSN) []walSample {
	i := 0
	for i+1 < len(samples) && samples[i+1].lsn <= pos {
		i++
	}
	if i == 0 {
		return samples
	}
	return append(samples[:0], samples[i:]...)
}

// Lag is how far the replication stream is behind the server.
type Lag struct {
	// Bytes is the WAL the server had written at its last poll that the
	// stream has not read yet.
	Bytes uint64
	// Duration is how long ago the oldest WAL the stream has not read was
	// written; zero when the stream has read everything the server had at
	// its last poll. See lagOf.
	Duration time.Duration
}

// lagOf computes the lag of a stream that has read up to pos, whose last
// transaction committed at posTime (zero if unknown), from the server's WAL
// positions sampled at known local times, oldest first.
//
// In bytes it is the newest sample's position minus pos. In time there is
// no exact answer without reading the WAL, so it is bounded:
//
//   - 0 when the stream has reached the newest sample: it is caught up, idle
//     or not, whenever the last commit was.
//   - Otherwise the first sample the stream has not reached, taken at t1,
//     held WAL the stream has not read: that WAL was written before t1, so
//     the lag is at least now − t1. The sample before it, taken at t0, has
//     been reached, so the lag is at most now − t0.
//   - Between those bounds the estimate is now − posTime: the transaction
//     after the last one received committed after it. The bounds keep that
//     estimate honest when the last commit is old (a long-idle database
//     that has just written a large transaction) and against clock skew
//     with the database server (posTime is by the server's clock; the
//     samples are by ours).
//
// ok is false when there is no sample yet.
func lagOf(samples []walSample, pos broadcaster.LSN, posTime, now time.Time) (lag Lag, ok bool) {
	if len(samples) == 0 {
		return Lag{}, false
	}
	newest := samples[len(samples)-1]
	if newest.lsn <= pos {
		return Lag{}, true
	}
	lag.Bytes = uint64(newest.lsn - pos)
	k := 0
	for samples[k].lsn <= pos {
		k++
	}
	lower := max(now.Sub(samples[k].at), 0)
	lag.Duration = lower
	if !posTime.IsZero() {
		lag.Duration = max(now.Sub(posTime), lower)
	}
	if k > 0 {
		upper := max(now.Sub(samples[k-1].at), lower)
		lag.Duration = min(lag.Duration, upper)
	}
	return lag, true
}
