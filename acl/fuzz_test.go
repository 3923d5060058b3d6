package acl

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzResolve feeds arbitrary channel names to the example config's
// patterns (plus multi-param ones): Resolve never panics, fails only with
// ErrUnknownChannel or ErrInvalidChannel, and a name that resolves has
// every param satisfying its configured regexp and is rebuilt exactly from
// its pattern and params.
func FuzzResolve(f *testing.F) {
	chs := testChannels(f)
	r := newTestRules(f, &fakeDB{}, RulesOptions{})
	anchored := map[string]map[string]*regexp.Regexp{}
	for _, ch := range chs {
		m := map[string]*regexp.Regexp{}
		for name, src := range ch.Params {
			m[name] = regexp.MustCompile(anchorRegexp(src))
		}
		anchored[ch.Pattern] = m
	}
	for _, s := range []string{
		"user:19", "class:42", "school", "role:teacher", "table:exams", "exam:7:student:9",
		"pair:1:2:x", "alt:a", "alt:ab", "grade:7", "staff", "reportcard:3", "student:4",
		"class:1' OR '1'='1", "class:1;DROP TABLE x", "class:", "", ":", "{classId}",
		"class:{classId}", "exam:7:student:9:student:3", "class:42\n", "pair::", "x\xff:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ch, err := r.Resolve(name)
		if err != nil {
			if ch != nil {
				t.Fatalf("Resolve(%q) returned a channel and %v", name, err)
			}
			if !errors.Is(err, ErrUnknownChannel) && !errors.Is(err, ErrInvalidChannel) {
				t.Fatalf("Resolve(%q): unexpected error %v", name, err)
			}
			return
		}
		if ch.Name != name {
			t.Fatalf("Resolve(%q).Name = %q", name, ch.Name)
		}
		res, ok := anchored[ch.Pattern]
		if !ok {
			t.Fatalf("Resolve(%q).Pattern = %q, not a configured pattern", name, ch.Pattern)
		}
		parts, err := splitPattern(ch.Pattern)
		if err != nil {
			t.Fatal(err)
		}
		var rebuilt strings.Builder
		for _, p := range parts {
			if !p.param {
				rebuilt.WriteString(p.text)
				continue
			}
			v, ok := ch.Params[p.text]
			if !ok {
				t.Fatalf("Resolve(%q): param %s missing from %v", name, p.text, ch.Params)
			}
			re := res[p.text]
			if re == nil {
				re = regexp.MustCompile(DefaultParamRegexp)
			}
			if !re.MatchString(v) {
				t.Fatalf("Resolve(%q): param %s = %q fails %s", name, p.text, v, re)
			}
			rebuilt.WriteString(v)
		}
		if rebuilt.String() != name {
			t.Fatalf("Resolve(%q): pattern %q with %v gives %q", name, ch.Pattern, ch.Params, rebuilt.String())
		}
	})
}

// FuzzVerify feeds arbitrary strings to a verifier that accepts HS256,
// RS256, ES256 and EdDSA: it never panics, never accepts one, and its
// error never quotes the token.
func FuzzVerify(f *testing.F) {
	k := testKeys()
	pemFile := writeFile(f, "keys.pem", append(append(pemPublic(f, &k.rsa.PublicKey), pemPublic(f, &k.ec256.PublicKey)...), pemPublic(f, k.ed.Public())...))
	cfg := hsConfig()
	cfg.Algorithms = []string{"HS256", "RS256", "ES256", "EdDSA"}
	cfg.PublicKeyFile = pemFile
	v := newVerifier(f, cfg, VerifierOptions{})

	// Seeds: well-formed tokens signed with keys the verifier does not
	// trust, alg confusion attempts, and broken shapes.
	other := []byte("not the configured secret, but long enough")
	f.Add(sign(f, jwt.SigningMethodHS256, other, claimsAt(nil), ""))
	f.Add(sign(f, jwt.SigningMethodRS256, k.rsa2, claimsAt(nil), "k1"))
	f.Add(sign(f, jwt.SigningMethodES384, k.ec384, claimsAt(nil), ""))
	f.Add(sign(f, jwt.SigningMethodHS256, pemPublic(f, &k.rsa.PublicKey), claimsAt(nil), ""))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt(nil), ""))
	f.Add(rawToken(f, map[string]any{"alg": "RS256"}, claimsAt(nil), hmacSig([]byte(testSecret))))
	f.Add(rawToken(f, map[string]any{"alg": "HS256", "kid": 7}, claimsAt(map[string]any{"exp": "x", "sub": []int{1}}), hmacSig(other)))
	for _, s := range []string{"", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJIUzI1NiJ9..", "\x00", "Bearer x.y.z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err == nil {
			t.Fatalf("Verify accepted %q: %+v", token, c)
		}
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("Verify(%q): error %v does not wrap ErrInvalidToken", token, err)
		}
		if len(token) >= 24 && strings.Contains(err.Error(), token) {
			t.Fatalf("Verify(%q): error %q quotes the token", token, err)
		}
	})
}
