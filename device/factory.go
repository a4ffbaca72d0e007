package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/pluton"
)

// IdentityFile holds the installed IDevID chain (PEM, leaf first) in a
// device's state directory.
const IdentityFile = "idevid.pem"

// Bounds on an untrusted chain given to InstallIdentity.
const (
	MaxIdentityCertificates   = 8
	MaxIdentityCertificateLen = 16 << 10
)

var (
	// ErrIdentity: the chain given to InstallIdentity is malformed, does
	// not certify this chip's DeviceID key, or does not chain.
	ErrIdentity = errors.New("device: bad identity chain")
	// ErrIdentityInstalled: another identity chain is already installed.
	ErrIdentityInstalled = errors.New("device: another identity is already installed")
)

// FactoryRequest is what a chip gives its station in the factory (DESIGN.md,
// "The factory flow", steps 1 and 3).
type FactoryRequest struct {
	// UEID is the chip's fused UEID.
	UEID []byte
	// CSR is a DER PKCS#10 request signed by the DeviceID key, with
	// subject serialNumber = hex(UEID) and the tcg-dice-Ueid extension.
	CSR []byte
	// Evidence is the chip's evidence over the service's nonce (Attest):
	// its DICE chain ends with the DeviceID certificate, whose key is the
	// CSR's.
	Evidence []byte
}

// FactoryRequest returns the chip's UEID, a CSR signed by its DeviceID key,
// and its evidence over nonce. The device must be booted (the factory test
// firmware).
//
// On a TPM the CSR is signed by the TPM's IDevID key, which also signs the
// evidence; the factory needs the TPM's certification of that key too:
// see [Device.FactoryRequestTPM].
func (d *Device) FactoryRequest(ctx context.Context, nonce []byte) (*FactoryRequest, error) {
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		return nil, err
	}
	var id *pluton.Identity
	var signer crypto.Signer
	if d.tpm != nil {
		id, err = d.tpm.Identity(ctx)
		if err == nil {
			signer, err = d.tpm.IDevIDSigner(ctx)
		}
	} else {
		id, err = d.chip.Identity(ctx)
		if err == nil {
			signer, err = d.chip.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle)
		}
	}
	if err != nil {
		return nil, err
	}
	// TcgUeid ::= SEQUENCE { ueid OCTET STRING } (TCG DICE Attestation
	// Architecture, section 6.1.1).
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1OctetString(id.UEID) })
	ueidExt, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{SerialNumber: hex.EncodeToString(id.UEID)},
		ExtraExtensions: []pkix.Extension{{Id: ca.OIDDiceUEID, Value: ueidExt}},
	}, signer)
	if err != nil {
		return nil, fmt.Errorf("device: CSR: %w", err)
	}
	return &FactoryRequest{UEID: bytes.Clone(id.UEID), CSR: csr, Evidence: ev}, nil
}

// InstallIdentity stores the IDevID chain the factory issued (DER, leaf
// first, up to the root) and moves the chip from Manufacturing to
// Provisioned (DESIGN.md, "The factory flow", step 6).
//
// The untrusted chain is checked for what the chip can check: the leaf
// certifies this chip's DeviceID key, and each certificate is signed by the
// next, which is a CA, the last being self-signed. (The chip's only fused
// anchor is the root key hash of its boot images, which is not the factory
// CA's.)
//
// The chain is written atomically before the lifecycle moves, so that a
// crash between the two is repaired by installing the same chain again.
// Installing the chain already installed succeeds; another chain fails with
// ErrIdentityInstalled. Nothing changes on refusal.
func (d *Device) InstallIdentity(ctx context.Context, chain [][]byte) error {
	certs, err := d.checkIdentity(ctx, chain)
	if err != nil {
		return err
	}
	var data []byte
	for _, c := range certs {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	lc, err := d.lifecycle(ctx)
	if err != nil {
		return err
	}
	path := filepath.Join(d.dir, IdentityFile)
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if !bytes.Equal(old, data) {
			return ErrIdentityInstalled
		}
	case errors.Is(err, fs.ErrNotExist):
		if lc != pluton.Manufacturing {
			return &pluton.LifecycleError{Op: "install identity", Current: lc, Want: pluton.Provisioned}
		}
		if err := atomicfile.Write(path, data, 0o644); err != nil {
			return fmt.Errorf("device: %w", err)
		}
	default:
		return fmt.Errorf("device: %w", err)
	}
	switch lc {
	case pluton.Manufacturing:
		if err := d.provisioned(ctx); err != nil {
			return err
		}
		d.log.Info("identity installed", "subject", certs[0].Subject.String())
		return nil
	case pluton.Provisioned:
		return nil
	default:
		return &pluton.LifecycleError{Op: "install identity", Current: lc, Want: pluton.Provisioned}
	}
}

// Identity returns the installed IDevID chain, leaf first, or an error
// matching fs.ErrNotExist if none is installed.
func (d *Device) Identity(ctx context.Context) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(d.dir, IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBootState, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s holds no certificate", ErrBootState, IdentityFile)
	}
	return certs, nil
}

// parseIdentityChain parses an untrusted IDevID chain within its bounds:
// 2 to MaxIdentityCertificates certificates of at most
// MaxIdentityCertificateLen bytes each. Errors wrap ErrIdentity.
func parseIdentityChain(chain [][]byte) ([]*x509.Certificate, error) {
	if len(chain) < 2 || len(chain) > MaxIdentityCertificates {
		return nil, fmt.Errorf("%w: %d certificates", ErrIdentity, len(chain))
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		if len(der) > MaxIdentityCertificateLen {
			return nil, fmt.Errorf("%w: certificate %d is %d bytes", ErrIdentity, i, len(der))
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", ErrIdentity, i, err)
		}
		certs[i] = c
	}
	return certs, nil
}

func (d *Device) checkIdentity(ctx context.Context, chain [][]byte) ([]*x509.Certificate, error) {
	certs, err := parseIdentityChain(chain)
	if err != nil {
		return nil, err
	}
	key, err := d.identityKey(ctx)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(certs[0].PublicKey, key) {
		return nil, fmt.Errorf("%w: the leaf does not certify this chip's DeviceID key", ErrIdentity)
	}
	if certs[0].IsCA {
		return nil, fmt.Errorf("%w: the leaf is a CA", ErrIdentity)
	}
	for i := 1; i < len(certs); i++ {
		c := certs[i]
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("%w: certificate %d is not a CA", ErrIdentity, i)
		}
		if err := certs[i-1].CheckSignatureFrom(c); err != nil {
			return nil, fmt.Errorf("%w: certificate %d is not signed by certificate %d: %v", ErrIdentity, i-1, i, err)
		}
	}
	if err := d.checkRoot(ctx, certs[len(certs)-1]); err != nil {
		return nil, err
	}
	return certs, nil
}

// FactoryRootHash is the hash a chip is fused with to pin its factory CA
// root (InitRequest.FactoryRootHash): SHA-256 (or SHA-384 with h =
// crypto.SHA384) of the root certificate's SubjectPublicKeyInfo.
func FactoryRootHash(root *x509.Certificate, h crypto.Hash) ([]byte, error) {
	switch h {
	case crypto.SHA256:
		sum := sha256.Sum256(root.RawSubjectPublicKeyInfo)
		return sum[:], nil
	case crypto.SHA384:
		sum := sha512.Sum384(root.RawSubjectPublicKeyInfo)
		return sum[:], nil
	}
	return nil, fmt.Errorf("device: %w: factory root hash with %v", pluton.ErrInvalidArgument, h)
}

// checkRoot checks the last certificate of an identity chain. On a chip
// fused with a factory root hash, its key must be the pinned one (its
// self-signature then proves nothing more and is not checked); on a chip
// without one, it must be self-signed.
func (d *Device) checkRoot(ctx context.Context, root *x509.Certificate) error {
	pinned, err := d.factoryRootHash(ctx)
	if err != nil {
		return err
	}
	if pinned == nil {
		if err := root.CheckSignatureFrom(root); err != nil {
			return fmt.Errorf("%w: the last certificate is not self-signed: %v", ErrIdentity, err)
		}
		return nil
	}
	h := crypto.SHA256
	if len(pinned) == sha512.Size384 {
		h = crypto.SHA384
	}
	got, err := FactoryRootHash(root, h)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, pinned) != 1 {
		return fmt.Errorf("%w: the chain's root is not the factory root this chip was fused with", ErrIdentity)
	}
	return nil
}

// factoryRootHash is the chip's fused factory root hash, nil if it has
// none.
func (d *Device) factoryRootHash(ctx context.Context) ([]byte, error) {
	if d.tpm != nil {
		return bytes.Clone(d.tcfg.FactoryRootHash), nil
	}
	h, err := d.chip.FactoryRootHash(ctx)
	if errors.Is(err, pluton.ErrFuseNotWritten) {
		return nil, nil
	}
	return h, err
}

// identityKey is the key the IDevID certifies: the DeviceID key, or on a
// TPM the IDevID key.
func (d *Device) identityKey(ctx context.Context) (crypto.PublicKey, error) {
	if d.tpm != nil {
		s, err := d.tpm.IDevIDSigner(ctx)
		if err != nil {
			return nil, err
		}
		return s.Public(), nil
	}
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return nil, err
	}
	return id.DeviceID, nil
}

// provisioned moves the chip from Manufacturing to Provisioned.
func (d *Device) provisioned(ctx context.Context) error {
	if d.tpm != nil {
		return d.tpm.AdvanceCounter(ctx, pluton.SecurityMonitor, lifecycleCounter, 1)
	}
	return d.chip.Transition(ctx, pluton.Provisioned)
}
