//go:build !unix

package translog

import "os"

// lockExclusive is a no-op where flock is not available: callers must not
// open the same store from two processes.
func lockExclusive(*os.File) error { return nil }
