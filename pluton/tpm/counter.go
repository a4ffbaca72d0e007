package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/rootline/rootline/pluton"
)

// nvHandle names an NV index for a password session. The Name of an NV
// index (TPM 2.0 Part 1 §16) enters only HMAC and policy session digests;
// this package uses password sessions, so the handle value stands in.
func nvHandle(idx uint32) tpm2.NamedHandle {
	return tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: tpm2.TPM2BName{Buffer: binary.BigEndian.AppendUint32(nil, idx)}}
}

func nvAuth(idx uint32) tpm2.AuthHandle {
	n := nvHandle(idx)
	return tpm2.AuthHandle{Handle: n.Handle, Name: n.Name, Auth: tpm2.PasswordAuth(nil)}
}

func (t *TPM) counter(cm pluton.Compartment, name string) (*counterEntry, error) {
	if err := cm.Validate(); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	if err := validCounterName(name); err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	for i := range t.st.Counters {
		c := &t.st.Counters[i]
		if c.Name == name && c.Compartment == cm {
			return c, nil
		}
	}
	// Names are per compartment; another compartment's counter of the
	// same name is not this one.
	return nil, fmt.Errorf("tpm: counter %q of %q: %w", name, cm, pluton.ErrNoSuchCounter)
}

// nvRead reads the 8-byte big-endian value of a counter index
// (TPM 2.0 Part 3 §31.13).
func (t *TPM) nvRead(idx uint32) (uint64, error) {
	rsp, err := tpm2.NVRead{AuthHandle: nvAuth(idx), NVIndex: nvHandle(idx), Size: 8}.Execute(t.tpm)
	if err != nil {
		return 0, cmdErr(tpm2.TPMCCNVRead, err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("tpm: TPM2_NV_Read returned %d bytes, want 8", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

func (t *TPM) nvIncrement(idx uint32) error {
	_, err := tpm2.NVIncrement{AuthHandle: nvAuth(idx), NVIndex: nvHandle(idx)}.Execute(t.tpm)
	return cmdErr(tpm2.TPMCCNVIncrement, err)
}

// value returns the counter's value: NV value − Base.
func (t *TPM) value(c *counterEntry) (uint64, error) {
	v, err := t.nvRead(c.Index)
	if err != nil {
		return 0, err
	}
	if v < c.Base {
		return 0, fmt.Errorf("tpm: counter %q: NV value %d below its base %d (state file from another TPM?)", c.Name, v, c.Base)
	}
	return v - c.Base, nil
}

// Counter reads counter name of compartment cm.
func (t *TPM) Counter(ctx context.Context, cm pluton.Compartment, name string) (uint64, error) {
	if err := t.lock(ctx); err != nil {
		return 0, err
	}
	defer t.mu.Unlock()
	c, err := t.counter(cm, name)
	if err != nil {
		return 0, err
	}
	return t.value(c)
}

// create defines an NV counter index (TPM 2.0 Part 3 §31.3) with
// TPMA_NV_COUNTER, AUTHREAD and AUTHWRITE (empty password) and NO_DA,
// increments it once (an unwritten counter cannot be read) and records
// Base = first value − 1, so that the counter reads 1.
func (t *TPM) create(cm pluton.Compartment, name string) (*counterEntry, error) {
	if len(t.st.Counters) >= maxCounters {
		return nil, fmt.Errorf("tpm: counter %q: %w (%d counters)", name, pluton.ErrSlotsFull, maxCounters)
	}
	s := t.st.clone()
	for {
		if s.NextIndex > nvLast {
			return nil, fmt.Errorf("tpm: counter %q: %w (NV indexes %#x–%#x used)", name, pluton.ErrSlotsFull, nvFirst, nvLast)
		}
		idx := s.NextIndex
		s.NextIndex++
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex: tpm2.TPMHandle(idx),
				NameAlg: tpm2.TPMAlgSHA256,
				Attributes: tpm2.TPMANV{
					NT: tpm2.TPMNTCounter, AuthWrite: true, AuthRead: true, NoDA: true,
				},
				DataSize: 8,
			}),
		}.Execute(t.tpm)
		if errors.Is(err, tpm2.TPMRCNVDefined) {
			continue // left by an earlier state file; never reuse it
		}
		if err != nil {
			return nil, cmdErr(tpm2.TPMCCNVDefineSpace, err)
		}
		if err := t.nvIncrement(idx); err != nil {
			return nil, err
		}
		v, err := t.nvRead(idx)
		if err != nil {
			return nil, err
		}
		s.Counters = append(s.Counters, counterEntry{Compartment: cm, Name: name, Index: idx, Base: v - 1})
		if err := t.save(s); err != nil {
			return nil, err
		}
		t.log.Info("tpm counter created", "compartment", string(cm), "name", name, "nv_index", fmt.Sprintf("%#x", idx))
		return &t.st.Counters[len(t.st.Counters)-1], nil
	}
}

// IncrementCounter adds one to the counter, creating it (at 1) if needed.
func (t *TPM) IncrementCounter(ctx context.Context, cm pluton.Compartment, name string) (uint64, error) {
	if err := t.lock(ctx); err != nil {
		return 0, err
	}
	defer t.mu.Unlock()
	c, err := t.counter(cm, name)
	if errors.Is(err, pluton.ErrNoSuchCounter) {
		if c, err = t.create(cm, name); err != nil {
			return 0, err
		}
		return t.value(c)
	}
	if err != nil {
		return 0, err
	}
	if err := t.nvIncrement(c.Index); err != nil {
		return 0, err
	}
	return t.value(c)
}

// AdvanceCounter raises the counter to value by repeated
// TPM2_NV_Increment, at most [MaxAdvance] steps ([ErrAdvanceTooFar]
// beyond). A value below the current one fails with
// pluton.ErrCounterBackward; value 0 of a counter that does not exist is a
// no-op. If a TPM2_NV_Increment fails midway, the counter stays where that
// left it (between its old value and value; it never moves back).
func (t *TPM) AdvanceCounter(ctx context.Context, cm pluton.Compartment, name string, value uint64) error {
	if err := t.lock(ctx); err != nil {
		return err
	}
	defer t.mu.Unlock()
	c, err := t.counter(cm, name)
	cur := uint64(0)
	switch {
	case errors.Is(err, pluton.ErrNoSuchCounter):
		if value == 0 {
			return nil
		}
	case err != nil:
		return err
	default:
		if cur, err = t.value(c); err != nil {
			return err
		}
	}
	if value < cur {
		return fmt.Errorf("tpm: counter %q at %d, asked for %d: %w", name, cur, value, pluton.ErrCounterBackward)
	}
	if value-cur > MaxAdvance {
		return fmt.Errorf("%w: counter %q from %d to %d (at most %d steps): %w", ErrAdvanceTooFar, name, cur, value, MaxAdvance, pluton.ErrInvalidArgument)
	}
	if value == cur {
		return nil
	}
	if c == nil {
		if c, err = t.create(cm, name); err != nil {
			return err
		}
		cur = 1
	}
	for ; cur < value; cur++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := t.nvIncrement(c.Index); err != nil {
			return err
		}
	}
	return nil
}
