package acl

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// loadPEMKeys reads every public key of a PEM file: PKIX "PUBLIC KEY"
// (RSA, EC, Ed25519), PKCS#1 "RSA PUBLIC KEY" or a "CERTIFICATE". Several
// blocks are several keys (rotation); a private key is refused so that it
// is not left where a public key belongs.
func loadPEMKeys(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []any
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		key, err := parsePEMBlock(block)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d (%s): %w", path, len(keys)+1, block.Type, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no PEM public key found", path)
	}
	return keys, nil
}

func parsePEMBlock(b *pem.Block) (any, error) {
	var key any
	var err error
	switch {
	case b.Type == "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(b.Bytes)
	case b.Type == "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(b.Bytes)
	case b.Type == "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(b.Bytes); err == nil {
			key = cert.PublicKey
		}
	case strings.Contains(b.Type, "PRIVATE KEY"):
		return nil, errors.New("a private key: give the public key only")
	default:
		return nil, errors.New("want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE")
	}
	if err != nil {
		return nil, err
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return key, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", key)
}

// keyFits reports whether key can check a signature of alg: RSA keys for
// RS*/PS*, EC keys on the algorithm's curve for ES*, Ed25519 for EdDSA.
// HMAC keys never fit here: they come from auth.jwt.secret only.
func keyFits(alg string, key any) bool {
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		_, ok := key.(*rsa.PublicKey)
		return ok
	case strings.HasPrefix(alg, "ES"):
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case alg == "EdDSA":
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}
