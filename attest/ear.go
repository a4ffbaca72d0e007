package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rootline/rootline/pluton"
)

// EAR claim values.
const (
	// EARProfile is the eat_profile of an EAR (draft-ietf-rats-ear, §3.1).
	EARProfile = "tag:github.com,2023:veraison/ear"
	// EARSubmod names the one appraisal in an EAR's submods: the device.
	EARSubmod = "device"
	// EARMediaType is the media type of an EAR in a JWT
	// (draft-ietf-rats-ear, IANA considerations).
	EARMediaType = "application/eat-ucs+jwt"
)

// EAR is the claims set of an attestation result (draft-ietf-rats-ear,
// §3), in its JSON form.
type EAR struct {
	Profile    string                  `json:"eat_profile"`
	IssuedAt   int64                   `json:"iat"`
	VerifierID VerifierID              `json:"ear.verifier-id"`
	Nonce      string                  `json:"eat_nonce,omitempty"`
	Submods    map[string]EARAppraisal `json:"submods"`
}

// EARAppraisal is one submodule's appraisal in an EAR.
type EARAppraisal struct {
	Status      Status      `json:"ear.status"`
	TrustVector TrustVector `json:"ear.trustworthiness-vector"`
	PolicyID    string      `json:"ear.appraisal-policy-id"`
	// Reasons (private claim) say why the status is not affirming, or
	// note what a warning is about.
	Reasons []Reason `json:"rootline.reasons,omitempty"`
	// UEID (private claim) is the device's UEID, base64url, once
	// authenticated; Release the release it runs.
	UEID    string `json:"rootline.ueid,omitempty"`
	Release string `json:"rootline.release,omitempty"`
}

// earKey is the verifier's public key in JWK form.
type earKey struct {
	jwk    map[string]string
	kid    string
	header string // the base64url JWS header
}

func newEARKey(pub crypto.PublicKey) (*earKey, error) {
	p, ok := pub.(*ecdsa.PublicKey)
	if !ok || p.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the EAR signer is not an ECDSA P-256 key", ErrConfig)
	}
	raw, err := p.Bytes() // 0x04 || X || Y (SEC 1, §2.3.3)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := b64(raw[1:33]), b64(raw[33:65])
	// RFC 7638, §3.2: the required members of an EC key (RFC 7518,
	// §6.2.1: crv, kty, x, y) in lexicographic order, no whitespace.
	thumb := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	k := &earKey{kid: b64(thumb[:])}
	k.jwk = map[string]string{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": k.kid, "use": "sig", "alg": "ES256"}
	h, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": k.kid})
	k.header = b64(h)
	return k, nil
}

// KeyID returns the kid of the EAR key: its JWK thumbprint (RFC 7638)
// with SHA-256, base64url.
func (v *Verifier) KeyID() string { return v.earKey.kid }

// JWKS returns the JWK Set (RFC 7517, §5) of the verifier's EAR key, for
// relying parties to check EARs with.
func (v *Verifier) JWKS() []byte {
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{v.earKey.jwk}})
	return b
}

// SignEAR makes the EAR of an appraisal as a JWT (RFC 7519) signed with
// ES256 (RFC 7515, RFC 7518, §3.4): base64url(header) "."
// base64url(claims) "." base64url(r || s), each 32 bytes. nonce is the
// challenge the evidence answered (eat_nonce, base64url), ueid the
// authenticated device's (nil if none).
func (v *Verifier) SignEAR(a *Appraisal, nonce, ueid []byte) ([]byte, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	sub := EARAppraisal{Status: a.Status, TrustVector: a.TrustVector, PolicyID: v.policyID, Reasons: a.Reasons, Release: a.Release}
	if ueid != nil {
		sub.UEID = b64(ueid)
	}
	claims := EAR{
		Profile:    EARProfile,
		IssuedAt:   v.now().Unix(),
		VerifierID: v.id,
		Submods:    map[string]EARAppraisal{EARSubmod: sub},
	}
	if len(nonce) > 0 {
		claims.Nonce = b64(nonce)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("attest: EAR: %w", err)
	}
	// RFC 7515, §5.1: the signing input is ASCII(BASE64URL(header) "."
	// BASE64URL(payload)).
	out := make([]byte, 0, len(v.earKey.header)+1+base64.RawURLEncoding.EncodedLen(len(payload))+1+86)
	out = append(out, v.earKey.header...)
	out = append(out, '.')
	out = base64.RawURLEncoding.AppendEncode(out, payload)
	digest := sha256.Sum256(out)
	der, err := v.signer.Sign(v.rand, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("attest: signing the EAR: %w", err)
	}
	// RFC 7518, §3.4: the JWS signature is R || S, not DER.
	sig, err := pluton.ECDSASignatureToP1363(pluton.ECDSAP256, der)
	if err != nil {
		return nil, fmt.Errorf("attest: signing the EAR: %w", err)
	}
	out = append(out, '.')
	return base64.RawURLEncoding.AppendEncode(out, sig), nil
}

// ParseEAR checks an EAR made by SignEAR against the verifier key pub
// (ES256 only, the header's alg checked) and returns its claims. It is
// for relying parties and tests; now bounds iat (not in the future, and
// not older than maxAge if maxAge > 0).
func ParseEAR(jwt []byte, pub *ecdsa.PublicKey, now time.Time, maxAge time.Duration) (*EAR, error) {
	var parts [3][]byte
	rest := jwt
	for i := range 3 {
		j := -1
		for k, c := range rest {
			if c == '.' {
				j = k
				break
			}
		}
		if i < 2 {
			if j < 0 {
				return nil, errors.New("attest: EAR is not a JWS compact serialization")
			}
			parts[i], rest = rest[:j], rest[j+1:]
		} else {
			if j >= 0 {
				return nil, errors.New("attest: EAR is not a JWS compact serialization")
			}
			parts[i] = rest
		}
	}
	dec := base64.RawURLEncoding
	h, err := dec.DecodeString(string(parts[0]))
	if err != nil {
		return nil, errors.New("attest: EAR header is not base64url")
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(h, &hdr) != nil || hdr.Alg != "ES256" {
		return nil, errors.New("attest: EAR is not signed with ES256")
	}
	sig, err := dec.DecodeString(string(parts[2]))
	if err != nil || len(sig) != 64 {
		return nil, errors.New("attest: EAR signature is not 64 bytes of base64url")
	}
	if err := pluton.VerifyP1363(pub, pluton.ECDSAP256, jwt[:len(parts[0])+1+len(parts[1])], sig); err != nil {
		return nil, fmt.Errorf("attest: EAR signature: %w", err)
	}
	p, err := dec.DecodeString(string(parts[1]))
	if err != nil {
		return nil, errors.New("attest: EAR payload is not base64url")
	}
	var e EAR
	if err := json.Unmarshal(p, &e); err != nil {
		return nil, fmt.Errorf("attest: EAR claims: %w", err)
	}
	if e.Profile != EARProfile {
		return nil, fmt.Errorf("attest: EAR profile %q", clip(e.Profile))
	}
	iat := time.Unix(e.IssuedAt, 0)
	if iat.After(now.Add(time.Minute)) || maxAge > 0 && now.Sub(iat) > maxAge {
		return nil, errors.New("attest: EAR iat out of range")
	}
	return &e, nil
}
