package benchratio

import (
	"crypto/sha256"
	"testing"
)

func BenchmarkCompareSame(b *testing.B) {
	buf := make([]byte, 64)
	f := func() error { sha256.Sum256(buf); return nil }
	Compare(b, f, f)
}
