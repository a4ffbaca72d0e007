//go:build unix

package translog

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockExclusive takes an exclusive advisory lock (flock) on f, without
// waiting; closing f drops it.
func lockExclusive(f *os.File) error {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s", ErrInUse, f.Name())
		}
		return fmt.Errorf("translog: lock: %w", err)
	}
	return nil
}
