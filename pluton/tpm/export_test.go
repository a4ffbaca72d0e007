package tpm

import "github.com/google/go-tpm/tpm2"

// Test hooks.

func PCRPolicyForTest(sel tpm2.TPMLPCRSelection, idx []int, vals map[int][]byte) []byte {
	return pcrPolicy(sel, idx, vals)
}

func ParseSealedForTest(b []byte) error {
	_, err := parseSealed(b)
	return err
}
