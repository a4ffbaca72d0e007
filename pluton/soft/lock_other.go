//go:build !unix

package soft

// fileLock is a no-op where flock is not available: callers must not open
// the same chip from two processes.
type fileLock struct{}

func lockFile(string) (*fileLock, error) { return &fileLock{}, nil }

func (*fileLock) release() error { return nil }
