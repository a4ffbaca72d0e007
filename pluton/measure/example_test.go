package measure_test

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/rootline/rootline/pluton/measure"
)

// A device measures its boot into the registers; the verifier parses the
// log it sends and replays it against the quoted register values.
func Example() {
	// On the device.
	r, err := measure.New() // SHA-256 and SHA-384 banks
	if err != nil {
		panic(err)
	}
	separator := []byte{0, 0, 0, 0}
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(r.Measure(0, measure.EVSCRTMVersion, []byte("boot ROM 1.0"), []byte("boot ROM 1.0")))
	must(r.Measure(0, measure.EVSeparator, separator, separator))
	must(r.Measure(4, measure.EVIPL, []byte("...os image..."), []byte("os 1.2.0")))
	logBytes, err := r.Log().MarshalBinary()
	must(err)
	pcr0, err := r.Value(crypto.SHA256, 0)
	must(err)
	pcr4, err := r.Value(crypto.SHA256, 4)
	must(err)
	quoted := map[crypto.Hash]map[int][]byte{crypto.SHA256: {0: pcr0, 4: pcr4}}

	// In the verifier: the log is untrusted until it reproduces the quote.
	l, err := measure.ParseLog(logBytes)
	must(err)
	if err := l.Verify(quoted); err != nil {
		panic(err)
	}
	for _, e := range l.Events() {
		fmt.Printf("register %d %-17v %q\n", e.Register, e.Type, e.Data)
	}
	fmt.Printf("SHA-256 register 0: %x\n", pcr0)

	// A log that does not match the quote is named by register.
	quoted[crypto.SHA256][4] = make([]byte, 32)
	err = l.Verify(quoted)
	var re *measure.ReplayError
	fmt.Println(errors.As(err, &re), re.Mismatched, errors.Is(err, measure.ErrReplay))
	fmt.Println(err)
	// Output:
	// register 0 EV_S_CRTM_VERSION "boot ROM 1.0"
	// register 0 EV_SEPARATOR      "\x00\x00\x00\x00"
	// register 4 EV_IPL            "os 1.2.0"
	// SHA-256 register 0: b494e8a2c052309029a1e778d1492013ef2ff11281101b05b3a64dac69719c3b
	// true [4] true
	// measure: event log does not reproduce SHA-256 register 4
}
