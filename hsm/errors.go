package hsm

import (
	"errors"
	"fmt"
)

// Errors returned by this package. They are wrapped with context; callers
// test with errors.Is. A failure reported by the token itself is an *[Error]
// that keeps the CKR_ code and matches the sentinel for that code.
var (
	// ErrUnsupported: this build has no PKCS#11 support (it was built
	// without cgo, or with the nopkcs11 tag), or the operation is not
	// offered for this module (InitToken on anything but SoftHSM2).
	ErrUnsupported = errors.New("hsm: PKCS#11 is not supported by this build")
	// ErrBadURI: a PKCS#11 URI does not follow RFC 7512, uses an attribute
	// this package refuses (pin-value), or does not name what the call
	// needs (a key, for Signer).
	ErrBadURI = errors.New("hsm: invalid PKCS#11 URI")
	// ErrModuleNotFound: no module-path was given and none of the places
	// SoftHSM2 is installed to holds it, or module-name names no module.
	ErrModuleNotFound = errors.New("hsm: PKCS#11 module not found")
	// ErrTokenNotFound: no initialised token matches the URI's token
	// attributes (CKR_TOKEN_NOT_PRESENT also matches).
	ErrTokenNotFound = errors.New("hsm: token not found")
	// ErrAmbiguousToken: more than one token matches the URI.
	ErrAmbiguousToken = errors.New("hsm: URI matches more than one token")
	// ErrTokenExists: InitToken was asked for a label a token already has.
	ErrTokenExists = errors.New("hsm: a token with this label exists")
	// ErrKeyNotFound: no private key matches the URI (CKR_KEY_HANDLE_INVALID
	// and CKR_OBJECT_HANDLE_INVALID also match).
	ErrKeyNotFound = errors.New("hsm: key not found")
	// ErrAmbiguousKey: the URI matches more than one private key.
	ErrAmbiguousKey = errors.New("hsm: URI matches more than one key")
	// ErrKeyExists: CreateKey was asked for a label an object already has.
	ErrKeyExists = errors.New("hsm: an object with this label exists")
	// ErrPINIncorrect: the token refused the PIN (CKR_PIN_INCORRECT).
	ErrPINIncorrect = errors.New("hsm: PIN incorrect")
	// ErrPINLocked: the token locked the PIN after too many failures
	// (CKR_PIN_LOCKED).
	ErrPINLocked = errors.New("hsm: PIN locked")
	// ErrPINSource: the PIN could not be read from its source (missing
	// file, unset variable, unknown scheme, unsafe file, empty PIN).
	ErrPINSource = errors.New("hsm: cannot read PIN")
	// ErrMechanismUnsupported: the token does not offer the mechanisms an
	// algorithm needs (CKR_MECHANISM_INVALID also matches), or the signer
	// options ask for a variant this package does not implement.
	ErrMechanismUnsupported = errors.New("hsm: mechanism not supported by the token")
	// ErrKeyAttributes: a key the token generated does not carry the
	// attributes asked for (sensitive, never extractable); it was destroyed.
	ErrKeyAttributes = errors.New("hsm: token did not honour the key template")
	// ErrSelfTest: the pairwise-consistency test of a new key failed; the
	// key was destroyed.
	ErrSelfTest = errors.New("hsm: pairwise-consistency test failed")
	// ErrWrapWithTrusted: the token refused to wrap a key marked
	// CKA_WRAP_WITH_TRUSTED (InjectKeyRequest.WrapWithTrusted) with the
	// derived, untrusted, wrapping key.
	ErrWrapWithTrusted = errors.New("hsm: key may be wrapped only by a trusted key")
	// ErrClosed: the Module was closed.
	ErrClosed = errors.New("hsm: module closed")
)

// Error is a failure reported by the PKCS#11 module: the function that
// failed and the CK_RV it returned. It matches, with errors.Is, the
// sentinel of its code (CKR_PIN_INCORRECT is ErrPINIncorrect, and so on);
// errors.As gives the code itself.
type Error struct {
	Op    string // the PKCS#11 function, "C_Login"
	Code  uint   // the CK_RV value, CKR_PIN_INCORRECT = 0xA0
	Token string // the token's label, when known
}

func (e *Error) Error() string {
	if e.Token != "" {
		return fmt.Sprintf("hsm: token %q: %s: %s", e.Token, e.Op, CKRName(e.Code))
	}
	return fmt.Sprintf("hsm: %s: %s", e.Op, CKRName(e.Code))
}

// Is reports whether target is the sentinel for e.Code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrPINIncorrect:
		return e.Code == ckrPINIncorrect
	case ErrPINLocked:
		return e.Code == ckrPINLocked
	case ErrTokenNotFound:
		return e.Code == ckrTokenNotPresent || e.Code == ckrTokenNotRecognized
	case ErrKeyNotFound:
		return e.Code == ckrKeyHandleInvalid || e.Code == ckrObjectHandleInvalid
	case ErrMechanismUnsupported:
		return e.Code == ckrMechanismInvalid || e.Code == ckrKeyTypeInconsistent || e.Code == ckrCurveNotSupported
	}
	return false
}

// CK_RV values this package branches on (PKCS#11 v3.0, pkcs11t.h).
const (
	ckrOK                    = 0x000
	ckrKeyHandleInvalid      = 0x060
	ckrKeyTypeInconsistent   = 0x063
	ckrMechanismInvalid      = 0x070
	ckrObjectHandleInvalid   = 0x082
	ckrPINIncorrect          = 0x0A0
	ckrPINLocked             = 0x0A4
	ckrSessionClosed         = 0x0B0
	ckrSessionHandleInvalid  = 0x0B3
	ckrTokenNotPresent       = 0x0E0
	ckrTokenNotRecognized    = 0x0E1
	ckrUserAlreadyLoggedIn   = 0x100
	ckrUserNotLoggedIn       = 0x101
	ckrCryptokiAlreadyInit   = 0x191
	ckrCurveNotSupported     = 0x140
	ckrUserPINNotInitialized = 0x102
)

// CKRName returns the name of a CK_RV value, "CKR_PIN_INCORRECT", or its hex
// value for a code this package does not know ("CKR_0x80000001").
func CKRName(code uint) string {
	if n, ok := ckrNames[code]; ok {
		return n
	}
	return fmt.Sprintf("CKR_0x%08X", code)
}

// ckrNames is the CK_RV table of PKCS#11 v3.0 (pkcs11t.h), so that a pure-Go
// build names codes too.
var ckrNames = map[uint]string{
	0x000: "CKR_OK",
	0x001: "CKR_CANCEL",
	0x002: "CKR_HOST_MEMORY",
	0x003: "CKR_SLOT_ID_INVALID",
	0x005: "CKR_GENERAL_ERROR",
	0x006: "CKR_FUNCTION_FAILED",
	0x007: "CKR_ARGUMENTS_BAD",
	0x008: "CKR_NO_EVENT",
	0x009: "CKR_NEED_TO_CREATE_THREADS",
	0x00A: "CKR_CANT_LOCK",
	0x010: "CKR_ATTRIBUTE_READ_ONLY",
	0x011: "CKR_ATTRIBUTE_SENSITIVE",
	0x012: "CKR_ATTRIBUTE_TYPE_INVALID",
	0x013: "CKR_ATTRIBUTE_VALUE_INVALID",
	0x01B: "CKR_ACTION_PROHIBITED",
	0x020: "CKR_DATA_INVALID",
	0x021: "CKR_DATA_LEN_RANGE",
	0x030: "CKR_DEVICE_ERROR",
	0x031: "CKR_DEVICE_MEMORY",
	0x032: "CKR_DEVICE_REMOVED",
	0x040: "CKR_ENCRYPTED_DATA_INVALID",
	0x041: "CKR_ENCRYPTED_DATA_LEN_RANGE",
	0x042: "CKR_AEAD_DECRYPT_FAILED",
	0x050: "CKR_FUNCTION_CANCELED",
	0x051: "CKR_FUNCTION_NOT_PARALLEL",
	0x054: "CKR_FUNCTION_NOT_SUPPORTED",
	0x060: "CKR_KEY_HANDLE_INVALID",
	0x062: "CKR_KEY_SIZE_RANGE",
	0x063: "CKR_KEY_TYPE_INCONSISTENT",
	0x064: "CKR_KEY_NOT_NEEDED",
	0x065: "CKR_KEY_CHANGED",
	0x066: "CKR_KEY_NEEDED",
	0x067: "CKR_KEY_INDIGESTIBLE",
	0x068: "CKR_KEY_FUNCTION_NOT_PERMITTED",
	0x069: "CKR_KEY_NOT_WRAPPABLE",
	0x06A: "CKR_KEY_UNEXTRACTABLE",
	0x070: "CKR_MECHANISM_INVALID",
	0x071: "CKR_MECHANISM_PARAM_INVALID",
	0x082: "CKR_OBJECT_HANDLE_INVALID",
	0x090: "CKR_OPERATION_ACTIVE",
	0x091: "CKR_OPERATION_NOT_INITIALIZED",
	0x0A0: "CKR_PIN_INCORRECT",
	0x0A1: "CKR_PIN_INVALID",
	0x0A2: "CKR_PIN_LEN_RANGE",
	0x0A3: "CKR_PIN_EXPIRED",
	0x0A4: "CKR_PIN_LOCKED",
	0x0B0: "CKR_SESSION_CLOSED",
	0x0B1: "CKR_SESSION_COUNT",
	0x0B3: "CKR_SESSION_HANDLE_INVALID",
	0x0B4: "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
	0x0B5: "CKR_SESSION_READ_ONLY",
	0x0B6: "CKR_SESSION_EXISTS",
	0x0B7: "CKR_SESSION_READ_ONLY_EXISTS",
	0x0B8: "CKR_SESSION_READ_WRITE_SO_EXISTS",
	0x0C0: "CKR_SIGNATURE_INVALID",
	0x0C1: "CKR_SIGNATURE_LEN_RANGE",
	0x0D0: "CKR_TEMPLATE_INCOMPLETE",
	0x0D1: "CKR_TEMPLATE_INCONSISTENT",
	0x0E0: "CKR_TOKEN_NOT_PRESENT",
	0x0E1: "CKR_TOKEN_NOT_RECOGNIZED",
	0x0E2: "CKR_TOKEN_WRITE_PROTECTED",
	0x0F0: "CKR_UNWRAPPING_KEY_HANDLE_INVALID",
	0x0F1: "CKR_UNWRAPPING_KEY_SIZE_RANGE",
	0x0F2: "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",
	0x100: "CKR_USER_ALREADY_LOGGED_IN",
	0x101: "CKR_USER_NOT_LOGGED_IN",
	0x102: "CKR_USER_PIN_NOT_INITIALIZED",
	0x103: "CKR_USER_TYPE_INVALID",
	0x104: "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
	0x105: "CKR_USER_TOO_MANY_TYPES",
	0x110: "CKR_WRAPPED_KEY_INVALID",
	0x112: "CKR_WRAPPED_KEY_LEN_RANGE",
	0x113: "CKR_WRAPPING_KEY_HANDLE_INVALID",
	0x114: "CKR_WRAPPING_KEY_SIZE_RANGE",
	0x115: "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
	0x120: "CKR_RANDOM_SEED_NOT_SUPPORTED",
	0x121: "CKR_RANDOM_NO_RNG",
	0x130: "CKR_DOMAIN_PARAMS_INVALID",
	0x140: "CKR_CURVE_NOT_SUPPORTED",
	0x150: "CKR_BUFFER_TOO_SMALL",
	0x160: "CKR_SAVED_STATE_INVALID",
	0x170: "CKR_INFORMATION_SENSITIVE",
	0x180: "CKR_STATE_UNSAVEABLE",
	0x190: "CKR_CRYPTOKI_NOT_INITIALIZED",
	0x191: "CKR_CRYPTOKI_ALREADY_INITIALIZED",
	0x1A0: "CKR_MUTEX_BAD",
	0x1A1: "CKR_MUTEX_NOT_LOCKED",
	0x1B0: "CKR_NEW_PIN_MODE",
	0x1B1: "CKR_NEXT_OTP",
	0x1B5: "CKR_EXCEEDED_MAX_ITERATIONS",
	0x1B6: "CKR_FIPS_SELF_TEST_FAILED",
	0x1B7: "CKR_LIBRARY_LOAD_FAILED",
	0x1B8: "CKR_PIN_TOO_WEAK",
	0x1B9: "CKR_PUBLIC_KEY_INVALID",
	0x200: "CKR_FUNCTION_REJECTED",
	0x201: "CKR_TOKEN_RESOURCE_EXCEEDED",
	0x202: "CKR_OPERATION_CANCEL_FAILED",
}
