//go:build cgo && !nopkcs11

package hsm

import "context"

// Hooks for the tests in package hsm_test, which provoke what a
// long-running process meets: a token that closed every session, or
// forgot the login.

// CloseAllSessionsForTest closes every session of the process on the token
// behind the Module's back (C_CloseAllSessions), which also logs it out.
func (m *Module) CloseAllSessionsForTest() error {
	return m.wrap("C_CloseAllSessions", m.p.CloseAllSessions(m.slot))
}

// LogoutForTest logs the token out (C_Logout) on a pooled session.
func (m *Module) LogoutForTest() error {
	sh, err := m.pool.get(context.Background())
	if err != nil {
		return err
	}
	defer m.pool.put(sh)
	return m.wrap("C_Logout", m.p.Logout(sh))
}

// SessionsForTest reports how many sessions the pool has open, and its
// limit.
func (m *Module) SessionsForTest() (open, limit int) { return m.pool.size(), m.maxSess }

// ModulePathForTest is the path of the loaded module.
func (m *Module) ModulePathForTest() string { return m.modulePath }

// BreakPairwiseTestForTest makes the next pairwise-consistency tests of
// CreateKey fail.
func (m *Module) BreakPairwiseTestForTest() { m.testBreakPCT = func() bool { return true } }

// ReportExtractableForTest makes CreateKey read its new keys back as
// extractable, as from a token that ignored the template.
func (m *Module) ReportExtractableForTest() {
	m.testTamperKeyInfo = func(ki *KeyInfo) { ki.Extractable, ki.NeverExtractable = true, false }
}

// DropMechanismForTest makes the Module believe the token does not offer
// mech (as if C_GetMechanismList had not listed it).
func (m *Module) DropMechanismForTest(mech uint) { delete(m.mechs, mech) }
