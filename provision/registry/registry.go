// Package registry records every chip the factory provisions: its UEID, its
// DeviceID public key, its state and its IDevID certificate.
//
// The registry is the factory flow's memory (DESIGN.md, "The factory
// flow", steps 5 and 6). A chip moves through three states, in one
// direction only:
//
//	Reserve   → ISSUING   the chip is recorded before anything is signed
//	MarkIssued→ ISSUED    the CA signed its IDevID; the certificate is kept
//	Complete  → COMPLETE  the station wrote the chain and the chip confirmed
//
// Every step may be repeated after a crash of the station, the chip or the
// service and gives the same answer: Reserve with a known UEID and the same
// key returns the existing record (with its certificate once issued);
// MarkIssued with the same certificate and Complete on a complete record
// succeed without change. A UEID has at most one certificate (the UEID is
// the primary key and the certificate is written once, ISSUING → ISSUED).
//
// Clone detection: Reserve with a known UEID and another key is refused
// with a *CloneError (errors.Is(err, ErrClone)), and an incident is recorded
// and committed although the request is refused.
//
// Quotas per station and per lot (SetQuota) are checked and spent in the
// same transaction that records the chip; a station or lot without a quota
// is not limited.
//
// Two backends implement Registry with the same semantics: OpenSQLite (one
// file, WAL, group commit) and OpenPostgres (several replicas or sites
// sharing one database).
package registry

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"
)

var (
	// ErrNotFound: no chip with this UEID.
	ErrNotFound = errors.New("registry: not found")
	// ErrClone: a known UEID presented with another key. See CloneError.
	ErrClone = errors.New("registry: UEID already registered with another key (clone)")
	// ErrQuotaExceeded: a station's or lot's quota is spent. See QuotaError.
	ErrQuotaExceeded = errors.New("registry: quota exceeded")
	// ErrWrongState: the transition is not allowed from the chip's state,
	// or repeats it with different data. See StateError.
	ErrWrongState = errors.New("registry: wrong state")
	// ErrInvalidRequest: a request field is missing or too long.
	ErrInvalidRequest = errors.New("registry: invalid request")
	// ErrClosed: the registry was closed.
	ErrClosed = errors.New("registry: closed")
)

// Bounds on request fields. They bound what an untrusted station can make
// the registry store.
const (
	MaxUEIDLen        = 64
	MaxPublicKeyLen   = 2048
	MaxNameLen        = 128
	MaxCertificateLen = 16 << 10
	MaxSerialLen      = 20 // octets, RFC 5280, 4.1.2.2
	MaxTPMPublicLen   = 1024
)

// State is a chip's provisioning state.
type State int

const (
	// Issuing: recorded, certificate not yet issued.
	Issuing State = 1
	// Issued: the IDevID is issued and recorded; not yet in the chip.
	Issued State = 2
	// Complete: the station confirmed the chip holds its chain.
	Complete State = 3
)

func (s State) String() string {
	switch s {
	case Issuing:
		return "ISSUING"
	case Issued:
		return "ISSUED"
	case Complete:
		return "COMPLETE"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Scope says what a quota limits.
type Scope string

const (
	ScopeStation Scope = "station"
	ScopeLot     Scope = "lot"
)

// Record is a chip as the registry knows it.
type Record struct {
	UEID        []byte
	PublicKey   []byte // DER SubjectPublicKeyInfo of the DeviceID key
	Product     string
	Lot         string
	Station     string // the station that reserved the chip
	State       State
	Certificate []byte   // DER IDevID certificate; nil while Issuing
	Serial      *big.Int // the certificate's serial number; nil while Issuing
	Created     time.Time
	IssuedAt    time.Time // zero while Issuing
	CompletedAt time.Time // zero until Complete
	// Injected is the device key the factory HSM made for the chip, for
	// a product whose identity is injected; nil for a chip that made its
	// own key. PublicKey stays the DeviceID key either way.
	Injected *InjectedKey
	// TPMIAK is, for a chip on a TPM 2.0, the TPMT_PUBLIC area of its
	// attestation key (IAK) as the factory checked it; nil otherwise.
	// PublicKey is then the TPM's IDevID key.
	TPMIAK []byte
}

// InjectedKey is what the registry knows of a device key made in the
// factory HSM and wrapped for one chip (DESIGN.md, "Injected identity").
type InjectedKey struct {
	// Label names the key on the HSM. It is recorded by Reserve, before
	// the key is made, so that a key made by a process that crashed
	// before recording it is found again (and destroyed) on the retry.
	Label string
	// PublicKey is the key's DER SubjectPublicKeyInfo, the key the IDevID
	// certifies; nil until SetInjectedKey records it.
	PublicKey []byte
	// DestroyedAt is when the HSM's copy was destroyed (after the chip
	// confirmed); zero until then.
	DestroyedAt time.Time
}

// Incident records a clone: a known UEID presented with another key.
type Incident struct {
	ID       int64
	UEID     []byte
	KnownKey []byte // the key registered first
	SeenKey  []byte // the untrusted key presented
	Product  string
	Lot      string
	Station  string
	Time     time.Time
}

// Quota is a limit and how much of it is spent.
type Quota struct {
	Scope Scope
	Name  string
	Limit int64
	Used  int64
}

// Stats are the registry's counters, for metrics.
type Stats struct {
	Issuing, Issued, Complete int64
	Incidents                 int64
}

// ReserveRequest asks to record a chip before its certificate is issued.
// Its fields come from a station and are untrusted; the station's name
// comes from its authenticated identity.
type ReserveRequest struct {
	UEID      []byte
	PublicKey []byte // DER SubjectPublicKeyInfo
	Product   string
	Lot       string
	Station   string
	// InjectLabel, for a product whose identity is injected, names the
	// device key the HSM will make for this chip: recorded with the chip
	// before the key exists. Empty for a chip that makes its own key. A
	// chip reserved again keeps the label it was first reserved with.
	InjectLabel string
	// TPMIAK, for a chip on a TPM 2.0, is the TPMT_PUBLIC area of its
	// attestation key (IAK), at most MaxTPMPublicLen bytes; nil for
	// another chip. A chip reserved again keeps the IAK it was first
	// reserved with (on a TPM the UEID is derived from the IAK).
	TPMIAK []byte
}

// Validate checks that every field is present and within its bound.
func (r *ReserveRequest) Validate() error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil request", ErrInvalidRequest)
	case len(r.UEID) == 0 || len(r.UEID) > MaxUEIDLen:
		return fmt.Errorf("%w: UEID length %d not in [1, %d]", ErrInvalidRequest, len(r.UEID), MaxUEIDLen)
	case len(r.PublicKey) == 0 || len(r.PublicKey) > MaxPublicKeyLen:
		return fmt.Errorf("%w: public key length %d not in [1, %d]", ErrInvalidRequest, len(r.PublicKey), MaxPublicKeyLen)
	}
	for _, f := range []struct{ name, v string }{{"product", r.Product}, {"lot", r.Lot}, {"station", r.Station}} {
		if err := validName(f.name, f.v); err != nil {
			return err
		}
	}
	if len(r.InjectLabel) > MaxNameLen {
		return fmt.Errorf("%w: inject label length %d above %d", ErrInvalidRequest, len(r.InjectLabel), MaxNameLen)
	}
	if len(r.TPMIAK) > MaxTPMPublicLen {
		return fmt.Errorf("%w: TPM IAK public area length %d above %d", ErrInvalidRequest, len(r.TPMIAK), MaxTPMPublicLen)
	}
	if len(r.TPMIAK) > 0 && r.InjectLabel != "" {
		return fmt.Errorf("%w: a chip on a TPM has no injected key", ErrInvalidRequest)
	}
	return nil
}

func validName(what, v string) error {
	if v == "" || len(v) > MaxNameLen {
		return fmt.Errorf("%w: %s length %d not in [1, %d]", ErrInvalidRequest, what, len(v), MaxNameLen)
	}
	return nil
}

func validUEID(ueid []byte) error {
	if len(ueid) == 0 || len(ueid) > MaxUEIDLen {
		return fmt.Errorf("%w: UEID length %d not in [1, %d]", ErrInvalidRequest, len(ueid), MaxUEIDLen)
	}
	return nil
}

// ListRequest selects records for export, in UEID order, a page at a time.
type ListRequest struct {
	Product string // "" for every product
	After   []byte // return UEIDs greater than this; nil to start
	Limit   int    // at most this many; <= 0 means 1000
}

// Registry is implemented by the SQLite and PostgreSQL backends. Every
// method is safe for concurrent use, and every write is one transaction:
// it happens entirely or not at all.
type Registry interface {
	// Reserve records the chip in state Issuing and spends one unit of
	// the station's and the lot's quotas. If the UEID is known with the
	// same key it returns the existing record, whatever its state, and
	// spends nothing. If the UEID is known with another key it records an
	// incident (committed) and returns a *CloneError. A spent quota gives a
	// *QuotaError and changes nothing.
	Reserve(ctx context.Context, req *ReserveRequest) (*Record, error)

	// MarkIssued stores the chip's certificate and moves it from Issuing
	// to Issued. Repeated with the same certificate it returns the record
	// unchanged; with another certificate, or on an unknown UEID, it fails
	// (*StateError, ErrNotFound).
	MarkIssued(ctx context.Context, ueid, certDER []byte, serial *big.Int) (*Record, error)

	// SetInjectedKey records the public key (DER SubjectPublicKeyInfo) of
	// the device key the HSM made for an injected chip, which must be
	// Issuing and reserved with an InjectLabel. Repeated with the same key
	// it returns the record unchanged; another key, another state, or a
	// chip without a label fail (*StateError, ErrNotFound). Once recorded,
	// the key is the one the IDevID certifies: it is never replaced.
	SetInjectedKey(ctx context.Context, ueid, spki []byte) (*Record, error)

	// MarkInjectedKeyDestroyed records that the HSM's copy of an injected
	// chip's key was destroyed. The chip must be Issued or Complete and
	// have a recorded injected key; repeated, it returns the record
	// unchanged.
	MarkInjectedKeyDestroyed(ctx context.Context, ueid []byte) (*Record, error)

	// Complete moves the chip from Issued to Complete. On a complete chip
	// it returns the record unchanged; on an Issuing chip it fails with a
	// *StateError.
	Complete(ctx context.Context, ueid []byte) (*Record, error)

	// Get returns the chip's record, or ErrNotFound.
	Get(ctx context.Context, ueid []byte) (*Record, error)

	// List returns records in UEID order for export to verifiers.
	List(ctx context.Context, req *ListRequest) ([]*Record, error)

	// Incidents returns every recorded clone incident, oldest first.
	Incidents(ctx context.Context) ([]*Incident, error)

	// SetQuota sets the limit of a station's or lot's quota, keeping what
	// is already spent. A limit below the spent amount stops further
	// reservations.
	SetQuota(ctx context.Context, scope Scope, name string, limit int64) error

	// Quota returns a quota, or ErrNotFound when none is set.
	Quota(ctx context.Context, scope Scope, name string) (*Quota, error)

	// Stats counts chips by state, and clone incidents, for metrics.
	Stats(ctx context.Context) (*Stats, error)

	Close() error
}

// CloneError is returned by Reserve when the UEID is registered with
// another key. The incident is recorded.
type CloneError struct {
	UEID       []byte
	IncidentID int64
}

func (e *CloneError) Error() string {
	return fmt.Sprintf("registry: UEID %x already registered with another key (clone, incident %d)", e.UEID, e.IncidentID)
}

func (e *CloneError) Unwrap() error { return ErrClone }

// QuotaError is returned by Reserve when a quota is spent.
type QuotaError struct {
	Scope Scope
	Name  string
	Limit int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("registry: quota exceeded for %s %q (limit %d)", e.Scope, e.Name, e.Limit)
}

func (e *QuotaError) Unwrap() error { return ErrQuotaExceeded }

// StateError is returned when a transition is not allowed.
type StateError struct {
	UEID   []byte
	Op     string // "issue", "complete", "set injected key", "destroy injected key"
	State  State  // the chip's state
	Reason string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("registry: cannot %s UEID %x in state %v: %s", e.Op, e.UEID, e.State, e.Reason)
}

func (e *StateError) Unwrap() error { return ErrWrongState }

func validScope(s Scope) error {
	if s != ScopeStation && s != ScopeLot {
		return fmt.Errorf("%w: unknown quota scope %q", ErrInvalidRequest, s)
	}
	return nil
}
