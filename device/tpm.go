package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/rootline/rootline/internal/atomicfile"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/dice"
	"github.com/rootline/rootline/pluton/evidence"
	"github.com/rootline/rootline/pluton/measure"
	"github.com/rootline/rootline/pluton/tpm"
)

// Files of a device on a TPM, next to BootFile, EventLogFile, DeviceIDFile
// (there: the self-signed certificate of the TPM's IDevID key) and
// IdentityFile.
const (
	// TPMConfigFile holds what the emulated chip has in fuses: the
	// product and the root key hash.
	TPMConfigFile = "tpm.conf"
	// TPMStateFile is pluton/tpm's state file (counters' NV indexes and
	// starting points).
	TPMStateFile = "tpm.state"
)

// EvidenceBank is the PCR bank a device on a TPM quotes in its evidence.
const EvidenceBank = crypto.SHA256

// lifecycleCounter is the NV counter that stands for a TPM's lifecycle:
// 0 (never incremented) Manufacturing, 1 Provisioned.
const lifecycleCounter = "lifecycle"

var (
	// ErrTPMPCRs: the TPM's boot PCRs hold measurements of another boot
	// (the TPM was not reset since), so they cannot take this boot's, or
	// no longer match the current boot's event log. A TPM's PCRs are reset
	// only by a TPM reset (TPM2_Startup(CLEAR) after a power cycle).
	ErrTPMPCRs = errors.New("device: the TPM's PCRs do not hold this boot's measurements")
	// ErrNotTPM: the operation needs a device on a TPM.
	ErrNotTPM = errors.New("device: not a device on a TPM")
	// ErrOnTPM: the operation needs the emulated chip (DICE Alias keys,
	// key injection) and the device runs on a TPM.
	ErrOnTPM = errors.New("device: not available on a device on a TPM")
)

// TPMOptions say how to reach the TPM of a device. Exactly one of Address,
// Device and Transport is set.
type TPMOptions struct {
	// Address is "host:port" of a TPM taking raw command buffers over TCP:
	// swtpm's command port (pluton/tpm.DialTCP).
	Address string
	// Device is a TPM character device, normally /dev/tpmrm0.
	Device string
	// Transport is an open TPM connection; Close does not close it.
	Transport transport.TPM
	// Logger receives device and TPM events. Default: discard.
	Logger *slog.Logger
}

func (o *TPMOptions) logger() *slog.Logger {
	if o != nil && o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// tpmConfig is TPMConfigFile.
type tpmConfig struct {
	Version         int    `cbor:"1,keyasint"`
	Product         string `cbor:"2,keyasint"`
	RootKeyHash     []byte `cbor:"3,keyasint"`
	FactoryRootHash []byte `cbor:"4,keyasint,omitempty"`
}

const tpmConfigVersion = 1

// InitTPM makes a device on the TPM opts names, with its state in dir. req
// is what the emulated chip would have fused: its product and the root key
// hash of its boot images; they are kept in dir (TPMConfigFile), since a
// TPM has no fuses. It refuses a directory that already holds a device.
// The TPM keeps the device's counters (NV indexes of the owner hierarchy)
// and its identity keys (IAK and IDevID, re-created from its endorsement
// seed); nothing is written to the TPM here.
func InitTPM(ctx context.Context, dir string, req *InitRequest, opts *TPMOptions) (*Device, error) {
	if req == nil || req.Product == "" || len(req.RootKeyHash) == 0 {
		return nil, fmt.Errorf("device: %w: a device on a TPM needs a product and a root key hash", pluton.ErrInvalidArgument)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	for _, f := range []string{TPMConfigFile, ChipFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("device: %s already holds a device (%s)", dir, f)
		}
	}
	if n := len(req.FactoryRootHash); n != 0 && n != 32 && n != 48 {
		return nil, fmt.Errorf("device: %w: factory root hash of %d bytes (want 32 or 48)", pluton.ErrInvalidArgument, n)
	}
	cfg := &tpmConfig{Version: tpmConfigVersion, Product: req.Product, RootKeyHash: bytes.Clone(req.RootKeyHash),
		FactoryRootHash: bytes.Clone(req.FactoryRootHash)}
	data, err := recordEnc.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	d, err := openTPM(ctx, dir, cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, TPMConfigFile), data, 0o600); err != nil {
		d.Close()
		return nil, fmt.Errorf("device: %w", err)
	}
	if _, err := d.tpmSelfCertificate(ctx); err != nil {
		d.Close()
		return nil, err
	}
	d.log.Info("device on a TPM initialized", "product", req.Product)
	return d, nil
}

// OpenTPM opens the device on a TPM in dir. The TPM must be the one the
// device was made on: its IDevID must be the key of the device's
// certificates.
func OpenTPM(ctx context.Context, dir string, opts *TPMOptions) (*Device, error) {
	data, err := os.ReadFile(filepath.Join(dir, TPMConfigFile))
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	cfg := new(tpmConfig)
	if err := recordDec.Unmarshal(data, cfg); err != nil || cfg.Version != tpmConfigVersion {
		return nil, fmt.Errorf("%w: %s: %v", ErrBootState, TPMConfigFile, err)
	}
	d, err := openTPM(ctx, dir, cfg, opts)
	if err != nil {
		return nil, err
	}
	if _, err := d.tpmSelfCertificate(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func openTPM(ctx context.Context, dir string, cfg *tpmConfig, opts *TPMOptions) (*Device, error) {
	to := &tpm.Options{StatePath: filepath.Join(dir, TPMStateFile), Logger: opts.logger()}
	if opts != nil {
		to.Address, to.Device, to.Transport = opts.Address, opts.Device, opts.Transport
	}
	t, err := tpm.Open(ctx, to)
	if err != nil {
		return nil, err
	}
	d := &Device{dir: dir, tpm: t, tcfg: cfg, log: opts.logger()}
	// Measure into the banks of measure.New that the TPM has: a bank the
	// TPM lacks is left out of its answer to TPM2_PCR_Read.
	for _, bank := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		_, err := t.ReadPCRs(ctx, bank, []int{PolicyRegister})
		switch {
		case err == nil:
			d.banks = append(d.banks, bank)
		case errors.Is(err, tpm.ErrPCRSelection):
		default:
			t.Close()
			return nil, err
		}
	}
	if !slices.Contains(d.banks, EvidenceBank) {
		t.Close()
		return nil, fmt.Errorf("device: the TPM has no %v PCR bank", EvidenceBank)
	}
	return d, nil
}

// TPM returns the TPM of a device on a TPM, or nil.
func (d *Device) TPM() *tpm.TPM { return d.tpm }

// IsTPM reports whether dir holds a device on a TPM (made by InitTPM, to
// be opened with OpenTPM) rather than on the emulated chip.
func IsTPM(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, TPMConfigFile))
	return err == nil
}

// UEID returns the device's UEID: the emulated chip's, or on a TPM the one
// derived from its IAK.
func (d *Device) UEID(ctx context.Context) ([]byte, error) {
	var id *pluton.Identity
	var err error
	if d.tpm != nil {
		id, err = d.tpm.Identity(ctx)
	} else {
		id, err = d.chip.Identity(ctx)
	}
	if err != nil {
		return nil, err
	}
	return bytes.Clone(id.UEID), nil
}

// Lifecycle returns the device's lifecycle state: the emulated chip's, or
// on a TPM the one its lifecycle NV counter stands for (Manufacturing or
// Provisioned).
func (d *Device) Lifecycle(ctx context.Context) (pluton.Lifecycle, error) {
	return d.lifecycle(ctx)
}

// tpmLifecycle reads the lifecycle counter: Manufacturing until
// InstallIdentity, Provisioned afterwards. The TPM moves the counter only
// up, so the transition is one-way, as the emulated chip's fuse is.
func (d *Device) tpmLifecycle(ctx context.Context) (pluton.Lifecycle, error) {
	v, err := d.counter(ctx, lifecycleCounter)
	switch {
	case err != nil:
		return 0, err
	case v == 0:
		return pluton.Manufacturing, nil
	case v == 1:
		return pluton.Provisioned, nil
	}
	return 0, fmt.Errorf("%w: lifecycle counter at %d", ErrBootState, v)
}

// measureTPM extends the TPM's PCRs with the events of a verified boot, in
// order, so that they take the values regs holds and the event log replays
// to. PCRs are reset only with the TPM, so:
//
//   - PCRs still at zero (the TPM was reset): every event is extended;
//   - PCRs that already hold regs's values: the same boot was measured
//     since the TPM's last reset (the same images booted again), and
//     nothing is extended;
//   - anything else fails with ErrTPMPCRs.
//
// Unlike the emulated chip, which measures each layer as it verifies it,
// the chain is verified in full before the first extend: a refused boot
// leaves the PCRs at zero.
func (d *Device) measureTPM(ctx context.Context, regs *measure.Registers) error {
	used := usedRegisters()
	zero, same := true, true
	for _, bank := range d.banks {
		vals, err := d.tpm.ReadPCRs(ctx, bank, used)
		if err != nil {
			return err
		}
		for _, r := range used {
			want, err := regs.Value(bank, r)
			if err != nil {
				return err
			}
			if !bytes.Equal(vals[r], make([]byte, bank.Size())) {
				zero = false
			}
			if !bytes.Equal(vals[r], want) {
				same = false
			}
		}
	}
	switch {
	case same:
		d.log.Info("boot already measured into the TPM's PCRs since its reset")
		return nil
	case !zero:
		return fmt.Errorf("%w: PCRs %v hold another boot's measurements (reset the TPM)", ErrTPMPCRs, used)
	}
	for _, ev := range regs.Log().Events() {
		if err := d.tpm.ExtendPCR(ctx, ev.Register, ev.Digests); err != nil {
			return fmt.Errorf("device: measuring into PCR %d: %w", ev.Register, err)
		}
	}
	return nil
}

// idevidSigner returns the TPM's IDevID key.
func (d *Device) idevidSigner(ctx context.Context) (crypto.Signer, error) {
	return d.tpm.IDevIDSigner(ctx)
}

// tpmSelfCertificate returns the self-signed certificate of the TPM's
// IDevID key, made once and kept in DeviceIDFile: the key's local trust
// anchor until the factory installs its IDevID certificate, as the
// DeviceID certificate is on the emulated chip. It is a leaf
// (digitalSignature, not a CA) with the TPM's UEID.
func (d *Device) tpmSelfCertificate(ctx context.Context) (*x509.Certificate, error) {
	signer, err := d.idevidSigner(ctx)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(d.dir, DeviceIDFile)
	if der, err := os.ReadFile(path); err == nil {
		c, err := x509.ParseCertificate(der)
		if err == nil && publicKeyEqual(c.PublicKey, signer.Public()) {
			return c, nil
		}
		return nil, fmt.Errorf("%w: %s does not hold this TPM's IDevID certificate (another TPM?)", ErrBootState, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("device: %w", err)
	}
	id, err := d.tpm.Identity(ctx)
	if err != nil {
		return nil, err
	}
	der, err := dice.DeviceIDCertificate(signer, &dice.CertificateTemplate{Subject: signer.Public(), UEID: id.UEID})
	if err != nil {
		return nil, fmt.Errorf("device: IDevID certificate: %w", err)
	}
	if err := atomicfile.Write(path, der, 0o644); err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return x509.ParseCertificate(der)
}

// tpmChain is the x5chain of a device on a TPM: the installed IDevID chain
// (leaf first, up to the factory root), or before provisioning the
// self-signed certificate of the IDevID key.
func (d *Device) tpmChain(ctx context.Context) ([]*x509.Certificate, error) {
	certs, err := d.Identity(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		c, err := d.tpmSelfCertificate(ctx)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{c}, nil
	}
	return certs, err
}

// attestTPM is Attest on a TPM.
func (d *Device) attestTPM(ctx context.Context, st *bootState, nonce []byte) ([]byte, error) {
	id, err := d.tpm.Identity(ctx)
	if err != nil {
		return nil, err
	}
	lc, err := d.lifecycle(ctx)
	if err != nil {
		return nil, err
	}
	logBytes, err := st.log.MarshalBinary()
	if err != nil {
		return nil, err
	}
	claims := &evidence.Claims{
		Nonce: nonce, UEID: id.UEID, Product: d.tcfg.Product, Lifecycle: lc,
		Counters: map[string]uint64{},
		Layers:   st.measurements(),
	}
	names := []string{policyCounter}
	for _, l := range st.rec.Layers {
		names = append(names, layerCounter(l.Layer))
	}
	for _, n := range names {
		v, err := d.counter(ctx, n)
		if err != nil {
			return nil, err
		}
		claims.Counters[n] = v
	}
	// The quote by the IAK of the boot PCRs, over the nonce; it sets the
	// registers claim to the quoted values and carries the event log.
	if err := d.tpm.QuoteClaims(ctx, claims, &tpm.EvidenceRequest{
		Compartment: pluton.SecurityMonitor, Key: pluton.DeviceIDHandle,
		Bank: EvidenceBank, PCRs: usedRegisters(), EventLog: logBytes,
	}); err != nil {
		return nil, err
	}
	// Evidence whose log does not replay to the quoted PCRs is refused by
	// every verifier: say why here.
	if err := st.log.Verify(claims.Registers); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTPMPCRs, err)
	}
	chain, err := d.tpmChain(ctx)
	if err != nil {
		return nil, err
	}
	der := make([][]byte, len(chain))
	for i, c := range chain {
		der[i] = c.Raw
	}
	signer, err := d.idevidSigner(ctx)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(chain[0].PublicKey, signer.Public()) {
		return nil, fmt.Errorf("%w: the certificate chain is not of this TPM's IDevID key", ErrBootState)
	}
	return evidence.Sign(nil, signer, pluton.ECDSAP256, claims, der)
}

// TPMFactoryRequest is what a device on a TPM gives its station: the
// FactoryRequest (the CSR and the evidence signed by the TPM's IDevID key,
// the evidence carrying a quote of the boot PCRs by the IAK) and the TPM's
// proof that the IDevID key lives in the same TPM as the IAK
// (pluton/tpm.IdentityKeys): all over the service's nonce.
type TPMFactoryRequest struct {
	FactoryRequest
	// IAKPublic and IDevIDPublic are the TPMT_PUBLIC areas of the IAK and
	// the IDevID.
	IAKPublic, IDevIDPublic []byte
	// CertifyAttest and CertifySignature are the TPMS_ATTEST of the
	// TPM2_Certify of the IDevID by the IAK, with the nonce as
	// qualifyingData, and the IAK's TPMT_SIGNATURE over it.
	CertifyAttest, CertifySignature []byte
}

// FactoryRequestTPM returns the factory request of a device on a TPM over
// the service's nonce (at most 64 bytes). The device must be booted (the
// factory test firmware). It fails with ErrNotTPM on the emulated chip.
func (d *Device) FactoryRequestTPM(ctx context.Context, nonce []byte) (*TPMFactoryRequest, error) {
	if d.tpm == nil {
		return nil, ErrNotTPM
	}
	fr, err := d.FactoryRequest(ctx, nonce)
	if err != nil {
		return nil, err
	}
	ik, err := d.tpm.IdentityKeys(ctx, nonce)
	if err != nil {
		return nil, err
	}
	return &TPMFactoryRequest{
		FactoryRequest: *fr,
		IAKPublic:      ik.IAKPublic, IDevIDPublic: ik.IDevIDPublic,
		CertifyAttest: ik.Attest, CertifySignature: ik.Signature,
	}, nil
}
