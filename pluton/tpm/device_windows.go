package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
)

// openDevice: Windows has no TPM device file (TBS is not supported here).
func openDevice(path string) (transport.TPMCloser, error) {
	return nil, fmt.Errorf("%w: TPM device %s on Windows", ErrNotSupported, path)
}
