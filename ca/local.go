package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"sort"
	"time"
)

// StationsIssuer is the name of the issuing CA of station certificates in
// a [Local] CA (see LocalOptions.Stations and [Local.CRLFor]). No product
// may have this name.
const StationsIssuer = "stations"

// DefaultCRLValidity is the time from a CRL's thisUpdate to its nextUpdate
// (RFC 5280, §5.1.2.5) unless LocalOptions say otherwise.
const DefaultCRLValidity = 7 * 24 * time.Hour

// Authority is an issuing CA: its certificate and its key.
type Authority struct {
	Certificate *x509.Certificate
	Signer      crypto.Signer
}

// Product is a product's issuing CA: the online intermediate of
// [NewIntermediate], and the product's hardware type. A product whose
// Signer is nil is known (stations may be bound to it) but not issued for
// by this Local: its requests fail with [ErrUnknownProduct] and its CRL
// with [ErrUnknownIssuer]. A CLI that opens only the key it needs uses
// this.
type Product struct {
	// Name of the product, as IssueRequest.Product gives it: 1 to
	// [MaxNameLen] letters, digits, '.', '-', '_'.
	Name string
	// HWType is the hwType of the HardwareModuleName of the product's
	// devices: an OID the manufacturer owns (IEEE 802.1AR-2018, §8.9).
	HWType asn1.ObjectIdentifier
	Authority
}

// LocalOptions configure [NewLocal].
type LocalOptions struct {
	// Root is the root certificate every issuing CA chains to.
	Root *x509.Certificate
	// Products are the issuing CAs of devices, one per product; at least
	// one.
	Products []Product
	// Stations issues station certificates; nil refuses the station
	// profile ([ErrUnknownProfile]). It may be a product's intermediate.
	// Its Signer may be nil, as a Product's.
	Stations *Authority
	// Revocations keeps revocations and CRL numbers. Default: a new
	// [MemoryStore].
	Revocations RevocationStore
	// Organization goes into every subject ([TemplateOptions]).
	Organization string
	// CRLDistributionPoints maps issuing CA names (products,
	// [StationsIssuer]) to the URL of their CRL, written into the
	// certificates they issue. Optional.
	CRLDistributionPoints map[string]string
	// CRLValidity is nextUpdate - thisUpdate of the CRLs. Default:
	// DefaultCRLValidity.
	CRLValidity time.Duration
	// Rand draws serial numbers and feeds the signers. Default:
	// crypto/rand.Reader. It must be a CSPRNG.
	Rand io.Reader
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives one record per certificate issued (Info), request
	// refused (Warn) and certificate revoked (Info). Default: discard.
	Logger *slog.Logger
}

// Local is the CA backend that signs itself, with any crypto.Signer
// (normally an HSM key through package hsm). It issues for a set of
// products, each from its own intermediate, and station certificates from
// LocalOptions.Stations. It is safe for concurrent use.
type Local struct {
	root        *x509.Certificate
	issuers     map[string]*issuer // by product name, and StationsIssuer
	products    Products
	revocations RevocationStore
	crlValidity time.Duration
	rand        io.Reader
	now         func() time.Time
	log         *slog.Logger
}

type issuer struct {
	name  string
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate // the issuer, then the root
	opts  TemplateOptions
}

var _ Issuer = (*Local)(nil)

// NewLocal checks the hierarchy (every issuing CA a CA certificate that
// the root signed, whose key is its signer's) and returns the CA.
func NewLocal(opts *LocalOptions) (*Local, error) {
	if opts == nil || opts.Root == nil {
		return nil, fmt.Errorf("%w: no root certificate", ErrInvalidCA)
	}
	root := opts.Root
	if !root.IsCA || !root.BasicConstraintsValid {
		return nil, fmt.Errorf("%w: the root is not a CA certificate", ErrInvalidCA)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%w: the root is not self-signed: %v", ErrInvalidCA, err)
	}
	if len(opts.Products) == 0 {
		return nil, fmt.Errorf("%w: no products", ErrInvalidCA)
	}
	l := &Local{
		root:        root,
		issuers:     map[string]*issuer{},
		products:    Products{},
		revocations: opts.Revocations,
		crlValidity: opts.CRLValidity,
		rand:        opts.Rand,
		now:         opts.Now,
		log:         opts.Logger,
	}
	if l.revocations == nil {
		l.revocations = &MemoryStore{}
	}
	if l.crlValidity == 0 {
		l.crlValidity = DefaultCRLValidity
	}
	if l.crlValidity < time.Hour {
		return nil, fmt.Errorf("%w: CRL validity %v is under an hour", ErrInvalidCA, l.crlValidity)
	}
	if l.rand == nil {
		l.rand = rand.Reader
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	add := func(name string, a *Authority) error {
		is, err := newIssuer(name, a, root)
		if err != nil {
			return err
		}
		is.opts = TemplateOptions{Organization: opts.Organization}
		if u := opts.CRLDistributionPoints[name]; u != "" {
			is.opts.CRLDistributionPoints = []string{u}
		}
		l.issuers[name] = is
		return nil
	}
	for i := range opts.Products {
		p := &opts.Products[i]
		if err := checkName("product name", p.Name); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidCA, err)
		}
		if p.Name == StationsIssuer {
			return nil, fmt.Errorf("%w: %q is reserved for the stations' issuing CA", ErrInvalidCA, StationsIssuer)
		}
		if _, dup := l.products[p.Name]; dup {
			return nil, fmt.Errorf("%w: product %s given twice", ErrInvalidCA, p.Name)
		}
		if !validOID(p.HWType) {
			return nil, fmt.Errorf("%w: product %s: hwType %v is not an OID", ErrInvalidCA, p.Name, p.HWType)
		}
		if err := add(p.Name, &p.Authority); err != nil {
			return nil, err
		}
		l.products[p.Name] = slices.Clone(p.HWType)
	}
	if opts.Stations != nil {
		if err := add(StationsIssuer, opts.Stations); err != nil {
			return nil, err
		}
	}
	for name := range opts.CRLDistributionPoints {
		if l.issuers[name] == nil {
			return nil, fmt.Errorf("%w: CRL distribution point for unknown issuer %q", ErrInvalidCA, name)
		}
	}
	return l, nil
}

func newIssuer(name string, a *Authority, root *x509.Certificate) (*issuer, error) {
	if a == nil || a.Certificate == nil {
		return nil, fmt.Errorf("%w: %s: no certificate", ErrInvalidCA, name)
	}
	c := a.Certificate
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 || c.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("%w: %s: not a CA certificate with keyCertSign and cRLSign", ErrInvalidCA, name)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		return nil, fmt.Errorf("%w: %s: an issuing CA must have pathLenConstraint 0 (the root stays offline)", ErrInvalidCA, name)
	}
	if err := c.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%w: %s: not signed by the root: %v", ErrInvalidCA, name, err)
	}
	if a.Signer != nil {
		if err := keysMatch(c.PublicKey, a.Signer.Public()); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidCA, name, err)
		}
	}
	return &issuer{name: name, cert: c, key: a.Signer, chain: []*x509.Certificate{c, root}}, nil
}

func validOID(o asn1.ObjectIdentifier) bool {
	if len(o) < 2 || o[0] < 0 || o[0] > 2 || (o[0] < 2 && (o[1] < 0 || o[1] > 39)) {
		return false
	}
	for _, a := range o[1:] {
		if a < 0 {
			return false
		}
	}
	return true
}

// Root returns the root certificate.
func (l *Local) Root() *x509.Certificate { return l.root }

// Issuers returns the names of the issuing CAs: the products, and
// [StationsIssuer] if there is one, sorted.
func (l *Local) Issuers() []string {
	names := make([]string, 0, len(l.issuers))
	for n := range l.issuers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Products returns the products the CA issues for, with their hwTypes.
func (l *Local) Products() Products {
	p := make(Products, len(l.products))
	for k, v := range l.products {
		p[k] = slices.Clone(v)
	}
	return p
}

// Issue implements [Issuer]: [Check], then a serial from [NewSerial], the
// profile's [Checked.Template], and the issuing CA's signature (the
// product's intermediate; the station CA for a station certificate).
// crypto/x509 verifies the signature it gets from the signer before it
// returns the certificate, so a faulty HSM cannot make a bad one; the
// result says so (Issued.SignatureChecked).
func (l *Local) Issue(ctx context.Context, req *IssueRequest) (*Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := Check(req, l.products)
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelWarn, "ca: request refused", slog.String("profile", string(req.Profile)), slog.Any("error", err))
		return nil, err
	}
	name := c.Product
	if c.Profile == ProfileStation {
		name = StationsIssuer
	}
	is := l.issuers[name]
	if is == nil || is.key == nil {
		err := refuse(ErrUnknownProduct, "this CA holds no key for product %s", name)
		if is == nil {
			err = refuse(ErrUnknownProfile, "this CA has no issuing CA for station certificates")
		}
		l.log.LogAttrs(ctx, slog.LevelWarn, "ca: request refused", slog.String("profile", string(req.Profile)), slog.Any("error", err))
		return nil, err
	}
	serial, err := NewSerial(l.rand)
	if err != nil {
		return nil, err
	}
	t, err := c.Template(serial, l.now(), &is.opts)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(l.rand, t, is.cert, c.CSR.PublicKey, bind(ctx, is.key))
	if err != nil {
		return nil, fmt.Errorf("%w: issuing CA %s: %w", ErrSigning, name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: issuing CA %s: %w", ErrSigning, name, err)
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "ca: issued",
		slog.String("profile", string(c.Profile)),
		slog.String("issuer", name),
		slog.String("serial", Hex(serial)),
		slog.String("subject", c.String()))
	// CreateCertificate refused a signer whose public key is not
	// is.cert's, and verified the signature the signer returned with that
	// key: the certificate is signed by is.chain[0].
	return &Issued{Certificate: cert, Chain: slices.Clone(is.chain), SignatureChecked: true}, nil
}

// Revoke implements [Issuer]. The reason must pass [CheckReason]. The
// revocation is recorded in the store and listed by the CRLs of every
// issuing CA of l: l does not record which CA issued which serial number,
// and a serial number is 127 random bits, so it names one certificate
// whichever CA lists it.
func (l *Local) Revoke(ctx context.Context, serial *big.Int, reason int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckSerial(serial); err != nil {
		return err
	}
	if err := CheckReason(reason); err != nil {
		return err
	}
	if err := l.revocations.Revoke(ctx, Revocation{Serial: serial, Reason: reason, Time: l.now()}); err != nil {
		return err
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "ca: revoked", slog.String("serial", Hex(serial)), slog.Int("reason", reason))
	return nil
}

// CRL implements [Issuer] for a CA with one issuing CA (one product, no
// separate station CA). With several it fails with [ErrUnknownIssuer]:
// use [Local.CRLFor].
func (l *Local) CRL(ctx context.Context) ([]byte, error) {
	if len(l.issuers) != 1 {
		return nil, fmt.Errorf("%w: this CA has %d issuing CAs (%v); ask for one with CRLFor", ErrUnknownIssuer, len(l.issuers), l.Issuers())
	}
	for name := range l.issuers {
		return l.CRLFor(ctx, name)
	}
	panic("unreachable")
}

// CRLFor returns a new DER CRL (RFC 5280, §5) of the issuing CA name (a
// product, or [StationsIssuer]), signed by its key: version 2, the next
// CRL number from the store (§5.2.3), the authority key identifier
// (§5.2.1), thisUpdate now and nextUpdate now + CRLValidity (§5.1.2.4-5),
// and every revocation in the store with its reasonCode (§5.3.1; none for
// unspecified, as DER requires of a default).
func (l *Local) CRLFor(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	is := l.issuers[name]
	if is == nil {
		return nil, fmt.Errorf("%w: %q (have %v)", ErrUnknownIssuer, clip(name), l.Issuers())
	}
	if is.key == nil {
		return nil, fmt.Errorf("%w: this CA holds no key for %s", ErrUnknownIssuer, name)
	}
	revoked, err := l.revocations.Revoked(ctx)
	if err != nil {
		return nil, err
	}
	number, err := l.revocations.NextCRLNumber(ctx, name)
	if err != nil {
		return nil, err
	}
	now := l.now().UTC().Truncate(time.Second)
	t := &x509.RevocationList{
		Number:     number,
		ThisUpdate: now,
		NextUpdate: now.Add(l.crlValidity),
	}
	for _, r := range revoked {
		t.RevokedCertificateEntries = append(t.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   r.Serial,
			RevocationTime: r.Time,
			ReasonCode:     r.Reason,
		})
	}
	der, err := x509.CreateRevocationList(l.rand, t, is.cert, bind(ctx, is.key))
	if err != nil {
		return nil, fmt.Errorf("%w: CRL of %s: %w", ErrSigning, name, err)
	}
	return der, nil
}
