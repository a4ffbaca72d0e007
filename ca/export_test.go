package ca

// ParseStoreForTest exposes the FileStore parser to the fuzz target.
func ParseStoreForTest(b []byte) (revoked int, err error) {
	s, err := parseStore(b)
	if err != nil {
		return 0, err
	}
	return len(s.Revoked), nil
}
