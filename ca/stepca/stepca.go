// Package stepca is the [ca.Issuer] backend on a step-ca server
// (github.com/smallstep/certificates): it checks each request as every
// backend does ([ca.Check]), then has step-ca sign it through its HTTPS API
// (POST /1.0/sign) with a one-time token of a JWK provisioner, one
// provisioner per profile, whose certificate template (see [Template])
// yields the same certificate as the local backend.
//
// step-ca must run under rootline's hierarchy: its intermediate is issued
// by the root of [ca.NewRoot] (see ca/stepca/stepcatest for a ca.json),
// and its HTTPS certificate is checked against that root alone (the root
// is pinned).
//
// Revocation is step-ca's passive revocation (POST /1.0/revoke, recorded in
// its database) and its CRL (GET /1.0/crl), so ca.json must enable a
// database and the CRL.
package stepca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rootline/rootline/ca"
)

//go:embed templates/*.tpl
var templates embed.FS

// Template returns the step-ca X.509 certificate template of a profile
// (go.step.sm/crypto/x509util syntax), to be set as the templateFile of
// the profile's provisioner. It reads the facts of the request from the
// token's "rootline" claim, which [Client] fills in as
// [ca.Checked.Template] computes them, and sets the rest of the profile
// itself: key usage, extended key usage, the IDevID's notAfter, the copy
// of the CSR's DiceTcbInfo.
//
// The subjectAltName comes ready-made (DER) in the claim: the template
// language cannot write it. Its "hardwareModuleName" SAN type encodes
// hwSerialNum as [4] IMPLICIT, not the OCTET STRING of RFC 4108, §5
// (go.step.sm/crypto v0.77.1, x509util.asn1HardwareModuleName's
// `asn1:"tag:4"`: "a01f…8403010203" where "…0403010203" is due), and the
// RootlineStation value is a SEQUENCE its otherName syntax cannot build.
func Template(p ca.Profile) (string, error) {
	switch p {
	case ca.ProfileIDevID, ca.ProfileOperational, ca.ProfileStation:
		b, err := templates.ReadFile("templates/" + string(p) + ".tpl")
		if err != nil {
			return "", fmt.Errorf("stepca: %w", err)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("%w: %q", ca.ErrUnknownProfile, p)
}

// ProvisionerName returns the default name of a profile's provisioner:
// "rootline-idevid", "rootline-operational", "rootline-station".
func ProvisionerName(p ca.Profile) string { return "rootline-" + string(p) }

// Config configures a [Client].
type Config struct {
	// URL of step-ca, "https://host:port".
	URL string
	// Root is rootline's root certificate: step-ca's HTTPS certificate and
	// every certificate it issues must chain to it, and to no other.
	Root *x509.Certificate
	// Products the CA issues for, with their hwTypes.
	Products ca.Products
	// Key is the JWK provisioners' private key (ECDSA P-256 or P-384, or
	// Ed25519), and KeyID its "kid" (see [JWK]).
	Key   crypto.Signer
	KeyID string
	// Provisioners names the provisioner of each profile. Default:
	// [ProvisionerName].
	Provisioners map[ca.Profile]string
	// Organization goes into every subject ([ca.TemplateOptions]).
	Organization string
	// CRLDistributionPoint is the URL of step-ca's CRL, written into every
	// certificate: step-ca marks its CRLs with an issuingDistributionPoint
	// naming that URL (ca.json's crl.idpURL), and a CRL with one covers
	// only the certificates that name the same point (RFC 5280,
	// §5.2.5 and §6.3.3 (b)(2)(i)). An http: URL, served on step-ca's
	// insecureAddress, avoids needing TLS to check revocation.
	CRLDistributionPoint string
	// Timeout bounds each HTTP exchange. Default: 30 s.
	Timeout time.Duration
	// Rand draws serial numbers and token IDs. Default:
	// crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logger receives one record per certificate issued or revoked (Info)
	// and per request refused (Warn). Default: discard.
	Logger *slog.Logger
}

// Validate reports whether c is usable.
func (c *Config) Validate() error {
	if c == nil {
		return errors.New("stepca: nil Config")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("stepca: URL %q is not https://host[:port]", c.URL)
	}
	if c.Root == nil || !c.Root.IsCA {
		return errors.New("stepca: no root CA certificate")
	}
	if len(c.Products) == 0 {
		return errors.New("stepca: no products")
	}
	if c.Key == nil || c.KeyID == "" {
		return errors.New("stepca: no provisioner key or key ID")
	}
	if _, _, _, err := joseAlg(c.Key.Public()); err != nil {
		return err
	}
	if c.Timeout < 0 {
		return errors.New("stepca: negative timeout")
	}
	if c.CRLDistributionPoint != "" {
		if u, err := url.Parse(c.CRLDistributionPoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("stepca: CRL distribution point %q is not an http(s) URL", c.CRLDistributionPoint)
		}
	}
	return nil
}

// Client is the step-ca backend. It is safe for concurrent use.
type Client struct {
	cfg   Config
	base  string
	roots *x509.CertPool
	http  *http.Client
	log   *slog.Logger
}

var _ ca.Issuer = (*Client)(nil)

// New returns a client of the step-ca at cfg.URL. It does not connect.
func New(cfg *Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: *cfg, base: strings.TrimSuffix(cfg.URL, "/"), roots: x509.NewCertPool(), log: cfg.Logger}
	c.roots.AddCert(cfg.Root)
	if c.cfg.Timeout == 0 {
		c.cfg.Timeout = 30 * time.Second
	}
	if c.cfg.Rand == nil {
		c.cfg.Rand = rand.Reader
	}
	if c.cfg.Now == nil {
		c.cfg.Now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	c.http = &http.Client{Transport: tr, Timeout: c.cfg.Timeout}
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

func (c *Client) provisioner(p ca.Profile) string {
	if n := c.cfg.Provisioners[p]; n != "" {
		return n
	}
	return ProvisionerName(p)
}

// tokenClaims are the JWT claims of a sign or revoke token (RFC 7519,
// §4.1), and rootline's own claim for the templates.
type tokenClaims struct {
	Issuer    string         `json:"iss"`
	Subject   string         `json:"sub"`
	Audience  string         `json:"aud"`
	NotBefore int64          `json:"nbf"`
	IssuedAt  int64          `json:"iat"`
	Expiry    int64          `json:"exp"`
	ID        string         `json:"jti"`
	Rootline  *rootlineClaim `json:"rootline,omitempty"`
}

// rootlineClaim carries the facts of a request, as the templates read
// them.
type rootlineClaim struct {
	Profile        ca.Profile `json:"profile"`
	Organization   string     `json:"organization,omitempty"`
	Product        string     `json:"product,omitempty"`
	UEID           string     `json:"ueid,omitempty"` // the subject's serialNumber
	Station        string     `json:"station,omitempty"`
	Serial         string     `json:"serial"`    // "0x…"
	NotBefore      time.Time  `json:"notBefore"` // RFC 3339
	NotAfter       time.Time  `json:"notAfter"`
	SubjectKeyID   []byte     `json:"subjectKeyId"`   // base64
	SubjectAltName []byte     `json:"subjectAltName"` // base64 DER
	// CRLDistributionPoints are the URLs of the CRL.
	CRLDistributionPoints []string `json:"crlDistributionPoints,omitempty"`
}

// tokenLifetime bounds a one-time token.
const tokenLifetime = 5 * time.Minute

func (c *Client) token(issuer, subject, path string, rc *rootlineClaim) (string, error) {
	jti, err := newJTI(c.cfg.Rand)
	if err != nil {
		return "", err
	}
	now := c.cfg.Now()
	return signJWT(c.cfg.Key, c.cfg.KeyID, &tokenClaims{
		Issuer:    issuer,
		Subject:   subject,
		Audience:  c.base + path,
		NotBefore: now.Add(-time.Minute).Unix(),
		IssuedAt:  now.Unix(),
		Expiry:    now.Add(tokenLifetime).Unix(),
		ID:        jti,
		Rootline:  rc,
	}, c.cfg.Rand)
}

// Issue implements [ca.Issuer]: [ca.Check], the facts of
// [ca.Checked.Template] in a token of the profile's provisioner, and a
// sign request to step-ca. What step-ca returns is checked before it is
// handed back: the certificate must certify the CSR's key, carry the serial
// number asked for, and chain to the root.
func (c *Client) Issue(ctx context.Context, req *ca.IssueRequest) (*ca.Issued, error) {
	checked, err := ca.Check(req, c.cfg.Products)
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "ca: request refused", slog.String("profile", string(req.Profile)), slog.Any("error", err))
		return nil, err
	}
	serial, err := ca.NewSerial(c.cfg.Rand)
	if err != nil {
		return nil, err
	}
	topts := &ca.TemplateOptions{Organization: c.cfg.Organization}
	if c.cfg.CRLDistributionPoint != "" {
		topts.CRLDistributionPoints = []string{c.cfg.CRLDistributionPoint}
	}
	t, err := checked.Template(serial, c.cfg.Now(), topts)
	if err != nil {
		return nil, err
	}
	var san []byte
	for _, e := range t.ExtraExtensions {
		if e.Id.String() == "2.5.29.17" {
			san = e.Value
		}
	}
	rc := &rootlineClaim{
		Profile:               checked.Profile,
		Organization:          c.cfg.Organization,
		Product:               t.Subject.CommonName,
		UEID:                  t.Subject.SerialNumber,
		Serial:                "0x" + serial.Text(16),
		NotBefore:             t.NotBefore,
		NotAfter:              t.NotAfter,
		SubjectKeyID:          t.SubjectKeyId,
		SubjectAltName:        san,
		CRLDistributionPoints: t.CRLDistributionPoints,
	}
	subject := t.Subject.SerialNumber
	if checked.Profile == ca.ProfileStation {
		rc.Product, rc.Station, subject = "", checked.Station, checked.Station
	}
	// step-ca's JWK provisioner accepts a CSR whose commonName is the
	// token's subject or none; the profile ignores the CSR's subject.
	if cn := checked.CSR.Subject.CommonName; cn != "" {
		subject = cn
	}
	ott, err := c.token(c.provisioner(checked.Profile), subject, "/1.0/sign", rc)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string]string{
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: req.CSR})),
		"ott": ott,
	})
	if err != nil {
		return nil, fmt.Errorf("stepca: %w", err)
	}
	var resp struct {
		Crt       string   `json:"crt"`
		CA        string   `json:"ca"`
		CertChain []string `json:"certChain"`
	}
	if err := c.call(ctx, http.MethodPost, "/1.0/sign", body, &resp); err != nil {
		return nil, err
	}
	iss, err := c.checkIssued(checked, serial, resp.Crt, resp.CertChain)
	if err != nil {
		return nil, err
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "ca: issued",
		slog.String("backend", "step-ca"),
		slog.String("profile", string(checked.Profile)),
		slog.String("serial", ca.Hex(serial)),
		slog.String("subject", checked.String()))
	return iss, nil
}

// checkIssued parses step-ca's untrusted answer and checks it is the
// certificate asked for.
func (c *Client) checkIssued(checked *ca.Checked, serial *big.Int, crt string, chain []string) (*ca.Issued, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: step-ca returned %s", ca.ErrSigning, fmt.Sprintf(format, args...))
	}
	leaf, err := parsePEMCert(crt)
	if err != nil {
		return nil, bad("an unreadable certificate: %v", err)
	}
	if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, checked.CSR.RawSubjectPublicKeyInfo) {
		return nil, bad("a certificate of another key")
	}
	if leaf.SerialNumber.Cmp(serial) != 0 {
		return nil, bad("serial number %x, not %x", leaf.SerialNumber, serial)
	}
	inter := x509.NewCertPool()
	var out []*x509.Certificate
	for _, p := range chain {
		ic, err := parsePEMCert(p)
		if err != nil {
			return nil, bad("an unreadable chain: %v", err)
		}
		if ic.Equal(leaf) || ic.Equal(c.cfg.Root) {
			continue
		}
		inter.AddCert(ic)
		out = append(out, ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: c.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, bad("a certificate that does not chain to the root: %v", err)
	}
	return &ca.Issued{Certificate: leaf, Chain: append(out, c.cfg.Root)}, nil
}

func parsePEMCert(s string) (*x509.Certificate, error) {
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("not one PEM CERTIFICATE")
	}
	return x509.ParseCertificate(b.Bytes)
}

// Revoke implements [ca.Issuer] with step-ca's passive revocation, which
// records the serial number in step-ca's database and regenerates the CRL
// (if ca.json says generateOnRevoke). The reason must pass
// [ca.CheckReason]. The token is the IDevID provisioner's.
func (c *Client) Revoke(ctx context.Context, serial *big.Int, reason int) error {
	if err := ca.CheckSerial(serial); err != nil {
		return err
	}
	if err := ca.CheckReason(reason); err != nil {
		return err
	}
	// step-ca compares the token's subject with the serial number in
	// base 10.
	ott, err := c.token(c.provisioner(ca.ProfileIDevID), serial.String(), "/1.0/revoke", nil)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{
		"serial":     serial.String(),
		"ott":        ott,
		"reasonCode": reason,
		"passive":    true,
	})
	if err != nil {
		return fmt.Errorf("stepca: %w", err)
	}
	if err := c.call(ctx, http.MethodPost, "/1.0/revoke", body, nil); err != nil {
		return err
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "ca: revoked", slog.String("backend", "step-ca"), slog.String("serial", ca.Hex(serial)), slog.Int("reason", reason))
	return nil
}

// CRL implements [ca.Issuer]: step-ca's current DER CRL (GET /1.0/crl),
// checked to parse. Its signature is the relying party's to check, with
// the intermediate of the certificates it covers.
func (c *Client) CRL(ctx context.Context) ([]byte, error) {
	var der []byte
	if err := c.call(ctx, http.MethodGet, "/1.0/crl", nil, &der); err != nil {
		return nil, err
	}
	if _, err := x509.ParseRevocationList(der); err != nil {
		return nil, fmt.Errorf("%w: step-ca returned an unreadable CRL: %v", ca.ErrSigning, err)
	}
	return der, nil
}

// Health asks step-ca's /health; it fails with [ca.ErrUnavailable] unless
// step-ca answers {"status":"ok"}.
func (c *Client) Health(ctx context.Context) error {
	var h struct {
		Status string `json:"status"`
	}
	if err := c.call(ctx, http.MethodGet, "/health", nil, &h); err != nil {
		return err
	}
	if h.Status != "ok" {
		return fmt.Errorf("%w: step-ca health %q", ca.ErrUnavailable, h.Status)
	}
	return nil
}

// maxResponse bounds what is read of a step-ca answer.
const maxResponse = 1 << 20

// APIError is an error answer of step-ca: its HTTP status and message.
// It matches [ca.ErrRefused] (4xx), [ca.ErrAlreadyRevoked] (a revocation
// of a revoked serial number), [ca.ErrUnavailable] (502, 503, 504) or
// [ca.ErrSigning] (other 5xx).
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("stepca: step-ca answered %d: %s", e.Status, e.Message)
}

// Is matches the sentinels of package ca.
func (e *APIError) Is(target error) bool {
	switch target {
	case ca.ErrAlreadyRevoked:
		return e.Status == http.StatusBadRequest && strings.Contains(e.Message, "already revoked")
	case ca.ErrRefused:
		return e.Status >= 400 && e.Status < 500
	case ca.ErrUnavailable:
		return e.Status == http.StatusBadGateway || e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout
	case ca.ErrSigning:
		return e.Status >= 500 && !e.Is(ca.ErrUnavailable)
	}
	return false
}

// call makes one request; out is a *[]byte for a raw body, or JSON.
func (c *Client) call(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hr, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("stepca: %w", err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *tls.CertificateVerificationError
		if errors.As(err, &ue) {
			return fmt.Errorf("%w: step-ca's certificate does not chain to the pinned root: %v", ca.ErrUnavailable, err)
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %v", ca.ErrUnavailable, err)
		}
		return fmt.Errorf("%w: %v", ca.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%w: reading step-ca's answer: %v", ca.ErrUnavailable, err)
	}
	if len(b) > maxResponse {
		return fmt.Errorf("%w: step-ca's answer is over %d bytes", ca.ErrSigning, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Message string `json:"message"`
		}
		json.Unmarshal(b, &e)
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Message}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: step-ca's answer is not the JSON expected: %v", ca.ErrSigning, err)
	}
	return nil
}
