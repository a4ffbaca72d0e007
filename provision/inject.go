package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/soft"
	"github.com/rootline/rootline/provision/registry"
)

// Injected identity: the service's side. See the package documentation,
// "Injected identity".

var (
	// ErrTransportKey: the chip's transport-key statement does not verify
	// with the evidence's DeviceID key, is over another nonce, or names
	// another chip.
	ErrTransportKey = errors.New("provision: bad transport key statement")
	// ErrInjection: the key injection backend (the HSM) failed, or
	// answered with something other than what was asked. The backend's
	// own error is wrapped too (an HSM lacking a mechanism matches
	// hsm.ErrMechanismUnsupported).
	ErrInjection = errors.New("provision: key injection failed")
)

// Bounds of an InjectedRequest's transport key proof (pluton/soft's
// statement is at most 4096 bytes; an ECDSA P-384 DER signature 104).
const (
	MaxTransportStatementSize = 4096
	MaxTransportSignatureSize = 512
)

// DefaultInjectedKeyName is the key slot label the injected device key
// gets on the chip when InjectionPolicy.KeyName is empty.
const DefaultInjectedKeyName = "idevid"

// injectLabelPrefix starts the HSM label of every injected device key:
// the label is the prefix and the hex SHA-256 of the chip's UEID, so it is
// known before the key exists and the same on every retry.
const injectLabelPrefix = "rootline-idevid-"

var injectNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// IdentityMode says where a product's device keys are made.
type IdentityMode int

const (
	// OnChip: the chip generates its device key (its DeviceID) and sends
	// a CSR; the service runs Provision. The default.
	OnChip IdentityMode = iota
	// Injected: the factory HSM generates the device key and wraps it so
	// that only the chip can install it; the service runs
	// ProvisionInjected.
	Injected
)

func (m IdentityMode) String() string {
	switch m {
	case OnChip:
		return "on-chip"
	case Injected:
		return "injected"
	}
	return fmt.Sprintf("IdentityMode(%d)", int(m))
}

// ParseIdentityMode parses "on-chip" (or "") and "injected".
func ParseIdentityMode(s string) (IdentityMode, error) {
	switch s {
	case "", "on-chip", "onchip":
		return OnChip, nil
	case "injected":
		return Injected, nil
	}
	return 0, fmt.Errorf("provision: identity %q (want on-chip or injected)", s)
}

// InjectionPolicy configures a product of identity Injected.
type InjectionPolicy struct {
	// Injector makes, wraps and destroys the device keys (the factory
	// HSM: package provision/hsminject adapts an *hsm.Module).
	Injector Injector
	// KeyAlgorithm of the device keys: pluton.ECDSAP256 (the default when
	// zero) or pluton.ECDSAP384.
	KeyAlgorithm pluton.Algorithm
	// KeyName is the key's slot label on the chip, bound into the
	// wrapping: 1 to 64 of [a-z0-9._-]. Default DefaultInjectedKeyName.
	KeyName string
	// SecretMaster names the product master secret for the Injector
	// (an hsm URI); required when Secrets is not empty.
	SecretMaster string
	// Secrets are the names of the per-device secrets derived from
	// SecretMaster and the UEID, wrapped for the chip with its key: each
	// 1 to 64 of [a-z0-9._-], distinct, at most 16.
	Secrets []string
}

const maxInjectedSecrets = 16

func (p *ProductPolicy) validateIdentity() error {
	switch p.Identity {
	case OnChip:
		if p.Injection != nil {
			return errors.New("an on-chip identity takes no injection policy")
		}
		return nil
	case Injected:
	default:
		return fmt.Errorf("identity %v", p.Identity)
	}
	in := p.Injection
	switch {
	case in == nil || in.Injector == nil:
		return errors.New("an injected identity needs an injection policy with an Injector")
	case in.KeyAlgorithm != 0 && in.KeyAlgorithm != pluton.ECDSAP256 && in.KeyAlgorithm != pluton.ECDSAP384:
		return fmt.Errorf("injected key algorithm %v (want ECDSA P-256 or P-384)", in.KeyAlgorithm)
	case in.KeyName != "" && !injectNameRE.MatchString(in.KeyName):
		return fmt.Errorf("injected key name %q (want 1 to 64 of [a-z0-9._-])", in.KeyName)
	case len(in.Secrets) > maxInjectedSecrets:
		return fmt.Errorf("%d secrets (at most %d)", len(in.Secrets), maxInjectedSecrets)
	case len(in.Secrets) > 0 && in.SecretMaster == "":
		return errors.New("secrets without a SecretMaster")
	}
	for i, n := range in.Secrets {
		if !injectNameRE.MatchString(n) {
			return fmt.Errorf("secret name %q (want 1 to 64 of [a-z0-9._-])", n)
		}
		for _, m := range in.Secrets[:i] {
			if m == n {
				return fmt.Errorf("secret %q listed twice", n)
			}
		}
	}
	return nil
}

func (in *InjectionPolicy) keyAlgorithm() pluton.Algorithm {
	if in.KeyAlgorithm == 0 {
		return pluton.ECDSAP256
	}
	return in.KeyAlgorithm
}

func (in *InjectionPolicy) keyName() string {
	if in.KeyName == "" {
		return DefaultInjectedKeyName
	}
	return in.KeyName
}

// ChipTransport is the chip a key or secret is wrapped for: its UEID and
// its ECDH transport public key (a SEC 1 uncompressed point), both
// verified by the service (the DeviceID-signed statement) before an
// Injector sees them.
type ChipTransport struct {
	Algorithm soft.TransportAlgorithm
	Public    []byte
	UEID      []byte
}

// InjectKeyRequest asks an Injector for a device key wrapped for a chip.
type InjectKeyRequest struct {
	// Label names the key on the Injector: InjectKey makes a key with it
	// (and fails if one exists), WrapKey wraps the one that has it.
	Label string
	// Name is the key's slot label on the chip.
	Name string
	// Algorithm of the device key: pluton.ECDSAP256 or ECDSAP384 (for
	// WrapKey, the key's own).
	Algorithm pluton.Algorithm
	Chip      ChipTransport
}

// DeriveSecretRequest asks an Injector for a per-device secret wrapped for
// a chip.
type DeriveSecretRequest struct {
	// Master names the product master secret on the Injector.
	Master string
	// Name of the secret: its slot on the chip, and with the UEID its
	// diversifier.
	Name string
	Chip ChipTransport
}

// WrappedKey is a device key wrapped for a chip.
type WrappedKey struct {
	// Blob is the wire blob's content (kind soft.BlobKey).
	Blob *soft.WrappedBlob
	// PublicKey is the device key's public key as the Injector reports
	// it: DER SubjectPublicKeyInfo.
	PublicKey []byte
}

// Injector makes device keys inside the factory HSM and wraps them for one
// chip (DESIGN.md, "Injected identity"). Package provision/hsminject
// implements it on an *hsm.Module. The service calls it only with a chip
// transport key it has verified. Every method must leave nothing behind on
// failure but what its contract says, and return errors that wrap the
// backend's own (so that errors.Is(err, hsm.ErrMechanismUnsupported)
// works through the service).
type Injector interface {
	// InjectKey makes a new device key labelled req.Label, which must not
	// exist, and wraps it for req.Chip. On failure no key is left.
	InjectKey(ctx context.Context, req *InjectKeyRequest) (*WrappedKey, error)
	// WrapKey wraps the existing key labelled req.Label again for
	// req.Chip, with a fresh ephemeral key (a retry).
	WrapKey(ctx context.Context, req *InjectKeyRequest) (*WrappedKey, error)
	// DeriveSecret derives a per-device secret from req.Master, req.Name
	// and the chip's UEID, and wraps it for req.Chip (a blob of kind
	// soft.BlobSecret). The same request gives the same secret.
	DeriveSecret(ctx context.Context, req *DeriveSecretRequest) (*soft.WrappedBlob, error)
	// DestroyKey destroys the key labelled label (private and public
	// parts). It returns nil when no such key exists.
	DestroyKey(ctx context.Context, label string) error
}

// InjectedRequest is a station's untrusted request for one chip of an
// Injected product.
type InjectedRequest struct {
	UEID    []byte
	Product string
	Lot     string
	// Evidence is the chip's evidence over a nonce from Nonce; its DICE
	// chain ends with the self-signed DeviceID certificate.
	Evidence []byte
	// TransportStatement and TransportSignature are the chip's
	// transport-key statement over the same nonce and its DeviceID
	// signature (pluton/soft, TransportKey).
	TransportStatement []byte
	TransportSignature []byte
}

// InjectedResult is what the station writes into the chip.
type InjectedResult struct {
	// Result is the IDevID chain (the IDevID certifies the injected key),
	// its log index, and whether this call issued it.
	Result
	// Key is the wire blob of the device key, wrapped for this chip only
	// (soft.ParseWrappedBlob); nil once the chip has confirmed and the
	// HSM's copy is destroyed.
	Key []byte
	// Secrets are the wire blobs of the product's per-device secrets, in
	// InjectionPolicy.Secrets order; nil when Key is.
	Secrets [][]byte
}

// injectLabel is the HSM label of the device key of the chip ueid.
func injectLabel(ueid []byte) string {
	h := sha256.Sum256(ueid)
	return injectLabelPrefix + hex.EncodeToString(h[:])
}

func (s *Service) refuseInjected(station string, req *InjectedRequest, err error) error {
	s.logger.Warn("provision refused", "station", station, "product", req.Product, "ueid", fmt.Sprintf("%x", req.UEID),
		"identity", Injected.String(), "err", err)
	return err
}

// ProvisionInjected checks the request of a chip of an Injected product
// and returns its IDevID chain with its device key (and secrets) wrapped
// for it. See the package documentation, "Injected identity", for the
// checks, the order of the steps and what a retry returns.
func (s *Service) ProvisionInjected(ctx context.Context, station Station, req *InjectedRequest) (*InjectedResult, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: no request", ErrBadRequest)
	}
	res, err := s.provisionInjected(ctx, station, req)
	if err != nil {
		return nil, s.refuseInjected(station.Name, req, err)
	}
	return res, nil
}

func (s *Service) provisionInjected(ctx context.Context, station Station, req *InjectedRequest) (*InjectedResult, error) {
	switch {
	case station.Name == "" || len(station.Name) > registry.MaxNameLen:
		return nil, fmt.Errorf("%w: station name of %d bytes", ErrBadRequest, len(station.Name))
	case len(req.UEID) == 0 || len(req.UEID) > registry.MaxUEIDLen:
		return nil, fmt.Errorf("%w: UEID of %d bytes", ErrBadRequest, len(req.UEID))
	case len(req.Evidence) == 0 || len(req.Evidence) > evidence.MaxTokenSize:
		return nil, fmt.Errorf("%w: evidence of %d bytes", ErrBadRequest, len(req.Evidence))
	case len(req.TransportStatement) == 0 || len(req.TransportStatement) > MaxTransportStatementSize ||
		len(req.TransportSignature) == 0 || len(req.TransportSignature) > MaxTransportSignatureSize:
		return nil, fmt.Errorf("%w: transport statement of %d bytes, signature of %d", ErrBadRequest,
			len(req.TransportStatement), len(req.TransportSignature))
	case req.Product == "" || len(req.Product) > registry.MaxNameLen ||
		req.Lot == "" || len(req.Lot) > registry.MaxNameLen:
		return nil, fmt.Errorf("%w: product or lot missing or too long", ErrBadRequest)
	}

	// 1. to 3.: the nonce, the station and product, the evidence.
	tok, policy, err := s.checkChip(station, req.Product, req.UEID, req.Evidence, Injected)
	if err != nil {
		return nil, err
	}

	// 4. The transport key, proved by the DeviceID key that anchors the
	// evidence's chain (evidence.Verify checked that the last certificate
	// is self-signed and that each one is signed by the next), over the
	// same nonce, for the same UEID.
	devID := tok.Chain[len(tok.Chain)-1]
	vt, err := soft.VerifyTransportKey(req.TransportStatement, req.TransportSignature, devID.PublicKey, tok.Claims.Nonce)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTransportKey, err)
	}
	if !bytes.Equal(vt.UEID, req.UEID) {
		return nil, fmt.Errorf("%w: statement UEID %x, request UEID %x", ErrTransportKey, vt.UEID, req.UEID)
	}

	// 5. The test firmware's measurements.
	if err := checkReferences(policy.ReferenceValues, tok.Claims.Layers); err != nil {
		return nil, err
	}

	// 6. Record (with the key's HSM label, before the key exists), make
	// or wrap the key, issue, log.
	unlock := s.lock(req.UEID)
	defer unlock()
	rec, err := s.reg.Reserve(ctx, &registry.ReserveRequest{
		UEID: req.UEID, PublicKey: devID.RawSubjectPublicKeyInfo,
		Product: req.Product, Lot: req.Lot, Station: station.Name,
		InjectLabel: injectLabel(req.UEID),
	})
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if rec.Product != req.Product {
		return nil, fmt.Errorf("%w: chip already registered for product %q", ErrBadRequest, rec.Product)
	}
	if rec.Injected == nil {
		return nil, fmt.Errorf("%w: chip was registered for an on-chip identity", ErrBadRequest)
	}
	in := policy.Injection
	chip := ChipTransport{Algorithm: vt.Algorithm, Public: vt.Public.Bytes(), UEID: bytes.Clone(req.UEID)}
	kreq := &InjectKeyRequest{Label: rec.Injected.Label, Name: in.keyName(), Algorithm: in.keyAlgorithm(), Chip: chip}

	var wk *WrappedKey
	if rec.State == registry.Issuing && rec.Injected.PublicKey == nil {
		// No key recorded: none was made, or one was made by an attempt
		// that crashed before recording it, which nobody has certified:
		// destroy it, and make the key.
		if err := in.Injector.DestroyKey(ctx, kreq.Label); err != nil {
			return nil, fmt.Errorf("%w: destroying an unrecorded key: %w", ErrInjection, err)
		}
		if wk, err = in.Injector.InjectKey(ctx, kreq); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInjection, err)
		}
		if err := checkWrappedKey(wk, kreq, nil); err != nil {
			// Not recorded: the retry destroys it.
			return nil, err
		}
		if rec, err = s.reg.SetInjectedKey(ctx, req.UEID, wk.PublicKey); err != nil {
			return nil, fmt.Errorf("provision: %w", err)
		}
	} else if rec.Injected.PublicKey != nil && rec.Injected.DestroyedAt.IsZero() && rec.State != registry.Complete {
		// A retry before the chip confirmed: the same key, wrapped again.
		if wk, err = in.Injector.WrapKey(ctx, kreq); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInjection, err)
		}
		if err := checkWrappedKey(wk, kreq, rec.Injected.PublicKey); err != nil {
			return nil, err
		}
	}
	if rec.Injected.PublicKey == nil {
		return nil, fmt.Errorf("provision: chip %x has no injected key recorded", req.UEID)
	}
	var blob []byte
	var secrets [][]byte
	if wk != nil {
		// Everything the chip gets is made before anything is issued: an
		// HSM that cannot make the secrets issues nothing.
		if blob, err = wk.Blob.Marshal(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInjection, err)
		}
		for _, name := range in.Secrets {
			sreq := &DeriveSecretRequest{Master: in.SecretMaster, Name: name, Chip: chip}
			b, err := in.Injector.DeriveSecret(ctx, sreq)
			if err != nil {
				return nil, fmt.Errorf("%w: secret %q: %w", ErrInjection, name, err)
			}
			if err := checkBlob(b, soft.BlobSecret, name, &chip); err != nil {
				return nil, err
			}
			data, err := b.Marshal()
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInjection, err)
			}
			secrets = append(secrets, data)
		}
	}

	res, err := s.issueAndLog(ctx, station.Name, policy, req.Lot, rec, func() (*x509.Certificate, error) {
		return s.issueInjected(ctx, policy, req, rec.Injected.PublicKey)
	})
	if err != nil {
		return nil, err
	}
	return &InjectedResult{Result: *res, Key: blob, Secrets: secrets}, nil
}

// checkWrappedKey checks what an Injector returned for kreq: a key blob
// for that chip and name, and the recorded key when want is not nil.
func checkWrappedKey(wk *WrappedKey, kreq *InjectKeyRequest, want []byte) error {
	if wk == nil || wk.Blob == nil {
		return fmt.Errorf("%w: no wrapped key", ErrInjection)
	}
	if err := checkBlob(wk.Blob, soft.BlobKey, kreq.Name, &kreq.Chip); err != nil {
		return err
	}
	if wk.Blob.KeyAlgorithm != kreq.Algorithm && want == nil {
		return fmt.Errorf("%w: key of algorithm %v, asked for %v", ErrInjection, wk.Blob.KeyAlgorithm, kreq.Algorithm)
	}
	pub, err := ca.ParsePublicKey(wk.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: device public key: %w", ErrInjection, err)
	}
	if alg, err := pluton.AlgorithmOf(pub); err != nil || alg != wk.Blob.KeyAlgorithm {
		return fmt.Errorf("%w: device public key is not of the blob's algorithm %v", ErrInjection, wk.Blob.KeyAlgorithm)
	}
	if want != nil && !bytes.Equal(wk.PublicKey, want) {
		return fmt.Errorf("%w: the key labelled %q is not the recorded one", ErrInjection, kreq.Label)
	}
	return nil
}

func checkBlob(b *soft.WrappedBlob, kind soft.BlobKind, name string, chip *ChipTransport) error {
	switch {
	case b == nil:
		return fmt.Errorf("%w: no blob", ErrInjection)
	case b.Kind != kind || b.Name != name || b.Transport != chip.Algorithm || !bytes.Equal(b.UEID, chip.UEID):
		return fmt.Errorf("%w: blob of kind %d, name %q, for UEID %x: not what was asked", ErrInjection, b.Kind, b.Name, b.UEID)
	}
	return nil
}

func (s *Service) issueInjected(ctx context.Context, policy *ProductPolicy, req *InjectedRequest, spki []byte) (*x509.Certificate, error) {
	iss, err := s.issuer.Issue(ctx, &ca.IssueRequest{
		PublicKey: spki, Profile: ca.ProfileIDevIDInjected, Product: req.Product, UEID: req.UEID, HWType: policy.HWType,
	})
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	return checkIssued(policy, iss, spki, "the injected key")
}

// destroyInjected destroys the HSM's copy of an injected chip's key and
// records it. The chip has confirmed: it holds the key.
func (s *Service) destroyInjected(ctx context.Context, rec *registry.Record) error {
	policy, ok := s.products[rec.Product]
	if !ok || policy.Injection == nil {
		return fmt.Errorf("%w: product %q of an injected chip has no injection policy here", ErrInjection, rec.Product)
	}
	if err := policy.Injection.Injector.DestroyKey(ctx, rec.Injected.Label); err != nil {
		return fmt.Errorf("%w: destroying the device key: %w", ErrInjection, err)
	}
	if _, err := s.reg.MarkInjectedKeyDestroyed(ctx, rec.UEID); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	s.logger.Info("injected key destroyed", "product", rec.Product, "ueid", fmt.Sprintf("%x", rec.UEID), "label", rec.Injected.Label)
	return nil
}
