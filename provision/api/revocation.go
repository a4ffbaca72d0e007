package api

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"
)

// Revocation says whether a client certificate is revoked. Serve asks it
// on every request, so a station whose certificate is revoked loses access
// at its next call, open connection or not. An error means the answer is
// unknown (a CRL that cannot be read, or is past its nextUpdate): the
// request is refused (fail closed).
type Revocation interface {
	Revoked(c *x509.Certificate) (bool, error)
}

// MaxCRLSize bounds a CRL file.
const MaxCRLSize = 16 << 20

// crlCheckInterval is how often a CRLFile looks at its file's modification
// time, at most.
const crlCheckInterval = time.Second

// CRLFile is a Revocation from CRL files (RFC 5280, §5), DER or PEM, one per
// issuing CA: typically the stations CA's, written by "rootline ca crl
// --issuer stations", and the verifiers CA's. Each file is read again when
// it changes (checked at most once a second), so that publishing a new CRL
// needs no restart. A CRL must be signed by its issuer's certificate; a
// certificate whose issuer has no CRL here is not revoked (its CA is not
// checked); a CRL that does not verify, cannot be read or is past its
// nextUpdate makes every certificate of its issuer refused until a good
// one replaces it.
type CRLFile struct {
	now     func() time.Time
	entries []*crlEntry
}

type crlEntry struct {
	path   string
	issuer *x509.Certificate

	mu      sync.Mutex
	checked time.Time // when the file's mtime was last looked at
	mtime   time.Time
	size    int64
	crl     *x509.RevocationList
	revoked map[string]bool // serial numbers, big.Int.Text(16)
	err     error
}

// NewCRLFile returns a Revocation over CRL files, each with the
// certificate of the CA that signs it. It reads them all once and fails if
// one is not a valid CRL of its issuer. now may be nil (time.Now).
func NewCRLFile(now func() time.Time, files map[string]*x509.Certificate) (*CRLFile, error) {
	if now == nil {
		now = time.Now
	}
	f := &CRLFile{now: now}
	for path, issuer := range files {
		if issuer == nil {
			return nil, fmt.Errorf("api: CRL %s: no issuer certificate", path)
		}
		e := &crlEntry{path: path, issuer: issuer}
		if err := e.load(now()); err != nil {
			return nil, err
		}
		f.entries = append(f.entries, e)
	}
	return f, nil
}

// Revoked implements Revocation.
func (f *CRLFile) Revoked(c *x509.Certificate) (bool, error) {
	now := f.now()
	for _, e := range f.entries {
		if !bytes.Equal(c.RawIssuer, e.issuer.RawSubject) {
			continue
		}
		if len(c.AuthorityKeyId) > 0 && len(e.issuer.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, e.issuer.SubjectKeyId) {
			continue
		}
		return e.check(c.SerialNumber, now)
	}
	return false, nil
}

func (e *crlEntry) check(serial *big.Int, now time.Time) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now.Sub(e.checked) >= crlCheckInterval {
		e.checked = now
		if fi, err := os.Stat(e.path); err != nil {
			e.err = fmt.Errorf("api: CRL %s: %w", e.path, err)
		} else if !fi.ModTime().Equal(e.mtime) || fi.Size() != e.size {
			e.load(now) // sets e.err on failure
		}
	}
	if e.err != nil {
		return true, e.err
	}
	if now.After(e.crl.NextUpdate) {
		return true, fmt.Errorf("api: CRL %s of %q expired at %s", e.path, e.issuer.Subject.CommonName, e.crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return e.revoked[serial.Text(16)], nil
}

// load reads and checks the file; with e.mu held, or before e is shared.
func (e *crlEntry) load(now time.Time) error {
	e.checked = now
	fail := func(err error) error {
		e.crl, e.revoked = nil, nil
		e.err = fmt.Errorf("api: CRL %s: %w", e.path, err)
		return e.err
	}
	fi, err := os.Stat(e.path)
	if err != nil {
		return fail(err)
	}
	if fi.Size() > MaxCRLSize {
		return fail(fmt.Errorf("%d bytes, at most %d", fi.Size(), MaxCRLSize))
	}
	b, err := os.ReadFile(e.path)
	if err != nil {
		return fail(err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "X509 CRL" {
			return fail(fmt.Errorf("PEM block %q, want X509 CRL", blk.Type))
		}
		b = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return fail(err)
	}
	if err := crl.CheckSignatureFrom(e.issuer); err != nil {
		return fail(fmt.Errorf("not signed by %q: %w", e.issuer.Subject.CommonName, err))
	}
	if crl.NextUpdate.IsZero() {
		return fail(errors.New("no nextUpdate"))
	}
	revoked := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, r := range crl.RevokedCertificateEntries {
		revoked[r.SerialNumber.Text(16)] = true
	}
	e.crl, e.revoked, e.err = crl, revoked, nil
	e.mtime, e.size = fi.ModTime(), fi.Size()
	return nil
}
