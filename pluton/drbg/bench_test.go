package drbg

import (
	"crypto"
	"crypto/rand"
	"testing"
)

// BenchmarkLive compares Live (fed by a HealthTestedSource over crypto/rand,
// claimed H = 8) with crypto/rand.Read itself.
func BenchmarkLive(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"32B", 32}, {"4KiB", 4096}} {
		b.Run(size.name+"/live", func(b *testing.B) {
			src, err := NewHealthTestedSource(rand.Reader, 8)
			if err != nil {
				b.Fatal(err)
			}
			l, err := NewLive(src, []byte("benchmark"))
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(size.name+"/cryptorand", func(b *testing.B) {
			buf := make([]byte, size.n)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				rand.Read(buf)
			}
		})
	}
}

func BenchmarkGenerate(b *testing.B) {
	entropy := make([]byte, 64)
	b.Run("CTR-AES-256-DF/32B", func(b *testing.B) {
		d, err := NewCTR(256, true, entropy[:32], entropy[:16], nil)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]byte, 32)
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Generate(out, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CTR-AES-256-DF/32B/additional", func(b *testing.B) {
		d, err := NewCTR(256, true, entropy[:32], entropy[:16], nil)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]byte, 32)
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Generate(out, entropy[:32]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("HMAC-SHA-256/32B", func(b *testing.B) {
		d, err := NewHMAC(crypto.SHA256, entropy[:32], entropy[:16], nil)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]byte, 32)
		b.ReportAllocs()
		for b.Loop() {
			if err := d.Generate(out, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
