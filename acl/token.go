package acl

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/treasure-home/cdc-broadcaster/config"
)

// MintOptions describe a development token.
type MintOptions struct {
	Subject string
	Role    string
	TTL     time.Duration
	// Extra claims to add.
	Extra map[string]any
	// Now defaults to time.Now.
	Now func() time.Time
}

// ErrNoSecret is returned by Mint when no HMAC secret is configured.
var ErrNoSecret = errors.New("auth.jwt.secret is empty: minting needs the HMAC secret (set CDC_AUTH_JWT_SECRET)")

// Mint signs a token with the configured HMAC secret, using the first HMAC
// algorithm of auth.jwt.algorithms and the configured issuer, audience and
// claim names, so that the same config verifies it.
func Mint(cfg config.JWT, o MintOptions) (string, error) {
	if cfg.Secret == "" {
		return "", ErrNoSecret
	}
	var method jwt.SigningMethod
	for _, a := range cfg.Algorithms {
		if strings.HasPrefix(a, "HS") {
			method = jwt.GetSigningMethod(a)
			break
		}
	}
	if method == nil {
		return "", fmt.Errorf("auth.jwt.algorithms %v has no HMAC algorithm to mint with", cfg.Algorithms)
	}
	if o.Subject == "" {
		return "", errors.New("token subject is empty")
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now()
	claims := jwt.MapClaims{"iat": t.Unix(), "exp": t.Add(o.TTL).Unix()}
	if cfg.Issuer != "" {
		claims["iss"] = cfg.Issuer
	}
	if cfg.Audience != "" {
		claims["aud"] = cfg.Audience
	}
	for k, v := range o.Extra {
		claims[k] = v
	}
	claims[claimName(cfg, "user_id", "sub")] = o.Subject
	if o.Role != "" {
		claims[claimName(cfg, "role", "role")] = o.Role
	}
	signed, err := jwt.NewWithClaims(method, claims).SignedString([]byte(cfg.Secret))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// claimName returns the configured claim name for key, or def.
func claimName(cfg config.JWT, key, def string) string {
	if n := cfg.Claims[key]; n != "" {
		return n
	}
	return def
}
