package ca

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Lifetimes of the profiles.
const (
	// OperationalValidity is the default lifetime of an operational
	// certificate, and MaxOperationalValidity the longest a request may
	// ask for.
	OperationalValidity    = 24 * time.Hour
	MaxOperationalValidity = 7 * 24 * time.Hour
	// StationValidity is the default lifetime of a station certificate,
	// and MaxStationValidity the longest a request may ask for.
	StationValidity    = 30 * 24 * time.Hour
	MaxStationValidity = 397 * 24 * time.Hour
	// MinValidity is the shortest lifetime a request may ask for.
	MinValidity = 5 * time.Minute
	// Backdate is how far before the time of issue notBefore is set, so a
	// relying party whose clock is a little behind accepts a new
	// certificate.
	Backdate = time.Minute
)

// NotAfterForever returns 99991231235959Z, the notAfter of a certificate
// with "no well-defined expiration date" (RFC 5280, §4.1.2.5), which IEEE
// 802.1AR-2018, §8.5, asks of IDevIDs: a device keeps its birth identity
// for life and has no way to renew it.
func NotAfterForever() time.Time { return time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC) }

// UEID bounds. RFC 9711, §4.2.1, allows 7 to 33 bytes; the subject's
// serialNumber holds the UEID in hex and is at most 64 characters
// (ub-serial-number, RFC 5280, Appendix A.1), so 32 bytes at most here.
const (
	MinUEIDSize = 7
	MaxUEIDSize = 32
)

// Products maps the names of the products a backend issues for to their
// hardware type OIDs (the hwType of the HardwareModuleName).
type Products map[string]asn1.ObjectIdentifier

// Checked is an [IssueRequest] that passed every check of its profile:
// what a backend signs. Build it with [Check].
type Checked struct {
	Profile Profile
	// CSR is the parsed request, its signature verified. For
	// [ProfileIDevIDInjected], which has no CSR, only PublicKeyAlgorithm,
	// PublicKey and RawSubjectPublicKeyInfo are set.
	CSR *x509.CertificateRequest
	// Product, UEID and HWType for IDevID and operational certificates.
	Product string
	UEID    []byte
	HWType  asn1.ObjectIdentifier
	// Station and Products for station certificates.
	Station  string
	Products []string
	// Validity is the lifetime of an operational or station certificate
	// (the request's, or the profile's default); zero for an IDevID,
	// whose notAfter is [NotAfterForever].
	Validity time.Duration
	// TcbInfo is the DER DiceTcbInfo the CSR carries (IDevID only), or
	// nil.
	TcbInfo []byte
}

// Check checks req against its profile and the products a backend knows,
// and parses its CSR with [ParseCSR] (or takes [IssueRequest.CheckedCSR],
// which [CheckCSR] made with ParseCSR, when it holds the same bytes).
// Every backend calls it before anything else, so that all of them refuse
// the same requests with the same errors ([*RequestError]).
//
//   - IDevID and operational: Product must be one of products; UEID must
//     be [MinUEIDSize] to [MaxUEIDSize] bytes; HWType, if set, must be the
//     product's; Station and Products must be empty. If the CSR carries a
//     tcg-dice-Ueid extension it must be this UEID. An IDevID takes no
//     Validity; an operational certificate takes [MinValidity] to
//     [MaxOperationalValidity].
//   - injected IDevID ([ProfileIDevIDInjected]): as an IDevID, but with
//     no CSR: PublicKey, parsed by [ParsePublicKey], is the key to certify.
//     Every other profile refuses a PublicKey.
//   - station: Station is a name ([MaxNameLen] bytes of letters, digits,
//     '.', '-', '_'); Products are 1 to [MaxStationProducts] distinct
//     products of products; Product and UEID must be empty; Validity is
//     [MinValidity] to [MaxStationValidity].
func Check(req *IssueRequest, products Products) (*Checked, error) {
	if req == nil {
		return nil, refuse(ErrInvalidField, "nil request")
	}
	c := &Checked{Profile: req.Profile}
	switch req.Profile {
	case ProfileIDevID, ProfileOperational, ProfileIDevIDInjected:
		if req.Station != "" || len(req.Products) != 0 {
			return nil, refuse(ErrInvalidField, "a %s request names no station or station products", req.Profile)
		}
		if len(req.Product) > MaxNameLen {
			return nil, refuse(ErrTooLarge, "product name of %d bytes", len(req.Product))
		}
		hw, ok := products[req.Product]
		if !ok {
			return nil, refuse(ErrUnknownProduct, "no issuing CA for product %q", req.Product)
		}
		if len(req.HWType) != 0 && !req.HWType.Equal(hw) {
			return nil, refuse(ErrInvalidField, "hwType %v is not product %s's (%v)", req.HWType, req.Product, hw)
		}
		switch n := len(req.UEID); {
		case n > MaxUEIDSize:
			return nil, refuse(ErrTooLarge, "UEID of %d bytes, at most %d", n, MaxUEIDSize)
		case n < MinUEIDSize:
			return nil, refuse(ErrInvalidField, "UEID of %d bytes, at least %d", n, MinUEIDSize)
		}
		c.Product, c.UEID, c.HWType = req.Product, bytes.Clone(req.UEID), slices.Clone(hw)
		if req.Profile != ProfileOperational {
			if req.Validity != 0 {
				return nil, refuse(ErrInvalidField, "an IDevID's validity is fixed (notAfter 99991231235959Z)")
			}
		} else {
			v, err := validity(req.Validity, OperationalValidity, MaxOperationalValidity)
			if err != nil {
				return nil, err
			}
			c.Validity = v
		}
	case ProfileStation:
		if req.Product != "" || len(req.UEID) != 0 || len(req.HWType) != 0 {
			return nil, refuse(ErrInvalidField, "a station request names no product, UEID or hwType (Products lists what it may provision)")
		}
		if err := checkName("station name", req.Station); err != nil {
			return nil, err
		}
		if n := len(req.Products); n == 0 || n > MaxStationProducts {
			if n > MaxStationProducts {
				return nil, refuse(ErrTooLarge, "%d station products, at most %d", n, MaxStationProducts)
			}
			return nil, refuse(ErrInvalidField, "a station needs at least one product")
		}
		for i, p := range req.Products {
			if err := checkName("product name", p); err != nil {
				return nil, err
			}
			if _, ok := products[p]; !ok {
				return nil, refuse(ErrUnknownProduct, "station product %q is not issued here", p)
			}
			if slices.Contains(req.Products[:i], p) {
				return nil, refuse(ErrInvalidField, "station product %q listed twice", p)
			}
		}
		v, err := validity(req.Validity, StationValidity, MaxStationValidity)
		if err != nil {
			return nil, err
		}
		c.Station, c.Products, c.Validity = req.Station, slices.Clone(req.Products), v
	default:
		return nil, refuse(ErrUnknownProfile, "profile %q", clip(string(req.Profile)))
	}

	if req.Profile == ProfileIDevIDInjected {
		if len(req.CSR) != 0 {
			return nil, refuse(ErrInvalidField, "an injected IDevID request takes a public key, not a CSR")
		}
		pub, err := ParsePublicKey(req.PublicKey)
		if err != nil {
			return nil, err
		}
		// The backends read the key from CSR: only its public key fields
		// are set, and no signature (see ProfileIDevIDInjected).
		c.CSR = &x509.CertificateRequest{
			PublicKeyAlgorithm:      publicKeyAlgorithm(pub),
			PublicKey:               pub,
			RawSubjectPublicKeyInfo: bytes.Clone(req.PublicKey),
		}
		return c, nil
	}
	if len(req.PublicKey) != 0 {
		return nil, refuse(ErrInvalidField, "only an injected IDevID request takes a bare public key")
	}
	// A request CheckCSR accepted in this process for these very bytes
	// passed every check of ParseCSR already, its signature among them:
	// verifying it again would only repeat the same computation.
	csr := req.CheckedCSR.checked(req.CSR)
	if csr == nil {
		var err error
		if csr, err = ParseCSR(req.CSR); err != nil {
			return nil, err
		}
	}
	c.CSR = csr
	if v := csrExtension(csr, oidDiceUEID()); v != nil {
		ueid, _ := parseTcgUEID(v) // ParseCSR checked it
		if c.UEID == nil || !bytes.Equal(ueid, c.UEID) {
			return nil, refuse(ErrInvalidField, "the CSR's tcg-dice-Ueid is not the request's UEID")
		}
	}
	if req.Profile == ProfileIDevID {
		c.TcbInfo = bytes.Clone(csrExtension(csr, oidDiceTcbInfo()))
	}
	return c, nil
}

func validity(asked, def, maxV time.Duration) (time.Duration, error) {
	switch {
	case asked == 0:
		return def, nil
	case asked < MinValidity || asked > maxV:
		return 0, refuse(ErrInvalidField, "validity %v not in %v..%v", asked, MinValidity, maxV)
	}
	return asked, nil
}

// clip shortens untrusted text quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// TemplateOptions adds issuer-wide content to the profiles.
type TemplateOptions struct {
	// Organization is the subject's organizationName; "" leaves it out.
	Organization string
	// CRLDistributionPoints are URLs of the issuing CA's CRL (RFC 5280,
	// §4.2.1.13); none by default.
	CRLDistributionPoints []string
}

// Template returns the certificate c's profile calls for (an injected
// IDevID is an IDevID without DiceTcbInfo), to be signed by
// the issuing CA's certificate (which sets issuer and the authority key
// identifier) at time now:
//
//	                 IDevID              operational         station
//	subject          [O,] CN=product,    [O,] CN=product,    [O,] CN=station
//	                 serialNumber=UEID   serialNumber=UEID
//	subjectAltName   HardwareModuleName  HardwareModuleName  RootlineStation
//	                 (hwType, UEID)      (hwType, UEID)      (name, products)
//	notBefore        now - Backdate      now - Backdate      now - Backdate
//	notAfter         99991231235959Z     now + Validity      now + Validity
//	keyUsage         digitalSignature (critical)
//	extKeyUsage      —                   clientAuth          clientAuth
//	DiceTcbInfo      the CSR's, if any   —                   —
//
// plus a subject key identifier (RFC 7093, §2, method 1: the leftmost 160
// bits of the SHA-256 of the subjectPublicKey). The subjectAltName is not
// critical since the subject is not empty (RFC 5280, §4.2.1.6). The UEID
// is in lowercase hex. serial must come from [NewSerial].
func (c *Checked) Template(serial *big.Int, now time.Time, opts *TemplateOptions) (*x509.Certificate, error) {
	if err := CheckSerial(serial); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &TemplateOptions{}
	}
	skid, err := subjectKeyID(c.CSR.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	now = now.UTC().Truncate(time.Second)
	t := &x509.Certificate{
		SerialNumber:          serial,
		PublicKey:             c.CSR.PublicKey,
		NotBefore:             now.Add(-Backdate),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		SubjectKeyId:          skid,
		CRLDistributionPoints: slices.Clone(opts.CRLDistributionPoints),
	}
	if opts.Organization != "" {
		t.Subject.Organization = []string{opts.Organization}
	}
	var san []byte
	switch c.Profile {
	case ProfileIDevID, ProfileOperational, ProfileIDevIDInjected:
		t.Subject.CommonName = c.Product
		t.Subject.SerialNumber = hex.EncodeToString(c.UEID)
		san, err = MarshalHardwareModuleName(c.HWType, c.UEID)
	case ProfileStation:
		t.Subject.CommonName = c.Station
		san, err = MarshalStation(c.Station, c.Products)
	default:
		return nil, refuse(ErrUnknownProfile, "profile %q", clip(string(c.Profile)))
	}
	if err != nil {
		return nil, err
	}
	t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtSubjectAltName, Value: san})
	switch c.Profile {
	case ProfileIDevID, ProfileIDevIDInjected:
		t.NotAfter = NotAfterForever()
		if c.TcbInfo != nil {
			t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidDiceTcbInfo(), Value: bytes.Clone(c.TcbInfo)})
		}
	default:
		t.NotAfter = now.Add(c.Validity)
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	return t, nil
}

// subjectKeyID computes RFC 7093, §2, method 1 over the subjectPublicKey
// BIT STRING of a SubjectPublicKeyInfo.
func subjectKeyID(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.SkipASN1(cbasn1.SEQUENCE) {
		return nil, refuse(ErrMalformedCSR, "malformed SubjectPublicKeyInfo")
	}
	var bits cryptobyte.String
	if !seq.ReadASN1(&bits, cbasn1.BIT_STRING) || len(bits) < 2 {
		return nil, refuse(ErrMalformedCSR, "malformed subjectPublicKey")
	}
	// bits[0] is the count of unused bits, zero for every key type
	// accepted here (their keys are whole octets).
	h := sha256.Sum256(bits[1:])
	return h[:20], nil
}

// String names what c certifies, for logs.
func (c *Checked) String() string {
	switch c.Profile {
	case ProfileStation:
		return fmt.Sprintf("station %s (%v)", c.Station, c.Products)
	}
	return fmt.Sprintf("%s %s ueid %x", c.Profile, c.Product, c.UEID)
}
