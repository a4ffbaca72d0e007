package attest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"sync"
)

// crlSet holds the CRLs of the factory's issuing CAs, by issuer name.
type crlSet struct {
	byIssuer map[string]*crlEntry
}

type crlEntry struct {
	crl     *x509.RevocationList
	revoked map[string]bool // serial numbers, big-endian bytes
	// verified caches, per issuing CA certificate (SHA-256 of its DER),
	// whether the CRL's signature verifies with its key.
	mu       sync.Mutex
	verified map[[32]byte]bool
}

// SetCRLs replaces the CRLs with ders: DER CRLs (RFC 5280, §5) of the
// factory's issuing CAs, at most MaxCRLs of at most MaxCRLSize bytes. For
// an issuer listed twice the CRL with the greater CRL number is kept.
// A CRL's signature is checked against the issuing CA of the first IDevID
// it is used for (and that result remembered); a CRL that does not verify
// counts as missing. Errors wrap ErrConfig; nothing changes on error.
func (v *Verifier) SetCRLs(ders [][]byte) error {
	if len(ders) > MaxCRLs {
		return fmt.Errorf("%w: %d CRLs (at most %d)", ErrConfig, len(ders), MaxCRLs)
	}
	s := &crlSet{byIssuer: map[string]*crlEntry{}}
	for i, d := range ders {
		if len(d) > MaxCRLSize {
			return fmt.Errorf("%w: CRL %d of %d bytes (at most %d)", ErrConfig, i, len(d), MaxCRLSize)
		}
		crl, err := x509.ParseRevocationList(d)
		if err != nil {
			return fmt.Errorf("%w: CRL %d: %v", ErrConfig, i, err)
		}
		if old, ok := s.byIssuer[string(crl.RawIssuer)]; ok && old.crl.Number != nil && crl.Number != nil && old.crl.Number.Cmp(crl.Number) >= 0 {
			continue
		}
		e := &crlEntry{crl: crl, revoked: map[string]bool{}, verified: map[[32]byte]bool{}}
		for _, r := range crl.RevokedCertificateEntries {
			e.revoked[string(r.SerialNumber.Bytes())] = true
		}
		s.byIssuer[string(crl.RawIssuer)] = e
	}
	v.crls.Store(s)
	return nil
}

// checkRevocation looks the IDevID up in its issuer's CRL: a current CRL
// (thisUpdate ≤ now ≤ nextUpdate) signed by the IDevID's issuing CA must
// exist, and must not list the IDevID's serial number.
func (v *Verifier) checkRevocation(id idEntry) *Error {
	e := v.crls.Load().byIssuer[string(id.idevid.RawIssuer)]
	if e == nil {
		return refuse(CodeRevocation, nil, "no CRL of the IDevID's issuer %q", clip(id.issuer.Subject.String()))
	}
	if !e.verifiedBy(id.issuer) {
		return refuse(CodeRevocation, nil, "the CRL of %q is not signed by the IDevID's issuer", clip(id.issuer.Subject.String()))
	}
	now := v.now()
	if now.Before(e.crl.ThisUpdate) || !e.crl.NextUpdate.IsZero() && now.After(e.crl.NextUpdate) {
		return refuse(CodeRevocation, nil, "the CRL of %q is not current (%v to %v)", clip(id.issuer.Subject.String()), e.crl.ThisUpdate.UTC(), e.crl.NextUpdate.UTC())
	}
	if e.revoked[string(id.idevid.SerialNumber.Bytes())] {
		return refuse(CodeRevoked, nil, "IDevID serial %s is revoked", id.idevid.SerialNumber.Text(16))
	}
	return nil
}

func (e *crlEntry) verifiedBy(issuer *x509.Certificate) bool {
	k := sha256.Sum256(issuer.Raw)
	e.mu.Lock()
	defer e.mu.Unlock()
	ok, seen := e.verified[k]
	if !seen {
		ok = bytes.Equal(e.crl.RawIssuer, issuer.RawSubject) && e.crl.CheckSignatureFrom(issuer) == nil
		e.verified[k] = ok
	}
	return ok
}
