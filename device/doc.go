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
package device
