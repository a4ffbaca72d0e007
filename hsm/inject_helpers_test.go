//go:build cgo && !nopkcs11

package hsm_test

import "time"

func nowNS() int64 { return time.Now().UnixNano() }
