package acl

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/treasure-home/cdc-broadcaster/config"
)

const testSecret = "0123456789abcdef0123456789abcdef-test"

var testNow = time.Date(2025, 11, 29, 9, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// testKeys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() (k struct {
	rsa, rsa2 *rsa.PrivateKey
	ec256     *ecdsa.PrivateKey
	ec384     *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}) {
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if k.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		panic(err)
	}
	if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		panic(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		panic(err)
	}
	return k
})

func hsConfig() config.JWT {
	return config.JWT{
		Algorithms: []string{"HS256"},
		Secret:     testSecret,
		Issuer:     "treasure-home",
		Audience:   "realtime",
		Leeway:     30 * time.Second,
		Claims:     map[string]string{"user_id": "sub", "role": "role"},
	}
}

// claimsAt are valid claims for hsConfig at testNow.
func claimsAt(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":  "19",
		"role": "teacher",
		"iss":  "treasure-home",
		"aud":  "realtime",
		"iat":  testNow.Add(-time.Minute).Unix(),
		"exp":  testNow.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rawToken builds a token from a header and claims, signed (or not) by sig.
func rawToken(t testing.TB, header map[string]any, claims jwt.MapClaims, sig func(signingInput string) []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := b64(h) + "." + b64(c)
	return in + "." + b64(sig(in))
}

func hmacSig(key []byte) func(string) []byte {
	return func(in string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(in))
		return m.Sum(nil)
	}
}

func pemPublic(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func pemCert(t testing.TB, priv crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "treasure-home"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// rsaJWK is the JWK of an RSA public key, written by hand so that the test
// does not use the library under test to make its input.
func rsaJWK(pub *rsa.PublicKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(pub.N.Bytes()),
		"e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}
}

func jwksJSON(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newVerifier(t testing.TB, cfg config.JWT, opts VerifierOptions) *Verifier {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixedNow
	}
	v, err := NewVerifier(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// checkRefusal checks that err is an ErrInvalidToken saying why, and that
// it quotes no part of the token.
func checkRefusal(t *testing.T, token string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("verified; want %q", want)
	}
	if !errors.Is(err, ErrInvalidToken) {
		t.Errorf("error %v does not wrap ErrInvalidToken", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to say %q", err, want)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 8 && strings.Contains(err.Error(), part) {
			t.Errorf("error %q quotes the token", err)
		}
	}
}

func TestVerifyHMAC(t *testing.T) {
	t.Parallel()
	k := testKeys()
	rsaPEM := pemPublic(t, &k.rsa.PublicKey)
	hs := hsConfig()
	rsOnly := hsConfig()
	rsOnly.Algorithms, rsOnly.Secret = []string{"RS256"}, ""
	rsOnly.PublicKeyFile = writeFile(t, "rsa.pem", rsaPEM)
	both := hsConfig()
	both.Algorithms = []string{"HS256", "RS256"}
	both.PublicKeyFile = rsOnly.PublicKeyFile
	allowNoExp := hsConfig()
	allowNoExp.AllowNoExp = true

	ok := func(extra map[string]any) func(t testing.TB) string {
		return func(t testing.TB) string {
			return sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(extra), "")
		}
	}
	for _, tc := range []struct {
		name  string
		cfg   config.JWT
		token func(t testing.TB) string
		want  string // "" for success
		sub   string
	}{
		{name: "HS256 ok", cfg: hs, token: ok(nil), sub: "19"},
		{name: "wrong secret", cfg: hs, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodHS256, []byte("another secret of enough length!!"), claimsAt(nil), "")
		}, want: "signature invalid"},
		{name: "expired", cfg: hs, token: ok(map[string]any{"exp": testNow.Add(-time.Minute).Unix()}), want: "token expired"},
		{name: "expired within leeway", cfg: hs, token: ok(map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()}), sub: "19"},
		{name: "no exp refused", cfg: hs, token: ok(map[string]any{"exp": nil}), want: "no expiry (exp)"},
		{name: "no exp accepted when allowed", cfg: allowNoExp, token: ok(map[string]any{"exp": nil}), sub: "19"},
		{name: "not yet valid", cfg: hs, token: ok(map[string]any{"nbf": testNow.Add(5 * time.Minute).Unix()}), want: "token not valid yet"},
		{name: "nbf within leeway", cfg: hs, token: ok(map[string]any{"nbf": testNow.Add(10 * time.Second).Unix()}), sub: "19"},
		{name: "wrong issuer", cfg: hs, token: ok(map[string]any{"iss": "elsewhere"}), want: "wrong issuer"},
		{name: "no issuer", cfg: hs, token: ok(map[string]any{"iss": nil}), want: "no issuer"},
		{name: "wrong audience", cfg: hs, token: ok(map[string]any{"aud": "billing"}), want: "wrong audience"},
		{name: "audience list", cfg: hs, token: ok(map[string]any{"aud": []string{"billing", "realtime"}}), sub: "19"},
		{name: "no audience", cfg: hs, token: ok(map[string]any{"aud": nil}), want: "no audience"},
		{name: "exp not a number", cfg: hs, token: ok(map[string]any{"exp": "tomorrow"}), want: "malformed claims"},
		{name: "alg none", cfg: hs, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt(nil), "")
		}, want: "algorithm none not allowed"},
		{name: "alg NONE with HMAC signature", cfg: hs, token: func(t testing.TB) string {
			return rawToken(t, map[string]any{"alg": "NONE", "typ": "JWT"}, claimsAt(nil), hmacSig([]byte(testSecret)))
		}, want: "algorithm none not allowed"},
		{name: "no alg", cfg: hs, token: func(t testing.TB) string {
			return rawToken(t, map[string]any{"typ": "JWT"}, claimsAt(nil), hmacSig([]byte(testSecret)))
		}, want: "no algorithm"},
		{name: "RS256 token against HMAC config", cfg: hs, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(nil), "")
		}, want: "algorithm RS256 not allowed"},
		{name: "RS256 header with the HMAC secret as key", cfg: both, token: func(t testing.TB) string {
			return rawToken(t, map[string]any{"alg": "RS256", "typ": "JWT"}, claimsAt(nil), hmacSig([]byte(testSecret)))
		}, want: "signature invalid"},
		{name: "HS256 keyed with the RSA public PEM against RS256 config", cfg: rsOnly, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodHS256, rsaPEM, claimsAt(nil), "")
		}, want: "algorithm HS256 not allowed"},
		{name: "HS256 keyed with the RSA public PEM against HS256+RS256 config", cfg: both, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodHS256, rsaPEM, claimsAt(nil), "")
		}, want: "signature invalid"},
		{name: "RS256 ok next to HS256", cfg: both, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(nil), "")
		}, sub: "19"},
		{name: "RS256 signed by another key", cfg: both, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodRS256, k.rsa2, claimsAt(nil), "")
		}, want: "signature invalid"},
		{name: "HS384 not in the list", cfg: hs, token: func(t testing.TB) string {
			return sign(t, jwt.SigningMethodHS384, []byte(testSecret), claimsAt(nil), "")
		}, want: "algorithm HS384 not allowed"},
		{name: "unknown alg", cfg: hs, token: func(t testing.TB) string {
			return rawToken(t, map[string]any{"alg": "XS999"}, claimsAt(nil), hmacSig([]byte(testSecret)))
		}, want: "unknown algorithm"},
		{name: "garbage", cfg: hs, token: func(testing.TB) string { return "not-a-token" }, want: "malformed"},
		{name: "three garbage segments", cfg: hs, token: func(testing.TB) string { return "abc.def.ghi" }, want: "malformed"},
		{name: "bad signature encoding", cfg: hs, token: func(t testing.TB) string { return ok(nil)(t) + "!!" }, want: "malformed"},
		{name: "empty", cfg: hs, token: func(testing.TB) string { return "" }, want: "empty token"},
		{name: "too large", cfg: hs, token: func(t testing.TB) string {
			return ok(map[string]any{"pad": strings.Repeat("x", MaxTokenBytes)})(t)
		}, want: "token too large"},
		{name: "no user id", cfg: hs, token: ok(map[string]any{"sub": nil}), want: `no user id claim "sub"`},
		{name: "empty user id", cfg: hs, token: ok(map[string]any{"sub": ""}), want: `no user id claim "sub"`},
		{name: "user id not text", cfg: hs, token: ok(map[string]any{"sub": true}), want: "not a string or number"},
		{name: "numeric sub", cfg: hs, token: ok(map[string]any{"sub": 19}), sub: "19"},
		{name: "numeric sub past int64", cfg: hs, token: func(t testing.TB) string {
			return rawToken(t, map[string]any{"alg": "HS256"}, claimsAt(map[string]any{"sub": json.Number("123456789012345678901234")}), hmacSig([]byte(testSecret)))
		}, sub: "123456789012345678901234"},
		{name: "numeric sub 19.0", cfg: hs, token: func(t testing.TB) string {
			return rawToken(t, map[string]any{"alg": "HS256"}, claimsAt(map[string]any{"sub": json.Number("19.0")}), hmacSig([]byte(testSecret)))
		}, sub: "19"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tc.cfg, VerifierOptions{})
			token := tc.token(t)
			c, err := v.Verify(token)
			if tc.want != "" {
				checkRefusal(t, token, err, tc.want)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.UserID != tc.sub {
				t.Errorf("UserID = %q, want %q", c.UserID, tc.sub)
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, hsConfig(), VerifierOptions{})
	token := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(map[string]any{
		"sub": 19, "school": map[string]any{"id": 3, "ratio": 0.5}, "groups": []string{"a", "b"},
	}), "")
	c, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "19" || c.Role != "teacher" {
		t.Errorf("UserID, Role = %q, %q", c.UserID, c.Role)
	}
	if want := testNow.Add(time.Hour); !c.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", c.ExpiresAt, want)
	}
	if got := c.All["sub"]; got != int64(19) {
		t.Errorf("All[sub] = %#v, want int64 19", got)
	}
	school, _ := c.All["school"].(map[string]any)
	if school["id"] != int64(3) || school["ratio"] != 0.5 {
		t.Errorf("All[school] = %#v", c.All["school"])
	}
	if g, _ := c.All["groups"].([]any); len(g) != 2 || g[0] != "a" {
		t.Errorf("All[groups] = %#v", c.All["groups"])
	}

	noExp := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(map[string]any{"exp": nil}), "")
	cfg := hsConfig()
	cfg.AllowNoExp = true
	if c, err := newVerifier(t, cfg, VerifierOptions{}).Verify(noExp); err != nil || !c.ExpiresAt.IsZero() {
		t.Errorf("no exp, allowed: ExpiresAt = %v, err %v; want zero, nil", c.ExpiresAt, err)
	}
}

func TestVerifyClaimNames(t *testing.T) {
	t.Parallel()
	cfg := hsConfig()
	cfg.Claims = map[string]string{"user_id": "uid", "role": "https://school/role"}
	v := newVerifier(t, cfg, VerifierOptions{})
	for _, tc := range []struct {
		name       string
		claims     map[string]any
		user, role string
		want       string
	}{
		{name: "mapped", claims: map[string]any{"sub": "x", "uid": "7", "https://school/role": "parent"}, user: "7", role: "parent"},
		{name: "numeric uid", claims: map[string]any{"sub": nil, "uid": 42}, user: "42"},
		{name: "sub alone is not the user id", claims: map[string]any{"sub": "7"}, want: `no user id claim "uid"`},
		{name: "role claim of another name ignored", claims: map[string]any{"uid": "7", "role": "admin"}, user: "7"},
		{name: "role not text", claims: map[string]any{"uid": "7", "https://school/role": []string{"a"}}, want: "role claim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := map[string]any{"role": nil}
			for k, v := range tc.claims {
				extra[k] = v
			}
			token := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(extra), "")
			c, err := v.Verify(token)
			if tc.want != "" {
				checkRefusal(t, token, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.UserID != tc.user || c.Role != tc.role {
				t.Errorf("UserID, Role = %q, %q; want %q, %q", c.UserID, c.Role, tc.user, tc.role)
			}
		})
	}
}

func TestVerifyPEM(t *testing.T) {
	t.Parallel()
	k := testKeys()
	multi := append(pemPublic(t, &k.rsa2.PublicKey), pemPublic(t, &k.rsa.PublicKey)...)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	for _, tc := range []struct {
		name string
		alg  string
		pem  []byte
		m    jwt.SigningMethod
		key  any
		want string
	}{
		{name: "RS256 PKIX", alg: "RS256", pem: pemPublic(t, &k.rsa.PublicKey), m: jwt.SigningMethodRS256, key: k.rsa},
		{name: "RS256 PKCS1", alg: "RS256", pem: pkcs1, m: jwt.SigningMethodRS256, key: k.rsa},
		{name: "RS256 certificate", alg: "RS256", pem: pemCert(t, k.rsa), m: jwt.SigningMethodRS256, key: k.rsa},
		{name: "RS256 second of two keys", alg: "RS256", pem: multi, m: jwt.SigningMethodRS256, key: k.rsa},
		{name: "RS512", alg: "RS512", pem: pemPublic(t, &k.rsa.PublicKey), m: jwt.SigningMethodRS512, key: k.rsa},
		{name: "ES256", alg: "ES256", pem: pemPublic(t, &k.ec256.PublicKey), m: jwt.SigningMethodES256, key: k.ec256},
		{name: "ES384", alg: "ES384", pem: pemPublic(t, &k.ec384.PublicKey), m: jwt.SigningMethodES384, key: k.ec384},
		{name: "ES256 certificate", alg: "ES256", pem: pemCert(t, k.ec256), m: jwt.SigningMethodES256, key: k.ec256},
		{name: "EdDSA", alg: "EdDSA", pem: pemPublic(t, k.ed.Public()), m: jwt.SigningMethodEdDSA, key: k.ed},
		{name: "EdDSA certificate", alg: "EdDSA", pem: pemCert(t, k.ed), m: jwt.SigningMethodEdDSA, key: k.ed},
		{name: "ES256 token, P-384 key", alg: "ES256", pem: pemPublic(t, &k.ec384.PublicKey), m: jwt.SigningMethodES256, key: k.ec256, want: "no key for this algorithm"},
		{name: "ES256 token, RSA key", alg: "ES256", pem: pemPublic(t, &k.rsa.PublicKey), m: jwt.SigningMethodES256, key: k.ec256, want: "no key for this algorithm"},
		{name: "RS256 wrong key", alg: "RS256", pem: pemPublic(t, &k.rsa2.PublicKey), m: jwt.SigningMethodRS256, key: k.rsa, want: "signature invalid"},
		{name: "EdDSA wrong key", alg: "EdDSA", pem: pemPublic(t, ed25519.NewKeyFromSeed(make([]byte, 32)).Public()), m: jwt.SigningMethodEdDSA, key: k.ed, want: "signature invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := hsConfig()
			cfg.Algorithms, cfg.Secret = []string{tc.alg}, ""
			cfg.PublicKeyFile = writeFile(t, "key.pem", tc.pem)
			v := newVerifier(t, cfg, VerifierOptions{})
			token := sign(t, tc.m, tc.key, claimsAt(nil), "")
			c, err := v.Verify(token)
			if tc.want != "" {
				checkRefusal(t, token, err, tc.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.UserID != "19" {
				t.Errorf("UserID = %q", c.UserID)
			}
		})
	}
}

func TestVerifyJWKSFile(t *testing.T) {
	t.Parallel()
	k := testKeys()
	cfg := hsConfig()
	cfg.Algorithms, cfg.Secret = []string{"RS256"}, ""
	cfg.JWKSFile = writeFile(t, "jwks.json", jwksJSON(t, rsaJWK(&k.rsa.PublicKey, "k1"), rsaJWK(&k.rsa2.PublicKey, "k2")))
	v := newVerifier(t, cfg, VerifierOptions{})
	for _, tc := range []struct {
		name string
		key  *rsa.PrivateKey
		kid  string
		want string
	}{
		{name: "kid k1", key: k.rsa, kid: "k1"},
		{name: "kid k2", key: k.rsa2, kid: "k2"},
		{name: "no kid tries every key", key: k.rsa2},
		{name: "kid of another key", key: k.rsa, kid: "k2", want: "signature invalid"},
		{name: "unknown kid", key: k.rsa, kid: "k9-unknown-kid-value", want: "unknown key id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := sign(t, jwt.SigningMethodRS256, tc.key, claimsAt(nil), tc.kid)
			_, err := v.Verify(token)
			if tc.want != "" {
				checkRefusal(t, token, err, tc.want)
				if strings.Contains(err.Error(), tc.kid) {
					t.Errorf("error %q quotes the kid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestVerifyJWKSURL(t *testing.T) {
	t.Parallel()
	k := testKeys()
	var hits atomic.Int32
	var mu sync.Mutex
	doc := jwksJSON(t, rsaJWK(&k.rsa.PublicKey, "k1"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	defer srv.Close()

	cfg := hsConfig()
	cfg.Algorithms, cfg.Secret = []string{"RS256"}, ""
	cfg.JWKSURL = srv.URL + "/.well-known/jwks.json"
	v := newVerifier(t, cfg, VerifierOptions{HTTPClient: srv.Client()})
	if hits.Load() != 1 {
		t.Fatalf("JWKS fetched %d times at start, want 1", hits.Load())
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(nil), "k1")); err != nil {
		t.Fatalf("kid k1: %v", err)
	}
	if hits.Load() != 1 {
		t.Errorf("a known kid fetched the JWKS again")
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa2, claimsAt(nil), "k1")); err == nil {
		t.Error("a token of another key verified under kid k1")
	}

	// Rotation: the issuer publishes k2; the first token naming it makes
	// the verifier fetch again.
	mu.Lock()
	doc = jwksJSON(t, rsaJWK(&k.rsa.PublicKey, "k1"), rsaJWK(&k.rsa2.PublicKey, "k2"))
	mu.Unlock()
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k.rsa2, claimsAt(nil), "k2")); err != nil {
		t.Fatalf("rotated kid k2: %v", err)
	}
	if hits.Load() != 2 {
		t.Errorf("JWKS fetched %d times, want 2", hits.Load())
	}
	// Another unknown kid at once is refused without a fetch (rate limit).
	token := sign(t, jwt.SigningMethodRS256, k.rsa2, claimsAt(nil), "k3")
	start := time.Now()
	_, err := v.Verify(token)
	checkRefusal(t, token, err, "unknown key id")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("unknown kid took %v", d)
	}
	if hits.Load() != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (rate limited)", hits.Load())
	}
}

func TestNewVerifierErrors(t *testing.T) {
	t.Parallel()
	k := testKeys()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ec256)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})

	mod := func(f func(c *config.JWT)) config.JWT {
		c := hsConfig()
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  config.JWT
		want string
	}{
		{name: "no algorithms", cfg: mod(func(c *config.JWT) { c.Algorithms = nil }), want: "auth.jwt.algorithms: at least one"},
		{name: "alg none", cfg: mod(func(c *config.JWT) { c.Algorithms = []string{"HS256", "none"} }), want: `auth.jwt.algorithms[1]: algorithm "none" is never allowed`},
		{name: "unknown alg", cfg: mod(func(c *config.JWT) { c.Algorithms = []string{"HS257"} }), want: "auth.jwt.algorithms[0]: unknown algorithm"},
		{name: "no secret", cfg: mod(func(c *config.JWT) { c.Secret = "" }), want: "auth.jwt.secret: required"},
		{name: "no public key", cfg: mod(func(c *config.JWT) { c.Algorithms = []string{"RS256"} }), want: "auth.jwt: the algorithms [RS256] need public_key_file"},
		{name: "missing PEM file", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.PublicKeyFile = []string{"RS256"}, filepath.Join(t.TempDir(), "nope.pem")
		}), want: "auth.jwt.public_key_file: open"},
		{name: "PEM without key", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.PublicKeyFile = []string{"RS256"}, writeFile(t, "empty.pem", []byte("hello"))
		}), want: "no PEM public key found"},
		{name: "private key PEM", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.PublicKeyFile = []string{"ES256"}, writeFile(t, "priv.pem", privPEM)
		}), want: "a private key: give the public key only"},
		{name: "bad JWKS file", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.JWKSFile = []string{"RS256"}, writeFile(t, "jwks.json", []byte(`{"keys": 3}`))
		}), want: "auth.jwt.jwks_file: "},
		{name: "empty JWKS file", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.JWKSFile = []string{"RS256"}, writeFile(t, "jwks.json", []byte(`{"keys": []}`))
		}), want: "the JWK Set holds no key"},
		{name: "both JWKS", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.JWKSFile, c.JWKSURL = []string{"RS256"}, "x.json", "https://example.invalid/jwks"
		}), want: "give jwks_file or jwks_url, not both"},
		{name: "JWKS URL unreachable", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.JWKSURL = []string{"RS256"}, downURL+"/jwks.json"
		}), want: "auth.jwt.jwks_url: fetch " + downURL},
		{name: "JWKS URL 404", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.JWKSURL = []string{"RS256"}, notFound.URL
		}), want: "auth.jwt.jwks_url: fetch"},
		{name: "JWKS URL not http", cfg: mod(func(c *config.JWT) {
			c.Algorithms, c.JWKSURL = []string{"RS256"}, "file:///etc/passwd"
		}), want: "want an http:// or https:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(context.Background(), tc.cfg, VerifierOptions{})
			if err == nil {
				v.Close()
				t.Fatalf("NewVerifier succeeded; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNewVerifierContextBoundsFirstFetch(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := hsConfig()
	cfg.Algorithms, cfg.Secret, cfg.JWKSURL = []string{"RS256"}, "", srv.URL
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := NewVerifier(ctx, cfg, VerifierOptions{}); err == nil {
		t.Fatal("NewVerifier succeeded against a server that never answers")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("NewVerifier took %v after its context ended", d)
	}
}

func TestMintVerifies(t *testing.T) {
	t.Parallel()
	cfg := hsConfig()
	cfg.Claims = map[string]string{"user_id": "uid", "role": "r"}
	token, err := Mint(cfg, MintOptions{Subject: "19", Role: "teacher", TTL: time.Hour, Now: fixedNow, Extra: map[string]any{"school": 3}})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, cfg, VerifierOptions{})
	c, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "19" || c.Role != "teacher" || c.All["school"] != int64(3) {
		t.Errorf("claims = %+v", c)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, hsConfig(), VerifierOptions{})
	good := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claimsAt(nil), "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				_, err := v.Verify(good)
				if err != nil {
					t.Errorf("goroutine %d: %v", i, err)
					return
				}
				if _, err := v.Verify(good[:len(good)-2]); err == nil {
					t.Errorf("goroutine %d: a cut token verified", i)
					return
				}
			}
		})
	}
	wg.Wait()
}
