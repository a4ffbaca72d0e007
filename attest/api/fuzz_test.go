package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeAttestRequest feeds the attest endpoint's decoder untrusted
// bodies of both media types. It must never panic; what it accepts must
// re-encode to a body it accepts again with the same content (and for CBOR,
// which is deterministic, to the same bytes when the input was canonical).
func FuzzDecodeAttestRequest(f *testing.F) {
	e := newEnv(f)
	d := e.newDevice(2)
	n, err := e.v.Nonce(e.ctx)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := d.Attest(e.ctx, n)
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range []*AttestRequest{
		{Evidence: tok},
		{Evidence: tok, IDevIDChain: d.chain},
		{Evidence: tok, IDevIDChain: d.chain, CSR: []byte{0x30, 0x03, 0x02, 0x01, 0x00}},
	} {
		c, _ := cborEnc.Marshal(r)
		j, _ := json.Marshal(r)
		f.Add(true, c)
		f.Add(false, j)
	}
	f.Add(true, []byte{0xa0})
	f.Add(false, []byte(`{}`))
	f.Add(true, []byte{0xa1, 0x01, 0x40})
	f.Add(false, []byte(`{"evidence":"AA==","evidence":"AA=="}`))
	f.Fuzz(func(t *testing.T, isCBOR bool, body []byte) {
		mt := MediaJSON
		if isCBOR {
			mt = MediaCBOR
		}
		req, err := decodeAttestRequest(mt, body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("untyped error %v", err)
			}
			if err.(*Error).StatusCode >= 500 {
				t.Fatalf("a bad body gave %v", err)
			}
			return
		}
		var again []byte
		if isCBOR {
			again, err = cborEnc.Marshal(req)
		} else {
			again, err = json.Marshal(req)
		}
		if err != nil {
			t.Fatal(err)
		}
		req2, err := decodeAttestRequest(mt, again)
		if err != nil {
			t.Fatalf("re-encoded request refused: %v", err)
		}
		if !bytes.Equal(req.Evidence, req2.Evidence) || !bytes.Equal(req.CSR, req2.CSR) || len(req.IDevIDChain) != len(req2.IDevIDChain) {
			t.Fatal("round trip changed the request")
		}
	})
}

// FuzzDecodeReply feeds the client's decoder untrusted answers (the
// verifier is authenticated by TLS, but its answers are still bounded and
// checked): it must never panic.
func FuzzDecodeReply(f *testing.F) {
	res := &AttestResponse{Status: "affirming", EAR: "a.b.c", Certificate: [][]byte{{1, 2}}, Reasons: []Reason{{Code: "svn", Detail: "x"}}}
	c, _ := cborEnc.Marshal(res)
	j, _ := json.Marshal(res)
	f.Add(true, c)
	f.Add(false, j)
	eb, _ := cborEnc.Marshal(&ErrorBody{Problem: ProblemBusy, Message: "busy"})
	f.Add(true, eb)
	f.Fuzz(func(t *testing.T, isCBOR bool, body []byte) {
		mt := MediaJSON
		if isCBOR {
			mt = MediaCBOR
		}
		var r AttestResponse
		decodeReply(mt, body, &r)
		var e ErrorBody
		decodeReply(mt, body, &e)
		var v VerdictsResponse
		decodeReply(mt, body, &v)
	})
}
