package device

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
)

// AliasSigner returns the current boot's top Alias key (the app layer's,
// the key that signs the device's evidence) as a crypto.Signer: the key
// the verifier's operational certificate certifies, and the one the device
// uses for mutual TLS with it. The key is the DICE derivation of this boot's
// measurements, so it changes when any layer does; an operational
// certificate for it stops matching after an update, and the device attests
// again. The caller owns the signer; it holds the private key in memory,
// as the app layer running on the MCU would. On a TPM it fails with
// ErrOnTPM.
func (d *Device) AliasSigner(ctx context.Context) (crypto.Signer, error) {
	if d.tpm != nil {
		return nil, fmt.Errorf("%w: a TPM device has no DICE Alias keys", ErrOnTPM)
	}
	st, err := d.current()
	if err != nil {
		return nil, err
	}
	keys, err := d.derive(ctx, st.rec)
	if err != nil {
		return nil, err
	}
	defer keys.wipe() // the CDIs; the signer is the caller's
	return keys.alias(len(st.rec.Layers) - 1)
}

// OperationalCSR returns a DER PKCS#10 request signed by the current boot's
// top Alias key (see AliasSigner), with subject serialNumber = hex(UEID),
// to send with the device's evidence to the attestation verifier
// (package attest), which issues a short-lived operational certificate for
// that key when its verdict is affirming.
// On a TPM it fails with ErrOnTPM.
func (d *Device) OperationalCSR(ctx context.Context) ([]byte, error) {
	signer, err := d.AliasSigner(ctx)
	if err != nil {
		return nil, err
	}
	id, err := d.chip.Identity(ctx)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{SerialNumber: hex.EncodeToString(id.UEID)},
	}, signer)
	if err != nil {
		return nil, fmt.Errorf("device: operational CSR: %w", err)
	}
	return csr, nil
}
