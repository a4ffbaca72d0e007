package registry

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// querier is what the operations need from a transaction: *sql.Tx, and the
// SQLite writer's *sql.Conn inside its batch transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// dialect adapts the shared SQL (written with ? placeholders) to a backend.
type dialect struct {
	name   string
	dollar bool // PostgreSQL numbers its placeholders: $1, $2, ...
	// rowLocks: the backend runs writes at READ COMMITTED and locks the
	// rows it reads to decide (SELECT ... FOR UPDATE). SQLite needs no
	// row locks: its writes are serialized.
	rowLocks bool
}

// forUpdate returns the locking clause for a read that decides a write.
func (d dialect) forUpdate() string {
	if d.rowLocks {
		return " FOR UPDATE"
	}
	return ""
}

// errRetry says the transaction lost a race and must run again from the
// start (it is rolled back, and the backend retries it).
var errRetry = errors.New("registry: concurrent write, retry")

func (d dialect) q(query string) string {
	if !d.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// op is one write, run inside a transaction. A refusal (a clone, a spent
// quota) is not a failure of the transaction: what the op wrote (the
// clone's incident) is committed and the refusal returned afterwards. An
// err rolls back everything the op wrote.
type op func(ctx context.Context, q querier) (rec *Record, refusal error, err error)

// ops holds what every operation needs besides the transaction.
type ops struct {
	d   dialect
	now func() time.Time
}

const recordColumns = `ueid, spki, product, lot, station, state, certificate, serial, created_ns, issued_ns, completed_ns,
	inject_label, inject_spki, inject_destroyed_ns, tpm_iak`

type scanner interface{ Scan(dest ...any) error }

func scanRecord(s scanner) (*Record, error) {
	var (
		r                 Record
		state             int64
		serial            sql.NullString
		created           int64
		issued, completed sql.NullInt64
		injLabel          sql.NullString
		injSPKI           []byte
		injDestroyed      sql.NullInt64
	)
	if err := s.Scan(&r.UEID, &r.PublicKey, &r.Product, &r.Lot, &r.Station, &state,
		&r.Certificate, &serial, &created, &issued, &completed,
		&injLabel, &injSPKI, &injDestroyed, &r.TPMIAK); err != nil {
		return nil, err
	}
	if injLabel.Valid {
		r.Injected = &InjectedKey{Label: injLabel.String, PublicKey: injSPKI}
		if injDestroyed.Valid {
			r.Injected.DestroyedAt = time.Unix(0, injDestroyed.Int64).UTC()
		}
	}
	r.State = State(state)
	if r.State < Issuing || r.State > Complete {
		return nil, fmt.Errorf("registry: stored state %d is not valid", state)
	}
	if serial.Valid {
		n, ok := new(big.Int).SetString(serial.String, 16)
		if !ok {
			return nil, fmt.Errorf("registry: stored serial %q is not valid", serial.String)
		}
		r.Serial = n
	}
	r.Created = time.Unix(0, created).UTC()
	if issued.Valid {
		r.IssuedAt = time.Unix(0, issued.Int64).UTC()
	}
	if completed.Valid {
		r.CompletedAt = time.Unix(0, completed.Int64).UTC()
	}
	return &r, nil
}

func (o *ops) get(ctx context.Context, q querier, ueid []byte) (*Record, error) {
	return o.read(ctx, q, ueid, "")
}

// getForUpdate reads a record and, on PostgreSQL, locks it until the end
// of the transaction.
func (o *ops) getForUpdate(ctx context.Context, q querier, ueid []byte) (*Record, error) {
	return o.read(ctx, q, ueid, o.d.forUpdate())
}

func (o *ops) read(ctx context.Context, q querier, ueid []byte, lock string) (*Record, error) {
	r, err := scanRecord(q.QueryRowContext(ctx, o.d.q(`SELECT `+recordColumns+` FROM devices WHERE ueid = ?`+lock), ueid))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("registry: reading UEID %x: %w", ueid, err)
	}
	return r, nil
}

func (o *ops) reserve(req *ReserveRequest) op {
	return func(ctx context.Context, q querier) (*Record, error, error) {
		now := o.now().UnixNano()
		rec, err := o.getForUpdate(ctx, q, req.UEID)
		switch {
		case err == nil && bytes.Equal(rec.PublicKey, req.PublicKey):
			// Repeated after a crash: the same answer, nothing spent.
			return rec, nil, nil
		case err == nil:
			// Same UEID, another key: a clone, or a chip whose fuses
			// were tampered with. Refused, and recorded for the operators.
			var id int64
			err := q.QueryRowContext(ctx, o.d.q(`INSERT INTO incidents (ueid, known_spki, seen_spki, product, lot, station, at_ns)
				VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
				req.UEID, rec.PublicKey, req.PublicKey, req.Product, req.Lot, req.Station, now).Scan(&id)
			if err != nil {
				return nil, nil, fmt.Errorf("registry: recording clone incident: %w", err)
			}
			return nil, &CloneError{UEID: bytes.Clone(req.UEID), IncidentID: id}, nil
		case !errors.Is(err, ErrNotFound):
			return nil, nil, err
		}

		// Check both quotas before spending either, so that a refusal
		// leaves nothing to undo. The quota rows stay locked until the
		// end of the transaction: two stations cannot both take the
		// last unit. (Locked in a fixed order, station then lot.)
		scopes := []struct {
			scope Scope
			name  string
		}{{ScopeStation, req.Station}, {ScopeLot, req.Lot}}
		for _, s := range scopes {
			var lim, used int64
			err := q.QueryRowContext(ctx, o.d.q(`SELECT lim, used FROM quotas WHERE scope = ? AND name = ?`+o.d.forUpdate()),
				string(s.scope), s.name).Scan(&lim, &used)
			if errors.Is(err, sql.ErrNoRows) {
				continue // no quota: not limited
			}
			if err != nil {
				return nil, nil, fmt.Errorf("registry: reading quota: %w", err)
			}
			if used >= lim {
				return nil, &QuotaError{Scope: s.scope, Name: s.name, Limit: lim}, nil
			}
		}
		// The row did not exist when read; if another transaction has
		// inserted it since, insert nothing and start again, to answer
		// as Reserve does for a known UEID.
		var label sql.NullString
		if req.InjectLabel != "" {
			label = sql.NullString{String: req.InjectLabel, Valid: true}
		}
		var iak []byte // NULL when absent
		if len(req.TPMIAK) > 0 {
			iak = req.TPMIAK
		}
		res, err := q.ExecContext(ctx, o.d.q(`INSERT INTO devices (ueid, spki, product, lot, station, state, created_ns, inject_label, tpm_iak)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ueid) DO NOTHING`),
			req.UEID, req.PublicKey, req.Product, req.Lot, req.Station, int64(Issuing), now, label, iak)
		if err != nil {
			return nil, nil, fmt.Errorf("registry: recording UEID %x: %w", req.UEID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, nil, fmt.Errorf("registry: recording UEID %x: %w", req.UEID, err)
		} else if n != 1 {
			return nil, nil, errRetry
		}
		for _, s := range scopes {
			if _, err := q.ExecContext(ctx, o.d.q(`UPDATE quotas SET used = used + 1 WHERE scope = ? AND name = ?`),
				string(s.scope), s.name); err != nil {
				return nil, nil, fmt.Errorf("registry: spending quota: %w", err)
			}
		}
		rec = &Record{
			UEID:      bytes.Clone(req.UEID),
			PublicKey: bytes.Clone(req.PublicKey),
			Product:   req.Product,
			Lot:       req.Lot,
			Station:   req.Station,
			State:     Issuing,
			Created:   time.Unix(0, now).UTC(),
			TPMIAK:    bytes.Clone(iak),
		}
		if label.Valid {
			rec.Injected = &InjectedKey{Label: req.InjectLabel}
		}
		return rec, nil, nil
	}
}

func validIssue(ueid, cert []byte, serial *big.Int) error {
	if err := validUEID(ueid); err != nil {
		return err
	}
	if len(cert) == 0 || len(cert) > MaxCertificateLen {
		return fmt.Errorf("%w: certificate length %d not in [1, %d]", ErrInvalidRequest, len(cert), MaxCertificateLen)
	}
	// RFC 5280, 4.1.2.2: a positive integer of at most 20 octets.
	if serial == nil || serial.Sign() <= 0 || len(serial.Bytes()) > MaxSerialLen {
		return fmt.Errorf("%w: serial number must be positive and at most %d octets", ErrInvalidRequest, MaxSerialLen)
	}
	return nil
}

func (o *ops) markIssued(ueid, cert []byte, serial *big.Int) op {
	return func(ctx context.Context, q querier) (*Record, error, error) {
		rec, err := o.getForUpdate(ctx, q, ueid)
		if err != nil {
			return nil, nil, err
		}
		if rec.State != Issuing {
			if bytes.Equal(rec.Certificate, cert) && rec.Serial != nil && rec.Serial.Cmp(serial) == 0 {
				return rec, nil, nil // repeated: the same answer
			}
			return nil, nil, &StateError{UEID: bytes.Clone(ueid), Op: "issue", State: rec.State,
				Reason: "another certificate is already recorded"}
		}
		now := o.now().UnixNano()
		res, err := q.ExecContext(ctx, o.d.q(`UPDATE devices SET state = ?, certificate = ?, serial = ?, issued_ns = ?
			WHERE ueid = ? AND state = ?`),
			int64(Issued), cert, serial.Text(16), now, ueid, int64(Issuing))
		if err != nil {
			return nil, nil, fmt.Errorf("registry: recording certificate of UEID %x: %w", ueid, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return nil, nil, fmt.Errorf("registry: recording certificate of UEID %x: %d rows changed (%v)", ueid, n, err)
		}
		rec.State = Issued
		rec.Certificate = bytes.Clone(cert)
		rec.Serial = new(big.Int).Set(serial)
		rec.IssuedAt = time.Unix(0, now).UTC()
		return rec, nil, nil
	}
}

func (o *ops) complete(ueid []byte) op {
	return func(ctx context.Context, q querier) (*Record, error, error) {
		rec, err := o.getForUpdate(ctx, q, ueid)
		if err != nil {
			return nil, nil, err
		}
		switch rec.State {
		case Complete:
			return rec, nil, nil
		case Issuing:
			return nil, nil, &StateError{UEID: bytes.Clone(ueid), Op: "complete", State: rec.State,
				Reason: "no certificate is recorded yet"}
		}
		now := o.now().UnixNano()
		res, err := q.ExecContext(ctx, o.d.q(`UPDATE devices SET state = ?, completed_ns = ? WHERE ueid = ? AND state = ?`),
			int64(Complete), now, ueid, int64(Issued))
		if err != nil {
			return nil, nil, fmt.Errorf("registry: completing UEID %x: %w", ueid, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return nil, nil, fmt.Errorf("registry: completing UEID %x: %d rows changed (%v)", ueid, n, err)
		}
		rec.State = Complete
		rec.CompletedAt = time.Unix(0, now).UTC()
		return rec, nil, nil
	}
}

func validInjectedKey(ueid, spki []byte) error {
	if err := validUEID(ueid); err != nil {
		return err
	}
	if len(spki) == 0 || len(spki) > MaxPublicKeyLen {
		return fmt.Errorf("%w: injected public key length %d not in [1, %d]", ErrInvalidRequest, len(spki), MaxPublicKeyLen)
	}
	return nil
}

func (o *ops) setInjectedKey(ueid, spki []byte) op {
	return func(ctx context.Context, q querier) (*Record, error, error) {
		const opName = "set injected key"
		rec, err := o.getForUpdate(ctx, q, ueid)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case rec.Injected == nil:
			return nil, nil, &StateError{UEID: bytes.Clone(ueid), Op: opName, State: rec.State,
				Reason: "the chip was not reserved for an injected key"}
		case rec.Injected.PublicKey != nil:
			if bytes.Equal(rec.Injected.PublicKey, spki) {
				return rec, nil, nil // repeated: the same answer
			}
			return nil, nil, &StateError{UEID: bytes.Clone(ueid), Op: opName, State: rec.State,
				Reason: "another injected key is already recorded"}
		case rec.State != Issuing:
			return nil, nil, &StateError{UEID: bytes.Clone(ueid), Op: opName, State: rec.State,
				Reason: "the certificate was issued without an injected key"}
		}
		res, err := q.ExecContext(ctx, o.d.q(`UPDATE devices SET inject_spki = ? WHERE ueid = ? AND state = ? AND inject_spki IS NULL`),
			spki, ueid, int64(Issuing))
		if err != nil {
			return nil, nil, fmt.Errorf("registry: recording injected key of UEID %x: %w", ueid, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return nil, nil, fmt.Errorf("registry: recording injected key of UEID %x: %d rows changed (%v)", ueid, n, err)
		}
		rec.Injected.PublicKey = bytes.Clone(spki)
		return rec, nil, nil
	}
}

func (o *ops) markInjectedKeyDestroyed(ueid []byte) op {
	return func(ctx context.Context, q querier) (*Record, error, error) {
		const opName = "destroy injected key"
		rec, err := o.getForUpdate(ctx, q, ueid)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case rec.Injected == nil || rec.Injected.PublicKey == nil:
			return nil, nil, &StateError{UEID: bytes.Clone(ueid), Op: opName, State: rec.State,
				Reason: "the chip has no recorded injected key"}
		case !rec.Injected.DestroyedAt.IsZero():
			return rec, nil, nil // repeated: the same answer
		case rec.State == Issuing:
			return nil, nil, &StateError{UEID: bytes.Clone(ueid), Op: opName, State: rec.State,
				Reason: "no certificate is recorded yet"}
		}
		now := o.now().UnixNano()
		res, err := q.ExecContext(ctx, o.d.q(`UPDATE devices SET inject_destroyed_ns = ? WHERE ueid = ? AND inject_destroyed_ns IS NULL`),
			now, ueid)
		if err != nil {
			return nil, nil, fmt.Errorf("registry: recording destruction of the injected key of UEID %x: %w", ueid, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return nil, nil, fmt.Errorf("registry: recording destruction of the injected key of UEID %x: %d rows changed (%v)", ueid, n, err)
		}
		rec.Injected.DestroyedAt = time.Unix(0, now).UTC()
		return rec, nil, nil
	}
}

func (o *ops) setQuota(scope Scope, name string, limit int64) op {
	return func(ctx context.Context, q querier) (*Record, error, error) {
		_, err := q.ExecContext(ctx, o.d.q(`INSERT INTO quotas (scope, name, lim, used) VALUES (?, ?, ?, 0)
			ON CONFLICT (scope, name) DO UPDATE SET lim = excluded.lim`), string(scope), name, limit)
		if err != nil {
			return nil, nil, fmt.Errorf("registry: setting quota: %w", err)
		}
		return nil, nil, nil
	}
}

func validQuota(scope Scope, name string, limit int64) error {
	if err := validScope(scope); err != nil {
		return err
	}
	if err := validName("quota name", name); err != nil {
		return err
	}
	if limit < 0 {
		return fmt.Errorf("%w: negative quota %d", ErrInvalidRequest, limit)
	}
	return nil
}

// Reads.

func (o *ops) list(ctx context.Context, q querier, req *ListRequest) ([]*Record, error) {
	if req == nil {
		req = &ListRequest{}
	}
	limit := req.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	query := `SELECT ` + recordColumns + ` FROM devices WHERE 1 = 1`
	var args []any
	if len(req.After) > 0 {
		query += ` AND ueid > ?`
		args = append(args, req.After)
	}
	if req.Product != "" {
		query += ` AND product = ?`
		args = append(args, req.Product)
	}
	query += ` ORDER BY ueid LIMIT ?`
	args = append(args, limit)
	rows, err := q.QueryContext(ctx, o.d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("registry: listing: %w", err)
	}
	defer rows.Close()
	var out []*Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("registry: listing: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: listing: %w", err)
	}
	return out, nil
}

func (o *ops) incidents(ctx context.Context, q querier) ([]*Incident, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, ueid, known_spki, seen_spki, product, lot, station, at_ns FROM incidents ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("registry: listing incidents: %w", err)
	}
	defer rows.Close()
	var out []*Incident
	for rows.Next() {
		var in Incident
		var at int64
		if err := rows.Scan(&in.ID, &in.UEID, &in.KnownKey, &in.SeenKey, &in.Product, &in.Lot, &in.Station, &at); err != nil {
			return nil, fmt.Errorf("registry: listing incidents: %w", err)
		}
		in.Time = time.Unix(0, at).UTC()
		out = append(out, &in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: listing incidents: %w", err)
	}
	return out, nil
}

func (o *ops) quota(ctx context.Context, q querier, scope Scope, name string) (*Quota, error) {
	qu := Quota{Scope: scope, Name: name}
	err := q.QueryRowContext(ctx, o.d.q(`SELECT lim, used FROM quotas WHERE scope = ? AND name = ?`), string(scope), name).Scan(&qu.Limit, &qu.Used)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("registry: reading quota: %w", err)
	}
	return &qu, nil
}

func (o *ops) stats(ctx context.Context, q querier) (*Stats, error) {
	var st Stats
	rows, err := q.QueryContext(ctx, `SELECT state, COUNT(*) FROM devices GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("registry: counting: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var state, n int64
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("registry: counting: %w", err)
		}
		switch State(state) {
		case Issuing:
			st.Issuing = n
		case Issued:
			st.Issued = n
		case Complete:
			st.Complete = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: counting: %w", err)
	}
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM incidents`).Scan(&st.Incidents); err != nil {
		return nil, fmt.Errorf("registry: counting incidents: %w", err)
	}
	return &st, nil
}
