package acl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/treasure-home/cdc-broadcaster/config"
)

// Claims is what a verified token says about its holder.
type Claims struct {
	// UserID comes from the claim named by auth.jwt.claims.user_id
	// (default "sub"); a number is rendered as decimal text ("19").
	UserID string
	// Role comes from auth.jwt.claims.role (default "role"); "" when the
	// token has none.
	Role string
	// ExpiresAt is the token's exp, zero when it has none.
	ExpiresAt time.Time
	// All holds every claim, for CEL `claims`. JSON numbers are int64 when
	// they are whole and fit, else float64.
	All map[string]any
}

// ErrInvalidToken is wrapped by every verification failure. The message
// says why ("token expired", "signature invalid", ...) and never contains
// the token.
var ErrInvalidToken = errors.New("invalid token")

// tokenError is a verification failure: ErrInvalidToken plus, where there
// is one, the jwt sentinel (jwt.ErrTokenExpired, ...) for callers that
// need the detail.
type tokenError struct {
	reason string
	cause  error
}

func (e *tokenError) Error() string { return ErrInvalidToken.Error() + ": " + e.reason }

func (e *tokenError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrInvalidToken}
	}
	return []error{ErrInvalidToken, e.cause}
}

func invalid(reason string, cause error) error { return &tokenError{reason: reason, cause: cause} }

// MaxTokenBytes is the longest token Verify looks at; longer ones are
// refused unparsed.
const MaxTokenBytes = 16 << 10

// JWKS fetching limits.
const (
	jwksRefreshInterval = time.Hour        // periodic re-fetch of jwks_url
	jwksUnknownKIDEvery = time.Minute      // at most one extra fetch per minute for an unknown kid
	jwksWaitMax         = 5 * time.Second  // longest a Verify waits for that fetch
	jwksHTTPTimeout     = 10 * time.Second // one fetch
	jwksMaxBytes        = 1 << 20          // largest JWKS document accepted
)

// VerifierOptions are the optional dependencies of a Verifier.
type VerifierOptions struct {
	// HTTPClient fetches jwks_url. Default: a client with a 10 s timeout.
	// Responses larger than 1 MiB are refused either way.
	HTTPClient *http.Client
	// Logger receives JWKS refresh failures. Default: discard.
	Logger *slog.Logger
	// Now is the clock for exp and nbf. Default time.Now.
	Now func() time.Time
}

// Verifier checks JWTs against the auth.jwt config. It is safe for
// concurrent use.
type Verifier struct {
	parser    *jwt.Parser
	algs      []string
	issuer    string
	audience  string
	userClaim string
	roleClaim string

	// requireExp refuses tokens without exp (auth.jwt.allow_no_exp off).
	requireExp bool

	secret  []byte // HMAC key; nil when no HS* algorithm is allowed
	pemKeys []any  // public keys from public_key_file
	jwks    keyfunc.Keyfunc
	ctx     context.Context // ends the JWKS refresh and bounds kid look-ups
	cancel  context.CancelFunc
}

// NewVerifier loads the key material cfg names: the HMAC secret for HS*
// algorithms, and for RS*/ES*/EdDSA the PEM public_key_file, the jwks_file
// and/or the jwks_url. A jwks_url is fetched before NewVerifier returns (an
// unreachable one is an error) and then re-fetched hourly and, at most once
// a minute, when a token names an unknown kid, until Close. ctx bounds the
// first fetch only. Errors name the config key.
func NewVerifier(ctx context.Context, cfg config.JWT, opts VerifierOptions) (*Verifier, error) {
	algs, needSecret, needKey, err := checkAlgorithms(cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{
		algs:      algs,
		issuer:    cfg.Issuer,
		audience:  cfg.Audience,
		userClaim: claimName(cfg, "user_id", "sub"),
		roleClaim: claimName(cfg, "role", "role"),
		// A token without exp would be good for ever, and a connection
		// on it never closed: refused unless the operator opts in.
		requireExp: !cfg.AllowNoExp,
	}
	if needSecret {
		if cfg.Secret == "" {
			return nil, fmt.Errorf("auth.jwt.secret: required by the HMAC algorithms in auth.jwt.algorithms %v", algs)
		}
		v.secret = []byte(cfg.Secret)
		if len(v.secret) < 32 {
			log.Warn("auth.jwt.secret is shorter than 32 bytes; HMAC tokens are only as strong as the secret")
		}
	}
	if needKey && cfg.PublicKeyFile == "" && cfg.JWKSFile == "" && cfg.JWKSURL == "" {
		return nil, fmt.Errorf("auth.jwt: the algorithms %v need public_key_file, jwks_file or jwks_url", algs)
	}
	if cfg.PublicKeyFile != "" {
		if v.pemKeys, err = loadPEMKeys(cfg.PublicKeyFile); err != nil {
			return nil, fmt.Errorf("auth.jwt.public_key_file: %w", err)
		}
	}
	v.ctx, v.cancel = context.WithCancel(context.WithoutCancel(ctx))
	switch {
	case cfg.JWKSFile != "" && cfg.JWKSURL != "":
		v.cancel()
		return nil, errors.New("auth.jwt: give jwks_file or jwks_url, not both")
	case cfg.JWKSFile != "":
		if v.jwks, err = loadJWKSFile(cfg.JWKSFile); err != nil {
			v.cancel()
			return nil, fmt.Errorf("auth.jwt.jwks_file: %w", err)
		}
	case cfg.JWKSURL != "":
		stop := context.AfterFunc(ctx, v.cancel) // the caller gave up on the first fetch
		v.jwks, err = fetchJWKS(v.ctx, cfg.JWKSURL, opts.HTTPClient, log)
		stop()
		if err != nil {
			v.cancel()
			return nil, fmt.Errorf("auth.jwt.jwks_url: %w", err)
		}
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithJSONNumber(),
		jwt.WithLeeway(max(cfg.Leeway, 0)),
	}
	if v.requireExp {
		popts = append(popts, jwt.WithExpirationRequired())
	}
	if opts.Now != nil {
		popts = append(popts, jwt.WithTimeFunc(opts.Now))
	}
	if cfg.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		popts = append(popts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(popts...)
	return v, nil
}

// supportedAlgorithms are the algorithms a Verifier can check.
var supportedAlgorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// checkAlgorithms validates auth.jwt.algorithms and says which kinds of key
// material they need.
func checkAlgorithms(list []string) (algs []string, needSecret, needKey bool, err error) {
	if len(list) == 0 {
		return nil, false, false, errors.New("auth.jwt.algorithms: at least one algorithm is needed")
	}
	for i, a := range list {
		switch {
		case strings.EqualFold(a, "none"):
			return nil, false, false, fmt.Errorf("auth.jwt.algorithms[%d]: algorithm \"none\" is never allowed", i)
		case !slices.Contains(supportedAlgorithms, a):
			return nil, false, false, fmt.Errorf("auth.jwt.algorithms[%d]: unknown algorithm %q: want one of %s", i, a, strings.Join(supportedAlgorithms, ", "))
		case strings.HasPrefix(a, "HS"):
			needSecret = true
		default:
			needKey = true
		}
		if !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	return algs, needSecret, needKey, nil
}

// loadJWKSFile reads a JWK Set document.
func loadJWKSFile(path string) (keyfunc.Keyfunc, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: not a usable JWK Set: %w", path, err)
	}
	keys, err := kf.Storage().KeyReadAll(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: the JWK Set holds no key", path)
	}
	return kf, nil
}

// fetchJWKS fetches url once and keeps it refreshed until ctx ends.
func fetchJWKS(ctx context.Context, url string, client *http.Client, log *slog.Logger) (keyfunc.Keyfunc, error) {
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		return nil, fmt.Errorf("%q: want an http:// or https:// URL", url)
	}
	c := http.Client{Timeout: jwksHTTPTimeout}
	if client != nil {
		c = *client
	}
	c.Transport = limitedTransport{base: c.Transport, max: jwksMaxBytes}
	failOnFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
		Client:                    &c,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &failOnFirst,
		RateLimitWaitMax:          jwksWaitMax,
		RefreshInterval:           jwksRefreshInterval,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(jwksUnknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				if ctx.Err() == nil {
					log.Warn("refresh of auth.jwt.jwks_url failed; keeping the keys already known", "url", u, "err", err)
				}
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, oneLine{err})
	}
	return kf, nil
}

// oneLine prints a joined error (keyfunc's are) on one line.
type oneLine struct{ err error }

func (e oneLine) Error() string { return strings.ReplaceAll(e.err.Error(), "\n", "; ") }
func (e oneLine) Unwrap() error { return e.err }

// limitedTransport caps the size of response bodies.
type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err == nil {
		resp.Body = http.MaxBytesReader(nil, resp.Body, t.max)
	}
	return resp, err
}

// Close stops the JWKS refresh. The Verifier still verifies with the keys
// it has.
func (v *Verifier) Close() {
	v.cancel()
}

// Verify checks a token's algorithm, signature, exp and nbf (with the
// configured leeway), issuer and audience, and returns its claims. A token
// without exp is refused unless auth.jwt.allow_no_exp is set. Every error
// wraps ErrInvalidToken.
func (v *Verifier) Verify(token string) (*Claims, error) {
	switch {
	case token == "":
		return nil, invalid("empty token", jwt.ErrTokenMalformed)
	case len(token) > MaxTokenBytes:
		return nil, invalid("token too large", jwt.ErrTokenMalformed)
	}
	mc := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, mc, v.key)
	if err != nil {
		return nil, v.explain(tok, mc, err)
	}
	c := &Claims{All: normalizeClaims(mc)}
	c.UserID, err = claimText(mc[v.userClaim])
	switch {
	case err != nil:
		return nil, invalid(fmt.Sprintf("user id claim %q: %v", v.userClaim, err), nil)
	case c.UserID == "":
		return nil, invalid(fmt.Sprintf("no user id claim %q", v.userClaim), nil)
	}
	if r, ok := mc[v.roleClaim]; ok && r != nil {
		if c.Role, err = claimText(r); err != nil {
			return nil, invalid(fmt.Sprintf("role claim %q: %v", v.roleClaim, err), nil)
		}
	}
	if exp, _ := mc.GetExpirationTime(); exp != nil {
		c.ExpiresAt = exp.Time
	}
	return c, nil
}

// Failures of key look-up; their text reaches the error message, so they
// never quote the token (its kid included).
var (
	errNoKey      = errors.New("no key for this algorithm")
	errUnknownKID = errors.New("unknown key id")
)

// key is the jwt.Keyfunc: the HMAC secret for HS* and only for HS*; for the
// other algorithms the public keys of the right type, from the JWKS (by
// kid when the token names one) and from public_key_file.
func (v *Verifier) key(tok *jwt.Token) (any, error) {
	alg := tok.Method.Alg()
	if strings.HasPrefix(alg, "HS") {
		if v.secret == nil {
			return nil, errNoKey
		}
		return v.secret, nil
	}
	var cands []any
	_, hasKID := tok.Header["kid"]
	if v.jwks != nil {
		if hasKID {
			ctx, cancel := context.WithTimeout(v.ctx, jwksWaitMax)
			k, err := v.jwks.KeyfuncCtx(ctx)(tok)
			cancel()
			if err == nil {
				cands = append(cands, k)
			} else if len(v.pemKeys) == 0 {
				return nil, errUnknownKID
			}
		} else if set, err := v.jwks.VerificationKeySet(v.ctx); err == nil {
			for _, k := range set.Keys {
				cands = append(cands, k)
			}
		}
	}
	if len(cands) == 0 {
		cands = append(cands, v.pemKeys...)
	}
	var keys []jwt.VerificationKey
	for _, k := range cands {
		if keyFits(alg, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errNoKey
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// explain turns a jwt error into a fixed reason that names no part of the
// token.
func (v *Verifier) explain(tok *jwt.Token, mc jwt.MapClaims, err error) error {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return invalid("malformed", jwt.ErrTokenMalformed)
	}
	if tok != nil {
		alg, _ := tok.Header["alg"].(string)
		switch {
		case alg == "":
			return invalid("no algorithm", jwt.ErrTokenUnverifiable)
		case strings.EqualFold(alg, "none"):
			return invalid("algorithm none not allowed", jwt.ErrTokenSignatureInvalid)
		case !slices.Contains(v.algs, alg):
			if slices.Contains(supportedAlgorithms, alg) {
				return invalid(fmt.Sprintf("algorithm %s not allowed", alg), jwt.ErrTokenSignatureInvalid)
			}
			return invalid("unknown algorithm", jwt.ErrTokenUnverifiable)
		}
	}
	switch {
	case errors.Is(err, errUnknownKID):
		return invalid("unknown key id", jwt.ErrTokenUnverifiable)
	case errors.Is(err, errNoKey):
		return invalid("no key for this algorithm", jwt.ErrTokenUnverifiable)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalid("unverifiable", jwt.ErrTokenUnverifiable)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("signature invalid", jwt.ErrTokenSignatureInvalid)
	case errors.Is(err, jwt.ErrInvalidType):
		return invalid("malformed claims", jwt.ErrTokenMalformed)
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid("token expired", jwt.ErrTokenExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("token not valid yet", jwt.ErrTokenNotValidYet)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid("wrong issuer", jwt.ErrTokenInvalidIssuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid("wrong audience", jwt.ErrTokenInvalidAudience)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if exp, _ := mc.GetExpirationTime(); v.requireExp && exp == nil {
			return invalid("no expiry (exp)", jwt.ErrTokenRequiredClaimMissing)
		}
		if iss, _ := mc.GetIssuer(); v.issuer != "" && iss == "" {
			return invalid("no issuer", jwt.ErrTokenInvalidIssuer)
		}
		return invalid("no audience", jwt.ErrTokenInvalidAudience)
	}
	return invalid("invalid claims", jwt.ErrTokenInvalidClaims)
}

// claimText renders a user id or role claim: strings as they are, JSON
// numbers as decimal text.
func claimText(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return numberText(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", errors.New("not a string or number")
}

// numberText renders a JSON number exactly when it is an integer literal
// (even one past int64), else in plain decimal.
func numberText(n json.Number) string {
	s := n.String()
	digits := strings.TrimPrefix(s, "-")
	if digits != "" && strings.Trim(digits, "0123456789") == "" {
		return s
	}
	if f, err := n.Float64(); err == nil && !math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return s
}

// normalizeClaims copies claims for CEL, turning JSON numbers into int64
// (whole and in range) or float64.
func normalizeClaims(mc jwt.MapClaims) map[string]any {
	out := make(map[string]any, len(mc))
	for k, v := range mc {
		out[k] = normalizeValue(v)
	}
	return out
}

func normalizeValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeValue(e)
		}
		return out
	}
	return v
}
