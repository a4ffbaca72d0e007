package registry

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"math/big"
	"path/filepath"
	"testing"

	"github.com/rootline/rootline/internal/pgtest"
)

// testInjectedKey runs an injected chip's record through its life: the
// label with the reservation, the key once made (write-once), the
// certificate, the HSM copy's destruction, and a restart in between.
func testInjectedKey(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	rq := req(1)
	rq.InjectLabel = "inject-0001"
	rec := mustReserve(t, r, rq)
	if rec.Injected == nil || rec.Injected.Label != "inject-0001" || rec.Injected.PublicKey != nil || !rec.Injected.DestroyedAt.IsZero() {
		t.Fatalf("Reserve: Injected = %+v", rec.Injected)
	}
	// An on-chip chip has none.
	plain := mustReserve(t, r, req(2))
	if plain.Injected != nil {
		t.Fatalf("on-chip record has Injected = %+v", plain.Injected)
	}
	if _, err := r.SetInjectedKey(ctx, ueid(2), []byte("inj-2")); !errors.Is(err, ErrWrongState) {
		t.Fatalf("SetInjectedKey on an on-chip chip: %v", err)
	}
	if _, err := r.SetInjectedKey(ctx, ueid(9), []byte("inj-9")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetInjectedKey on an unknown chip: %v", err)
	}
	// Not destroyed before it exists.
	if _, err := r.MarkInjectedKeyDestroyed(ctx, ueid(1)); !errors.Is(err, ErrWrongState) {
		t.Fatalf("MarkInjectedKeyDestroyed before the key: %v", err)
	}

	rec, err := r.SetInjectedKey(ctx, ueid(1), []byte("inj-1"))
	if err != nil || !bytes.Equal(rec.Injected.PublicKey, []byte("inj-1")) {
		t.Fatalf("SetInjectedKey: %v, %+v", err, rec)
	}
	if _, err := r.SetInjectedKey(ctx, ueid(1), []byte("inj-1")); err != nil {
		t.Fatalf("SetInjectedKey repeated: %v", err)
	}
	if _, err := r.SetInjectedKey(ctx, ueid(1), []byte("other")); !errors.Is(err, ErrWrongState) {
		t.Fatalf("SetInjectedKey with another key: %v", err)
	}
	if _, err := r.MarkInjectedKeyDestroyed(ctx, ueid(1)); !errors.Is(err, ErrWrongState) {
		t.Fatalf("MarkInjectedKeyDestroyed while Issuing: %v", err)
	}

	// Reserve again (a retry) keeps the label and the key, whatever label
	// it asks for, and spends nothing.
	rq2 := req(1)
	rq2.InjectLabel = "something-else"
	rec = mustReserve(t, r, rq2)
	if rec.Injected == nil || rec.Injected.Label != "inject-0001" || !bytes.Equal(rec.Injected.PublicKey, []byte("inj-1")) {
		t.Fatalf("Reserve again: Injected = %+v", rec.Injected)
	}
	if !bytes.Equal(rec.PublicKey, key(1)) {
		t.Fatal("the DeviceID key is not kept as the record's key")
	}

	// A restart in between keeps everything.
	r.Close()
	r = open(t)
	if _, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SetInjectedKey(ctx, ueid(1), []byte("other")); !errors.Is(err, ErrWrongState) {
		t.Fatalf("SetInjectedKey after issuance: %v", err)
	}
	rec, err = r.MarkInjectedKeyDestroyed(ctx, ueid(1))
	if err != nil || rec.Injected.DestroyedAt.IsZero() {
		t.Fatalf("MarkInjectedKeyDestroyed: %v, %+v", err, rec)
	}
	first := rec.Injected.DestroyedAt
	rec, err = r.MarkInjectedKeyDestroyed(ctx, ueid(1))
	if err != nil || !rec.Injected.DestroyedAt.Equal(first) {
		t.Fatalf("MarkInjectedKeyDestroyed repeated: %v, %+v", err, rec)
	}
	if _, err := r.Complete(ctx, ueid(1)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = open(t)
	got, err := r.Get(ctx, ueid(1))
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Complete || got.Injected == nil || got.Injected.Label != "inject-0001" ||
		!bytes.Equal(got.Injected.PublicKey, []byte("inj-1")) || !got.Injected.DestroyedAt.Equal(first) {
		t.Fatalf("Get after restart: %+v, Injected %+v", got, got.Injected)
	}
	list, err := r.List(ctx, &ListRequest{})
	if err != nil || len(list) != 2 || list[0].Injected == nil || list[1].Injected != nil {
		t.Fatalf("List: %v, %d records", err, len(list))
	}
	st, err := r.Stats(ctx)
	if err != nil || st.Complete != 1 || st.Issuing != 1 {
		t.Fatalf("Stats: %v, %+v", err, st)
	}

	// Bounds.
	long := req(3)
	long.InjectLabel = string(bytes.Repeat([]byte("x"), MaxNameLen+1))
	if _, err := r.Reserve(ctx, long); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("Reserve with a long label: %v", err)
	}
	if _, err := r.SetInjectedKey(ctx, ueid(1), nil); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("SetInjectedKey without a key: %v", err)
	}
	if _, err := r.SetInjectedKey(ctx, ueid(1), make([]byte, MaxPublicKeyLen+1)); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("SetInjectedKey with a long key: %v", err)
	}
	if _, err := r.MarkInjectedKeyDestroyed(ctx, nil); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("MarkInjectedKeyDestroyed without a UEID: %v", err)
	}
}

// v1Database makes a database at schema version 1 (as rootline made it
// before injected identities) holding one issued chip, with the driver and
// dialect given.
func v1Database(t *testing.T, driver, dsn string, d dialect) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	init, err := migrationFS.ReadFile("migrations/" + d.name + "/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, applied_ns BIGINT NOT NULL)`,
		string(init),
		`INSERT INTO schema_migrations (version, applied_ns) VALUES (1, 1)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := db.ExecContext(ctx, d.q(`INSERT INTO devices (ueid, spki, product, lot, station, state, certificate, serial, created_ns, issued_ns)
		VALUES (?, ?, 'sku-a', 'lot-1', 'st-1', 2, ?, 'a1', 1, 2)`), ueid(1), key(1), cert(1)); err != nil {
		t.Fatal(err)
	}
}

// checkMigrated opens a version-1 database: the old chip reads as an
// on-chip one, and the new columns work.
func checkMigrated(t *testing.T, r Registry) {
	t.Helper()
	ctx := context.Background()
	rec, err := r.Get(ctx, ueid(1))
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != Issued || !bytes.Equal(rec.Certificate, cert(1)) || rec.Injected != nil {
		t.Fatalf("migrated record %+v", rec)
	}
	if _, err := r.Complete(ctx, ueid(1)); err != nil {
		t.Fatal(err)
	}
	rq := req(2)
	rq.InjectLabel = "inject-2"
	mustReserve(t, r, rq)
	if _, err := r.SetInjectedKey(ctx, ueid(2), []byte("inj-2")); err != nil {
		t.Fatal(err)
	}
	rq = req(3)
	rq.TPMIAK = []byte("iak-3")
	if rec := mustReserve(t, r, rq); !bytes.Equal(rec.TPMIAK, []byte("iak-3")) {
		t.Fatalf("TPMIAK after migration: %x", rec.TPMIAK)
	}
	if rec, err := r.Get(ctx, ueid(3)); err != nil || !bytes.Equal(rec.TPMIAK, []byte("iak-3")) {
		t.Fatalf("Get after migration: %v", err)
	}
}

func TestMigrateV1SQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	v1Database(t, "sqlite", sqliteDSN(path, false), dialect{name: "sqlite"})
	r, err := OpenSQLite(context.Background(), &SQLiteConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkMigrated(t, r)
}

func TestMigrateV1Postgres(t *testing.T) {
	dsn := pgtest.CreateDatabase(t, pgtest.Start(t))
	v1Database(t, "pgx", dsn, dialect{name: "postgres", dollar: true})
	r, err := OpenPostgres(context.Background(), &PostgresConfig{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkMigrated(t, r)
}
