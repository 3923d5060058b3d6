// Package acl verifies the school's JWTs and decides who may read which
// channel. For development and tests it also mints tokens with the
// configured HMAC secret.
package acl
