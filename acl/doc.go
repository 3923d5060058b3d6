// Package acl verifies the school's JWTs and decides who may read which
// channel (docs/config.md, "Channels and access rules"; docs/protocol.md,
// "Transport and authentication"). For development and tests it also mints
// tokens with the configured HMAC secret (Mint).
//
// # Tokens
//
// A Verifier checks a token against auth.jwt. Only the algorithms listed in
// auth.jwt.algorithms are accepted ("none" never), and the key is chosen by
// the token's algorithm family: HS* tokens are checked with auth.jwt.secret
// and nothing else; RS*, ES* and EdDSA tokens only with public keys of the
// matching type (and curve) from public_key_file, jwks_file or jwks_url.
// So an RS256 token can never be checked with the HMAC secret, and an HS256
// token keyed with the public key's PEM text fails. A JWKS is looked up by
// kid when the token has one (a token without kid is tried against every
// key of the right type); a jwks_url is fetched at start, re-fetched hourly
// and, at most once a minute, when an unknown kid shows up (github.com/
// MicahParks/keyfunc). exp is optional but enforced when present, nbf too,
// both with auth.jwt.leeway; issuer and audience are checked when set.
// Every failure wraps ErrInvalidToken with a fixed reason that never quotes
// the token.
//
// # Channels
//
// Rules compiles the channel patterns, such as
// "exam:{examId}:student:{studentId}". Each becomes one anchored
// regexp of its literal text with each param's own regexp embedded (their
// anchors made empty, their groups non-capturing), so every way of
// splitting a name is considered; what it captures is checked again
// against each param's anchored regexp as configured. A second regexp with
// a lazy (?s:.*?) per param tells a name of the right shape with a bad
// param (ErrInvalidChannel) from one of no known shape
// (ErrUnknownChannel). The first pattern that a name fits wins. Values
// such as "1' OR '1'='1" fail the param regexps and never reach SQL, and
// even valid values reach it only as bound parameters.
//
// # Access
//
// The allow entries of a pattern are alternatives; within one, every
// condition given (roles, self, claim, when, sql) must hold. Entries
// without sql are tried first. `when` is CEL over claims (map(string,
// dyn)) and params (map(string, string)), type-checked by NewRules. `sql`
// queries have their :user_id, :role and :<param> names turned into $1..$n
// by NewRules; the values are passed as strings, and a data exception
// (SQLSTATE class 22, such as 22P02 for a non-numeric value) means "not
// allowed". Answers are cached per (rule, values) for auth.acl_cache_ttl
// (0: no cache) in an LRU of RulesOptions.CacheSize entries; Invalidate
// drops those of the patterns whose recheck_on names a changed table, and
// an answer read while an invalidation happened is not cached.
//
// # Concurrency
//
// Verifier and Rules are safe for concurrent use by any number of
// goroutines. Verifier.Close stops the JWKS refresh goroutine; Rules
// starts none.
package acl
