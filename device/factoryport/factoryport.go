// Package factoryport is a chip's factory port: the link a provisioning
// station uses to drive one chip through identity provisioning (DESIGN.md,
// "The factory flow", steps 1, 3 and 6, and "Injected identity"): the
// emulated chip that makes its own identity key, the one that receives an
// injected key, and a device on a TPM 2.0. On a production line it is the fixture's
// debug or UART link; here it is a stream socket (a Unix socket or TCP on
// loopback) in front of an emulated chip, with the same protocol usable for a
// real fixture's bridge.
//
// # Protocol, version 1
//
// The station sends requests and the chip answers each in turn, one at a time,
// on one connection. Each message is a frame: a 4-byte big-endian length, then
// that many bytes of CBOR in Core Deterministic Encoding (RFC 8949, §4.2.1), a
// map with small unsigned integer keys. Frames are at most MaxFrame bytes.
//
//	request  = { 1: version (1), 2: op, ? 3: nonce bstr, ? 4: [+ certificate bstr],
//	             ? 5: key blob bstr, ? 6: [+ secret blob bstr] }
//	response = { 1: version (1), ? 2: error, ? 3: ueid bstr, ? 4: csr bstr,
//	             ? 5: evidence bstr, ? 6: product tstr, ? 7: lifecycle tstr,
//	             ? 8: transport statement bstr, ? 9: transport signature bstr,
//	             ? 10: iak public bstr, ? 11: idevid public bstr,
//	             ? 12: certify attest bstr, ? 13: certify signature bstr }
//	error    = { 1: code tstr, 2: message tstr }
//
// Operations (the fields each takes; no other may be present):
//
//	1  info                 → ueid, product, lifecycle  (product is absent on a TPM)
//	2  factory-request      nonce → ueid, csr, evidence  (device.FactoryRequest)
//	3  install-identity     certificates → {}            (device.InstallIdentity)
//	4  transport-request    nonce → ueid, evidence, transport statement and
//	                        signature                    (device.TransportRequest)
//	5  install-injected     key blob, secret blobs (optional), certificates → {}
//	                                                     (device.InstallInjected)
//	6  tpm-factory-request  nonce → ueid, csr, evidence, iak public,
//	                        idevid public, certify attest and signature
//	                                                     (device.FactoryRequestTPM)
//
// A device on a TPM answers 1, 2, 3 and 6; operations 4 and 5 need the
// emulated chip ("unsupported" on a TPM), and 6 a TPM ("not-tpm" on the
// emulated chip).
//
// Error codes: "bad-request" (a malformed or unknown request), "identity"
// (device.ErrIdentity), "identity-installed" (device.ErrIdentityInstalled),
// "injected" (device.ErrInjected: a blob not for this chip or malformed),
// "unwrap" (soft.ErrUnwrap: a blob that does not unwrap with this chip's
// transport key), "already-injected" (soft.ErrAlreadyInjected), "not-tpm"
// (device.ErrNotTPM), "unsupported" (the chip does not offer the
// operation), "lifecycle" (the chip's lifecycle forbids it),
// "failed" (anything else).
// The client turns them back into errors matching the device package's
// sentinels, so a station branches the same way on a local and a remote chip.
//
// Everything the port receives is untrusted: frames are bounded before they
// are read, decoding is strict, and a malformed request is answered with
// "bad-request" and changes nothing on the chip.
package factoryport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/rootline/rootline/device"
	"github.com/rootline/rootline/internal/strictcbor"
	"github.com/rootline/rootline/pluton"
	"github.com/rootline/rootline/pluton/soft"
)

// maxArray bounds the certificates and the secrets of a request: more
// than device.MaxIdentityCertificates and the service's secrets per chip.
const maxArray = 32

// Version is the protocol version of every frame.
const Version = 1

// MaxFrame bounds one frame's CBOR: an identity chain of
// device.MaxIdentityCertificates certificates of device.MaxIdentityCertificateLen
// bytes, or a factory request with its evidence, and some room.
const MaxFrame = 256 << 10

// Operations.
const (
	OpInfo            = 1
	OpFactoryRequest  = 2
	OpInstallIdentity = 3
	// OpTransportRequest, OpInstallInjected: a chip of an injected
	// identity. OpTPMFactoryRequest: a device on a TPM.
	OpTransportRequest  = 4
	OpInstallInjected   = 5
	OpTPMFactoryRequest = 6
)

// Error codes.
const (
	CodeBadRequest        = "bad-request"
	CodeIdentity          = "identity"
	CodeIdentityInstalled = "identity-installed"
	CodeLifecycle         = "lifecycle"
	CodeInjected          = "injected"
	CodeUnwrap            = "unwrap"
	CodeAlreadyInjected   = "already-injected"
	CodeNotTPM            = "not-tpm"
	CodeUnsupported       = "unsupported"
	CodeFailed            = "failed"
)

var (
	// ErrProtocol: the peer sent something that is not a frame of this
	// protocol (too long, not CBOR, wrong version, unknown fields).
	ErrProtocol = errors.New("factoryport: protocol error")
	// ErrBadRequest: the chip refused the request as malformed.
	ErrBadRequest = errors.New("factoryport: the chip refused a malformed request")
	// ErrUnsupported: the chip does not offer the operation (a device on
	// a TPM has no transport key).
	ErrUnsupported = errors.New("factoryport: the chip does not offer the operation")
	// ErrLifecycle: the chip's lifecycle state forbids the operation.
	ErrLifecycle = errors.New("factoryport: the chip's lifecycle forbids it")
)

// RemoteError is an error the chip answered with.
type RemoteError struct {
	Code    string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("factoryport: chip: %s: %s", e.Code, e.Message)
}

// Unwrap maps the code to the device package's sentinels (and this
// package's), so that errors.Is works across the link.
func (e *RemoteError) Unwrap() error {
	switch e.Code {
	case CodeBadRequest:
		return ErrBadRequest
	case CodeIdentity:
		return device.ErrIdentity
	case CodeIdentityInstalled:
		return device.ErrIdentityInstalled
	case CodeLifecycle:
		return ErrLifecycle
	case CodeInjected:
		return device.ErrInjected
	case CodeUnwrap:
		return soft.ErrUnwrap
	case CodeAlreadyInjected:
		return soft.ErrAlreadyInjected
	case CodeNotTPM:
		return device.ErrNotTPM
	case CodeUnsupported:
		return ErrUnsupported
	}
	return nil
}

type request struct {
	Version int      `cbor:"1,keyasint"`
	Op      int      `cbor:"2,keyasint"`
	Nonce   []byte   `cbor:"3,keyasint,omitempty"`
	Chain   [][]byte `cbor:"4,keyasint,omitempty"`
	Key     []byte   `cbor:"5,keyasint,omitempty"`
	Secrets [][]byte `cbor:"6,keyasint,omitempty"`
}

type response struct {
	Version   int        `cbor:"1,keyasint"`
	Error     *wireError `cbor:"2,keyasint,omitempty"`
	UEID      []byte     `cbor:"3,keyasint,omitempty"`
	CSR       []byte     `cbor:"4,keyasint,omitempty"`
	Evidence  []byte     `cbor:"5,keyasint,omitempty"`
	Product   string     `cbor:"6,keyasint,omitempty"`
	Lifecycle string     `cbor:"7,keyasint,omitempty"`
	// Transport key of a chip of an injected identity.
	TransportStatement []byte `cbor:"8,keyasint,omitempty"`
	TransportSignature []byte `cbor:"9,keyasint,omitempty"`
	// The TPM's identity keys and the IAK's certification of the IDevID.
	IAKPublic        []byte `cbor:"10,keyasint,omitempty"`
	IDevIDPublic     []byte `cbor:"11,keyasint,omitempty"`
	CertifyAttest    []byte `cbor:"12,keyasint,omitempty"`
	CertifySignature []byte `cbor:"13,keyasint,omitempty"`
}

type wireError struct {
	Code    string `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint"`
}

var (
	encMode = strictcbor.EncMode()
	decMode = strictcbor.DecMode(strictcbor.Limits{MaxNestedLevels: 4, MaxArrayElements: maxArray, MaxMapPairs: 16})
)

// writeFrame writes v as one frame.
func writeFrame(w io.Writer, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("factoryport: %w", err)
	}
	if len(b) > MaxFrame {
		return fmt.Errorf("%w: a frame of %d bytes, at most %d", ErrProtocol, len(b), MaxFrame)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

// readFrame reads one frame into v. io.EOF before the first byte of a
// frame is returned as is: the peer closed the link between messages.
func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxFrame {
		return fmt.Errorf("%w: a frame of %d bytes, want 1 to %d", ErrProtocol, n, MaxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return decodeFrame(b, v)
}

func decodeFrame(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	// The decoder does not check that map keys are sorted or that
	// integers and lengths are minimal: a frame must be the Core
	// Deterministic Encoding of what it decodes to (RFC 8949, §4.2.1), so
	// that each message has one encoding.
	again, err := encMode.Marshal(v)
	if err != nil || !bytes.Equal(again, b) {
		return fmt.Errorf("%w: not in Core Deterministic Encoding", ErrProtocol)
	}
	var ver int
	switch m := v.(type) {
	case *request:
		ver = m.Version
	case *response:
		ver = m.Version
	}
	if ver != Version {
		return fmt.Errorf("%w: version %d, want %d", ErrProtocol, ver, Version)
	}
	return nil
}

// errorCode classifies a chip-side error for the wire.
func errorCode(err error) string {
	var le *pluton.LifecycleError
	switch {
	case errors.Is(err, device.ErrIdentityInstalled):
		return CodeIdentityInstalled
	case errors.Is(err, device.ErrIdentity):
		return CodeIdentity
	case errors.Is(err, soft.ErrAlreadyInjected):
		return CodeAlreadyInjected
	case errors.Is(err, soft.ErrUnwrap):
		return CodeUnwrap
	case errors.Is(err, device.ErrInjected):
		return CodeInjected
	case errors.Is(err, device.ErrNotTPM):
		return CodeNotTPM
	case errors.As(err, &le), errors.Is(err, pluton.ErrWrongLifecycle):
		return CodeLifecycle
	case errors.Is(err, pluton.ErrInvalidArgument):
		return CodeBadRequest
	}
	return CodeFailed
}

// Chip is what a station drives: a chip on this machine (*device.Device)
// or one behind a factory port (*Client).
type Chip interface {
	FactoryRequest(ctx context.Context, nonce []byte) (*device.FactoryRequest, error)
	InstallIdentity(ctx context.Context, chain [][]byte) error
}

// InjectedChip is a chip of an injected identity, on this machine or
// behind a factory port (provision/station.InjectedChip).
type InjectedChip interface {
	TransportRequest(ctx context.Context, nonce []byte) (*device.TransportRequest, error)
	InstallInjected(ctx context.Context, blob []byte, secrets [][]byte, chain [][]byte) error
}

// TPMChip is a device on a TPM, on this machine or behind a factory port
// (provision/station.TPMChip).
type TPMChip interface {
	FactoryRequestTPM(ctx context.Context, nonce []byte) (*device.TPMFactoryRequest, error)
	InstallIdentity(ctx context.Context, chain [][]byte) error
}

var (
	_ Chip         = (*device.Device)(nil)
	_ Chip         = (*Client)(nil)
	_ InjectedChip = (*device.Device)(nil)
	_ InjectedChip = (*Client)(nil)
	_ TPMChip      = (*device.Device)(nil)
	_ TPMChip      = (*Client)(nil)
)
