package stepca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// step-ca's JWK provisioner takes a JWT (RFC 7519) in the JWS compact
// serialization (RFC 7515, §7.1), signed with the provisioner's key. This
// file makes such tokens with any crypto.Signer (an HSM key too), for the
// three algorithms of RFC 7518, §3.4, and RFC 8037, §3.1, that step-ca
// accepts from an EC or OKP key: ES256, ES384 and EdDSA. step-ca itself
// (go-jose) checks them in the tests.

var b64 = base64.RawURLEncoding

// joseAlg names the JWS "alg" of a key (RFC 7518, §3.1; RFC 8037, §3.1).
func joseAlg(pub crypto.PublicKey) (alg string, hash crypto.Hash, size int, err error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", crypto.SHA256, 32, nil
		case elliptic.P384():
			return "ES384", crypto.SHA384, 48, nil
		}
	case ed25519.PublicKey:
		return "EdDSA", 0, 0, nil
	}
	return "", 0, 0, fmt.Errorf("stepca: provisioner key %T is not ECDSA P-256/P-384 or Ed25519", pub)
}

// JWK returns the public JSON Web Key (RFC 7517, §4; RFC 7518, §6.2; RFC
// 8037, §2) of a provisioner key, as ca.json's JWK provisioner "key"
// wants it, and its key ID: the RFC 7638 thumbprint, which is also the
// "kid" in the JWK.
func JWK(pub crypto.PublicKey) (jwk []byte, kid string, err error) {
	alg, _, size, err := joseAlg(pub)
	if err != nil {
		return nil, "", err
	}
	// RFC 7638, §3.2: the thumbprint is the SHA-256 of the required
	// members only, in lexicographic order, without whitespace.
	var required string
	m := map[string]string{"use": "sig", "alg": alg}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		b, err := k.Bytes() // 0x04 || X || Y (SEC 1, §2.3.3)
		if err != nil {
			return nil, "", fmt.Errorf("stepca: %w", err)
		}
		x, y := b64.EncodeToString(b[1:1+size]), b64.EncodeToString(b[1+size:])
		crv := k.Curve.Params().Name
		required = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, crv, x, y)
		m["kty"], m["crv"], m["x"], m["y"] = "EC", crv, x, y
	case ed25519.PublicKey:
		x := b64.EncodeToString(k)
		required = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":%q}`, x)
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", x
	}
	sum := sha256.Sum256([]byte(required))
	kid = b64.EncodeToString(sum[:])
	m["kid"] = kid
	jwk, err = json.Marshal(m)
	if err != nil {
		return nil, "", fmt.Errorf("stepca: %w", err)
	}
	return jwk, kid, nil
}

// signJWT returns the compact JWS of claims, with the protected header
// {"alg", "kid", "typ": "JWT"} (RFC 7515, §4.1; RFC 7519, §5.1).
func signJWT(key crypto.Signer, kid string, claims any, rnd io.Reader) (string, error) {
	alg, hash, size, err := joseAlg(key.Public())
	if err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	if err != nil {
		return "", fmt.Errorf("stepca: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("stepca: %w", err)
	}
	// RFC 7515, §5.1, steps 1-4: the signing input is
	// BASE64URL(header) || '.' || BASE64URL(payload).
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	var sig []byte
	switch hash {
	case 0: // EdDSA signs the message itself (RFC 8037, §3.1)
		sig, err = key.Sign(rnd, []byte(input), crypto.Hash(0))
	default:
		var digest []byte
		if hash == crypto.SHA256 {
			d := sha256.Sum256([]byte(input))
			digest = d[:]
		} else {
			d := sha512.Sum384([]byte(input))
			digest = d[:]
		}
		var der []byte
		der, err = key.Sign(rnd, digest, hash)
		if err == nil {
			// RFC 7518, §3.4: the JWS signature is R || S, each the
			// size of the curve's order, not the ASN.1 DER of crypto.Signer.
			sig, err = derToP1363(der, size)
		}
	}
	if err != nil {
		return "", fmt.Errorf("stepca: signing the provisioner token: %w", err)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// derToP1363 converts Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }
// (RFC 3279, §2.2.3) to the fixed-size r || s.
func derToP1363(der []byte, size int) ([]byte, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	var r, s []byte
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, errors.New("malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	for i, v := range [][]byte{r, s} {
		for len(v) > 0 && v[0] == 0 {
			v = v[1:]
		}
		if len(v) == 0 || len(v) > size {
			return nil, errors.New("ECDSA signature value out of range")
		}
		copy(out[(i+1)*size-len(v):(i+1)*size], v)
	}
	return out, nil
}

// newJTI returns a random token ID (RFC 7519, §4.1.7): step-ca refuses a
// token it has seen.
func newJTI(rnd io.Reader) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", fmt.Errorf("stepca: %w", err)
	}
	return b64.EncodeToString(b[:]), nil
}
