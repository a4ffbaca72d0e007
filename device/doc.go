// Package device is the emulated MCU: a boot ROM, a bootloader, an OS and
// an application on top of an emulated security subsystem (pluton/soft).
//
// Boot runs the chain the way silicon does:
//
//  1. The boot ROM reads the trust policy and checks it against the root
//     key hash fused into the chip and against the policy counter.
//  2. Each layer in turn (bootloader, OS, app) is verified before it runs:
//     its image is signed by a key the policy authorizes for that layer and
//     not revoked, for this product, with a security version number (SVN)
//     at least the chip's counter for the layer (pluton/boot).
//  3. The verified layer is measured: its payload and its manifest are
//     extended into its measurement register and recorded in the TCG event
//     log (pluton/measure).
//  4. The layer gets its DICE identity: its CDIs from the layer below (the
//     chip's DICE engine for the first layer, from the UDS), its Alias key
//     from its CDI, and an Alias certificate signed by the layer below with
//     the layer's DiceTcbInfo (pluton/dice).
//
// Counters do not move during boot. Confirm, called once the new images
// have proved good, raises each layer's counter to the SVN it runs (and the
// policy counter to the policy's version), so an interrupted update can
// still fall back to the previous images until then.
//
// Attest produces evidence (pluton/evidence): an EAT signed by the top
// layer's Alias key, carrying the nonce, the chip's UEID, lifecycle and
// counters, each layer's measurement, the registers and event log, and the
// DICE certificate chain up to the DeviceID certificate.
//
// A Device keeps its state in one directory: the chip's state file
// (chip.state), the record of the current boot (boot.state) and its event
// log (eventlog.bin). The boot record holds no secret: CDIs and Alias keys
// are derived again from the chip whenever they are needed, as a running
// device would still hold them in RAM.
//
// # Devices on a TPM 2.0
//
// InitTPM and OpenTPM make the same device on a TPM 2.0 (pluton/tpm)
// instead of the emulated chip: it boots the same signed images through
// the same verification, and Attest, FactoryRequest, InstallIdentity and
// Confirm work the same way. What differs, and why:
//
//   - Fuses. A TPM has none: the product and the root key hash are kept in
//     the state directory (TPMConfigFile), trusted like the rest of it. The
//     trust policy the boot ROM accepts is measured into PCR 0, so a
//     verifier sees which one (and which root signed it) in the quote.
//   - Anti-rollback. The counters are the TPM's NV counters (TPMA_NV_COUNTER),
//     which the TPM moves only up; Confirm raises them as on the chip.
//   - Lifecycle. A TPM has no lifecycle either; an NV counter stands for it:
//     never incremented, Manufacturing; 1, Provisioned (set by
//     InstallIdentity). The TPM makes the transition one-way.
//   - Measurements. The registers are the TPM's PCRs 0 to 3 (PolicyRegister
//     and LayerRegister, as on the chip), with the same TCG event log,
//     extended in every bank the TPM has of SHA-256 and SHA-384. PCRs are
//     reset only with the TPM (TPM2_Startup(CLEAR) after a power cycle), so
//     Boot extends them only if they are at zero, accepts them if they
//     already hold the same boot (the same images booted again), and fails
//     with ErrTPMPCRs otherwise: booting other images needs a TPM reset. The
//     whole chain is verified before the first extend, so a refused boot
//     leaves the PCRs at zero.
//   - Identity and evidence. There is no DICE: no DeviceID derived from a
//     fused secret, no Alias keys, no layer certificates. The TPM has two
//     identity keys, primary keys of its endorsement hierarchy, the same
//     after every restart (TCG "TPM 2.0 Keys for Device Identity and
//     Attestation"): the IAK, a restricted signing key that signs only what
//     the TPM itself generated (quotes, certifications), and the IDevID, an
//     unrestricted signing key. The UEID is derived from the IAK
//     (pluton/tpm.UEID). The EAT is signed by the IDevID key, with x5chain
//     the installed IDevID chain (leaf first, to the factory root), or
//     before provisioning the self-signed certificate of the IDevID key
//     (DeviceIDFile). The EAT carries a quote of PCRs 0 to 3 of the SHA-256
//     bank (EvidenceBank) by the IAK over the eat_nonce (tpm.QuoteClaims),
//     its registers claim set to the quoted values and its event log
//     claim to the boot's log. A verifier checks the EAT with
//     evidence.Verify against the factory root, then the quote with
//     tpm.VerifyEvidenceQuote and the IAK it trusts. The EAT is signed
//     with the IDevID rather than an AK because the IAK, restricted,
//     cannot sign an EAT, and the IDevID is the key the factory
//     certifies, so the chain a verifier already holds covers it. The cost:
//     the IDevID signs whatever software on the device asks, so the claims
//     outside the quote (layer versions, SVNs, counters, lifecycle) are the
//     device software's word; only the quoted PCRs and the event log that
//     replays to them are the TPM's. Appraisal must bind the layer digests to
//     the log, as provision.Service.ProvisionTPM does.
//   - Factory. FactoryRequestTPM adds to the FactoryRequest (a CSR and the
//     evidence, both signed by the IDevID) the TPM's proof that the IDevID
//     lives in the IAK's TPM: the IAK's TPM2_Certify of the IDevID over the
//     same nonce, with both keys' public areas.
//
// A device on a TPM keeps in its directory TPMConfigFile, TPMStateFile
// (pluton/tpm's), DeviceIDFile, BootFile, EventLogFile and IdentityFile. It
// holds its TPM connection until Close: swtpm serves one connection at a
// time.
package device
