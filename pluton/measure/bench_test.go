package measure

import (
	"fmt"
	"testing"
)

func BenchmarkMeasure(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			data := make([]byte, size)
			desc := []byte("image")
			r, err := New()
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			b.SetBytes(int64(size))
			for b.Loop() {
				if n == MaxEvents { // a full log: start a new boot
					if r, err = New(); err != nil {
						b.Fatal(err)
					}
					n = 0
				}
				if err := r.Measure(n%NumRegisters, EVIPL, data, desc); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}

func BenchmarkReplay(b *testing.B) {
	for _, events := range []int{16, 256} {
		b.Run(fmt.Sprintf("%devents", events), func(b *testing.B) {
			r, err := New()
			if err != nil {
				b.Fatal(err)
			}
			for i := range events {
				if err := r.Measure(i%NumRegisters, EVIPL, []byte{byte(i)}, []byte("image")); err != nil {
					b.Fatal(err)
				}
			}
			l := r.Log()
			for b.Loop() {
				if _, err := l.Replay(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseLog(b *testing.B) {
	r, err := New()
	if err != nil {
		b.Fatal(err)
	}
	for i := range 256 {
		if err := r.Measure(i%NumRegisters, EVIPL, []byte{byte(i)}, []byte("image")); err != nil {
			b.Fatal(err)
		}
	}
	data := marshal(b, r.Log())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseLog(data); err != nil {
			b.Fatal(err)
		}
	}
}
