package strictcbor

import (
	"testing"
)

type rec struct {
	A int    `cbor:"1,keyasint"`
	B string `cbor:"2,keyasint"`
}

func TestStrict(t *testing.T) {
	dec := DecMode(Limits{MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16})
	good, err := EncMode().Marshal(rec{A: 1, B: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var r rec
	if err := dec.Unmarshal(good, &r); err != nil || r.A != 1 || r.B != "x" {
		t.Fatalf("good input: %v %+v", err, r)
	}
	for name, in := range map[string][]byte{
		"duplicate key":  {0xa2, 0x01, 0x01, 0x01, 0x02},
		"unknown key":    {0xa1, 0x03, 0x01},
		"indefinite map": {0xbf, 0x01, 0x01, 0xff},
		"tag":            {0xc1, 0x01},
		"invalid utf-8":  {0xa1, 0x02, 0x61, 0xff},
		"too many pairs": append([]byte{0xb1}, make([]byte, 34)...),
	} {
		var r rec
		if err := dec.Unmarshal(in, &r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
