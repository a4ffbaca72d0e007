package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rootline/rootline/ca"
	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
)

// Injected identity (DESIGN.md, "The factory flow", "Injected identity").
//
// A chip of a product whose identity is injected does not make its
// identity key: the factory HSM makes it and wraps it for the chip's
// transport key, and the IDevID certifies that key. So:
//
//   - The IDevID certifies the injected key, which lives in a key slot of
//     the OS compartment ([InjectedKeyCompartment]), labelled with the
//     name the factory chose ("idevid" by default), usage sign. It is the
//     device's identity key: what it signs with where its IDevID is the
//     certificate (802.1X, mTLS enrollment to the cloud): see
//     [Device.IdentitySigner].
//   - The DICE chain is unchanged: it still grows from the DeviceID key,
//     derived from the UDS, and its self-signed DeviceID certificate still
//     anchors the Alias certificates that sign evidence. The DeviceID key
//     proved the transport key at the factory, and the registry keeps the
//     DeviceID key as the chip's key (clone detection) next to the
//     injected one. A verifier binds the two through the registry (UEID →
//     DeviceID key and IDevID), not by the IDevID's key, which for such a
//     chip is not the DeviceID key.

// InjectedKeyCompartment is the compartment whose key slot receives an
// injected device key and its per-device secrets.
const InjectedKeyCompartment = pluton.OS

// ErrInjected: a wrapped key or secret given to InstallInjected is not for
// this chip or is malformed (the chip's *soft.InjectError is wrapped too).
var ErrInjected = errors.New("device: bad injected key")

// TransportRequest is what a chip of an injected identity gives its
// station: its UEID, its evidence over the service's nonce, and its ECDH
// transport key with the DeviceID-signed statement over the same nonce.
type TransportRequest struct {
	UEID []byte
	// Evidence is the chip's evidence over the nonce (Attest); its DICE
	// chain ends with the self-signed DeviceID certificate, whose key
	// signed TransportStatement.
	Evidence []byte
	// TransportStatement and TransportSignature: see soft.TransportKey.
	TransportStatement []byte
	TransportSignature []byte
}

// TransportRequest returns the chip's UEID, its evidence over nonce, and
// its ECDH P-256 transport key statement over the same nonce. The device
// must be booted (the factory test firmware).
func (d *Device) TransportRequest(ctx context.Context, nonce []byte) (*TransportRequest, error) {
	if d.tpm != nil {
		return nil, fmt.Errorf("%w: identity injection is for the emulated chip", ErrOnTPM)
	}
	ev, err := d.Attest(ctx, nonce)
	if err != nil {
		return nil, err
	}
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return nil, err
	}
	tk, err := d.chip.TransportKey(ctx, soft.TransportP256, nonce)
	if err != nil {
		return nil, err
	}
	return &TransportRequest{UEID: bytes.Clone(id.UEID), Evidence: ev, TransportStatement: tk.Statement, TransportSignature: tk.Signature}, nil
}

// InstallInjected installs what the factory made for this chip: the device
// key (blob, wrapped for this chip), the per-device secrets (secrets, each
// a wrapped blob), and the IDevID chain (DER, leaf first, up to the root),
// then moves the chip from Manufacturing to Provisioned, as InstallIdentity
// does for a chip that made its own key.
//
// The untrusted chain is checked as InstallIdentity checks it, except that
// the leaf must certify the key the blob carries, not the DeviceID key: its
// HardwareModuleName names this chip's UEID, and the chip installs the
// unwrapped key only if its public key is the leaf's. The blobs are
// unwrapped inside the chip (pluton/soft): one wrapped for another chip, or
// altered, is refused.
//
// Everything is checked that can be before anything is installed (the
// chain, the blobs' format, kind and UEID, and the identity file); the key
// is then installed first, the secrets next, the chain last, and the
// lifecycle moves only once all are in. Installing the same things again
// (a station's retry) succeeds without change. A retry may bring the same
// key wrapped again (the service wraps it anew for every request before
// the chip confirms): the chip then keeps the key it has if it is the
// leaf's, and the secrets it has (the service derives the same secrets for
// the same chip). A key installed from another blob whose public key is not
// the leaf's is refused (soft.ErrAlreadyInjected). Refusals are typed
// errors: ErrIdentity, ErrIdentityInstalled, ErrInjected and the chip's
// *soft.InjectError or *pluton.LifecycleError.
func (d *Device) InstallInjected(ctx context.Context, blob []byte, secrets [][]byte, chain [][]byte) error {
	if d.tpm != nil {
		return fmt.Errorf("%w: identity injection is for the emulated chip", ErrOnTPM)
	}
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return err
	}
	certs, err := d.checkInjectedChain(ctx, chain, id.UEID)
	if err != nil {
		return err
	}
	leaf := certs[0]
	kb, err := soft.ParseWrappedBlob(blob)
	if err != nil {
		return fmt.Errorf("%w: key: %w", ErrInjected, err)
	}
	if kb.Kind != soft.BlobKey || !bytes.Equal(kb.UEID, id.UEID) {
		return fmt.Errorf("%w: the key blob is of kind %d for UEID %x, not a key for this chip", ErrInjected, kb.Kind, kb.UEID)
	}
	if len(secrets) > maxInjectedSecrets {
		return fmt.Errorf("%w: %d secrets (at most %d)", ErrInjected, len(secrets), maxInjectedSecrets)
	}
	names := make([]string, len(secrets))
	for i, s := range secrets {
		b, err := soft.ParseWrappedBlob(s)
		if err != nil {
			return fmt.Errorf("%w: secret %d: %w", ErrInjected, i, err)
		}
		if b.Kind != soft.BlobSecret || !bytes.Equal(b.UEID, id.UEID) {
			return fmt.Errorf("%w: secret %d is of kind %d for UEID %x, not a secret for this chip", ErrInjected, i, b.Kind, b.UEID)
		}
		names[i] = b.Name
	}
	data := chainPEM(certs)
	path := filepath.Join(d.dir, IdentityFile)
	old, err := os.ReadFile(path)
	haveFile := err == nil
	switch {
	case haveFile:
		if !bytes.Equal(old, data) {
			return ErrIdentityInstalled
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("device: %w", err)
	}

	// The key.
	if _, err := d.chip.InstallWrappedKey(ctx, blob, InjectedKeyCompartment, leaf.PublicKey); err != nil {
		if !errors.Is(err, soft.ErrAlreadyInjected) {
			return err
		}
		// Another blob was installed under this name: a re-wrap of the
		// same key is fine, another key is not.
		if _, kerr := d.injectedKey(ctx, kb.Name, leaf.PublicKey); kerr != nil {
			return err
		}
	}
	// The secrets.
	for i, s := range secrets {
		if err := d.chip.InstallWrappedSecret(ctx, s, InjectedKeyCompartment); err != nil {
			if !errors.Is(err, soft.ErrAlreadyInjected) {
				return fmt.Errorf("device: secret %q: %w", names[i], err)
			}
			// Installed already from another wrapping of it (a retry):
			// kept.
		}
	}
	// The chain, then the lifecycle (see InstallIdentity).
	lc, err := d.chip.Lifecycle(ctx)
	if err != nil {
		return err
	}
	if !haveFile {
		if lc != pluton.Manufacturing {
			return &pluton.LifecycleError{Op: "install identity", Current: lc, Want: pluton.Provisioned}
		}
		if err := atomicfile.Write(path, data, 0o644); err != nil {
			return fmt.Errorf("device: %w", err)
		}
	}
	switch lc {
	case pluton.Manufacturing:
		if err := d.chip.Transition(ctx, pluton.Provisioned); err != nil {
			return err
		}
		d.log.Info("injected identity installed", "subject", leaf.Subject.String(), "key", kb.Name, "secrets", len(secrets))
		return nil
	case pluton.Provisioned:
		return nil
	default:
		return &pluton.LifecycleError{Op: "install identity", Current: lc, Want: pluton.Provisioned}
	}
}

// maxInjectedSecrets bounds the secrets InstallInjected takes.
const maxInjectedSecrets = 32

func chainPEM(certs []*x509.Certificate) []byte {
	var data []byte
	for _, c := range certs {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return data
}

// checkInjectedChain checks an untrusted IDevID chain of an injected
// identity: bounds, structure (each certificate signed by the next, a CA,
// the last self-signed), a leaf that is not a CA and whose
// HardwareModuleName names ueid. Its key is checked by the chip on install.
func (d *Device) checkInjectedChain(ctx context.Context, chain [][]byte, ueid []byte) ([]*x509.Certificate, error) {
	certs, err := parseIdentityChain(chain)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if leaf.IsCA {
		return nil, fmt.Errorf("%w: the leaf is a CA", ErrIdentity)
	}
	if _, sn, err := ca.HardwareModuleName(leaf); err != nil || !bytes.Equal(sn, ueid) {
		return nil, fmt.Errorf("%w: the leaf's HardwareModuleName does not name this chip's UEID", ErrIdentity)
	}
	if _, err := pluton.AlgorithmOf(leaf.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: the leaf's key: %v", ErrIdentity, err)
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

// injectedKey finds the key slot of InjectedKeyCompartment labelled name
// (or any label, if name is "") holding pub.
func (d *Device) injectedKey(ctx context.Context, name string, pub crypto.PublicKey) (*pluton.KeyInfo, error) {
	keys, err := d.chip.Keys(ctx, InjectedKeyCompartment)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if (name == "" || k.Label == name) && publicKeyEqual(k.Public, pub) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: no key slot holds the IDevID's key", ErrInjected)
}

// IdentitySigner returns a signer for the key the installed IDevID
// certifies: the DeviceID key for a chip that made its own identity, the
// injected key (in InjectedKeyCompartment) for one whose identity was
// injected. It fails with an error matching fs.ErrNotExist when no IDevID
// is installed.
func (d *Device) IdentitySigner(ctx context.Context) (crypto.Signer, error) {
	if d.tpm != nil {
		return d.tpm.IDevIDSigner(ctx)
	}
	certs, err := d.Identity(ctx)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return nil, err
	}
	if publicKeyEqual(leaf.PublicKey, id.DeviceID) {
		return d.chip.Signer(ctx, pluton.SecurityMonitor, pluton.DeviceIDHandle)
	}
	k, err := d.injectedKey(ctx, "", leaf.PublicKey)
	if err != nil {
		return nil, err
	}
	return d.chip.Signer(ctx, InjectedKeyCompartment, k.Handle)
}
