package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// opener opens the same registry each time it is called: the test closes
// one and opens it again to play a crash and restart of the service.
type opener func(t *testing.T) Registry

// factory makes a fresh, empty registry for one test.
type factory func(t *testing.T) opener

// runSuite runs the whole suite against one backend. Both backends must
// pass it unchanged.
func runSuite(t *testing.T, newRegistry factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open opener)
	}{
		{"ReserveIdempotent", testReserveIdempotent},
		{"Lifecycle", testLifecycle},
		{"StateRefusals", testStateRefusals},
		{"CloneIncidentCommitted", testClone},
		{"QuotaConcurrent", testQuotaConcurrent},
		{"QuotaLot", testQuotaLot},
		{"QuotaRefusalChangesNothing", testQuotaRefusalChangesNothing},
		{"ConcurrentSameUEID", testConcurrentSameUEID},
		{"ConcurrentClones", testConcurrentClones},
		{"OneCertificatePerUEID", testOneCertificate},
		{"ConcurrentMarkIssued", testConcurrentMarkIssued},
		{"CrashKeepsState", testCrash},
		{"List", testList},
		{"InvalidRequests", testInvalid},
		{"Reopen", testReopenMigrations},
		{"InjectedKey", testInjectedKey},
		{"TPMIAK", testTPMIAK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newRegistry(t))
		})
	}
}

func ueid(i int) []byte { return []byte(fmt.Sprintf("ueid-%06d", i)) }
func key(i int) []byte  { return []byte(fmt.Sprintf("spki-%06d", i)) }
func cert(i int) []byte { return []byte(fmt.Sprintf("cert-%06d", i)) }

func req(i int) *ReserveRequest {
	return &ReserveRequest{UEID: ueid(i), PublicKey: key(i), Product: "sku-a", Lot: "lot-1", Station: "st-1"}
}

func mustReserve(t *testing.T, r Registry, rq *ReserveRequest) *Record {
	t.Helper()
	rec, err := r.Reserve(context.Background(), rq)
	if err != nil {
		t.Fatalf("Reserve(%s): %v", rq.UEID, err)
	}
	return rec
}

func mustQuota(t *testing.T, r Registry, s Scope, name string) *Quota {
	t.Helper()
	q, err := r.Quota(context.Background(), s, name)
	if err != nil {
		t.Fatalf("Quota(%s, %s): %v", s, name, err)
	}
	return q
}

func testReserveIdempotent(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 10); err != nil {
		t.Fatal(err)
	}
	a := mustReserve(t, r, req(1))
	if a.State != Issuing || a.Certificate != nil || !bytes.Equal(a.UEID, ueid(1)) {
		t.Fatalf("first Reserve: %+v", a)
	}
	b := mustReserve(t, r, req(1))
	if b.State != Issuing || !bytes.Equal(b.PublicKey, key(1)) || !b.Created.Equal(a.Created) {
		t.Fatalf("repeated Reserve: %+v, first %+v", b, a)
	}
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 1 || q.Limit != 10 {
		t.Fatalf("quota after repeated Reserve: %+v, want used 1", q)
	}
}

func testLifecycle(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	mustReserve(t, r, req(1))
	rec, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(1001))
	if err != nil || rec.State != Issued || !bytes.Equal(rec.Certificate, cert(1)) || rec.Serial.Int64() != 1001 {
		t.Fatalf("MarkIssued: %+v, %v", rec, err)
	}
	// The station crashed and asks again: the same certificate.
	again := mustReserve(t, r, req(1))
	if again.State != Issued || !bytes.Equal(again.Certificate, cert(1)) || again.Serial.Int64() != 1001 {
		t.Fatalf("Reserve after issue: %+v", again)
	}
	// The service crashed after signing and records it again.
	if rec, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(1001)); err != nil || rec.State != Issued {
		t.Fatalf("repeated MarkIssued: %+v, %v", rec, err)
	}
	// But never another certificate.
	var se *StateError
	if _, err := r.MarkIssued(ctx, ueid(1), cert(2), big.NewInt(1002)); !errors.Is(err, ErrWrongState) || !errors.As(err, &se) || se.State != Issued {
		t.Fatalf("MarkIssued with another certificate: %v", err)
	}
	if _, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(9999)); !errors.Is(err, ErrWrongState) {
		t.Fatalf("MarkIssued with another serial: %v", err)
	}
	rec, err = r.Complete(ctx, ueid(1))
	if err != nil || rec.State != Complete || rec.CompletedAt.IsZero() {
		t.Fatalf("Complete: %+v, %v", rec, err)
	}
	if rec, err := r.Complete(ctx, ueid(1)); err != nil || rec.State != Complete {
		t.Fatalf("repeated Complete: %+v, %v", rec, err)
	}
	if rec, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(1001)); err != nil || rec.State != Complete {
		t.Fatalf("MarkIssued on a complete chip with its own certificate: %+v, %v", rec, err)
	}
	final := mustReserve(t, r, req(1))
	if final.State != Complete || !bytes.Equal(final.Certificate, cert(1)) {
		t.Fatalf("Reserve after Complete: %+v", final)
	}
	got, err := r.Get(ctx, ueid(1))
	if err != nil || got.State != Complete || !bytes.Equal(got.Certificate, cert(1)) || got.IssuedAt.IsZero() {
		t.Fatalf("Get: %+v, %v", got, err)
	}
}

func testStateRefusals(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	mustReserve(t, r, req(1))
	var se *StateError
	if _, err := r.Complete(ctx, ueid(1)); !errors.As(err, &se) || se.State != Issuing || se.Op != "complete" || !errors.Is(err, ErrWrongState) {
		t.Fatalf("Complete on ISSUING: %v", err)
	}
	if rec, _ := r.Get(ctx, ueid(1)); rec.State != Issuing {
		t.Fatalf("state changed by a refused Complete: %v", rec.State)
	}
	if _, err := r.MarkIssued(ctx, ueid(9), cert(9), big.NewInt(9)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("MarkIssued on unknown UEID: %v", err)
	}
	if _, err := r.Complete(ctx, ueid(9)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Complete on unknown UEID: %v", err)
	}
	if _, err := r.Get(ctx, ueid(9)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on unknown UEID: %v", err)
	}
	if _, err := r.Quota(ctx, ScopeLot, "none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Quota never set: %v", err)
	}
}

func testClone(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 5); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, r, req(1))
	clone := req(1)
	clone.PublicKey = key(2)
	clone.Station = "st-1"
	_, err := r.Reserve(ctx, clone)
	var ce *CloneError
	if !errors.Is(err, ErrClone) || !errors.As(err, &ce) || !bytes.Equal(ce.UEID, ueid(1)) || ce.IncidentID == 0 {
		t.Fatalf("Reserve of a clone: %v", err)
	}
	// The incident is committed although the request was refused: it
	// survives closing and reopening the registry.
	r.Close()
	r = open(t)
	in, err := r.Incidents(ctx)
	if err != nil || len(in) != 1 {
		t.Fatalf("Incidents: %d, %v", len(in), err)
	}
	if i := in[0]; i.ID != ce.IncidentID || !bytes.Equal(i.UEID, ueid(1)) || !bytes.Equal(i.KnownKey, key(1)) ||
		!bytes.Equal(i.SeenKey, key(2)) || i.Station != "st-1" || i.Time.IsZero() {
		t.Fatalf("incident: %+v", i)
	}
	// The genuine record is untouched and the clone spent no quota.
	if rec, err := r.Get(ctx, ueid(1)); err != nil || !bytes.Equal(rec.PublicKey, key(1)) {
		t.Fatalf("record after clone: %+v, %v", rec, err)
	}
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 1 {
		t.Fatalf("quota after clone: %+v", q)
	}
	// Issued chips are protected the same way, and every attempt is counted.
	if _, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reserve(ctx, clone); !errors.Is(err, ErrClone) {
		t.Fatalf("second clone attempt: %v", err)
	}
	if in, _ := r.Incidents(ctx); len(in) != 2 {
		t.Fatalf("incidents after second attempt: %d", len(in))
	}
	if st, err := r.Stats(ctx); err != nil || *st != (Stats{Issued: 1, Incidents: 2}) {
		t.Fatalf("Stats: %+v, %v", st, err)
	}
}

// reserveMany reserves UEIDs from..from+n-1 concurrently, one goroutine
// each, and counts the outcomes.
func reserveMany(t *testing.T, r Registry, from, n int, edit func(*ReserveRequest)) (ok, quota int) {
	t.Helper()
	var wg sync.WaitGroup
	var nOK, nQuota atomic.Int64
	errs := make(chan error, n)
	for i := from; i < from+n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rq := req(i)
			if edit != nil {
				edit(rq)
			}
			_, err := r.Reserve(context.Background(), rq)
			var qe *QuotaError
			switch {
			case err == nil:
				nOK.Add(1)
			case errors.As(err, &qe) && errors.Is(err, ErrQuotaExceeded):
				nQuota.Add(1)
			default:
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Reserve: unexpected error %v", err)
	}
	return int(nOK.Load()), int(nQuota.Load())
}

func testQuotaConcurrent(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 20); err != nil {
		t.Fatal(err)
	}
	ok, refused := reserveMany(t, r, 0, 50, nil)
	if ok != 20 || refused != 30 {
		t.Fatalf("50 concurrent reservations with a quota of 20: %d succeeded, %d refused", ok, refused)
	}
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 20 {
		t.Fatalf("quota: %+v", q)
	}
	if recs, err := r.List(ctx, nil); err != nil || len(recs) != 20 {
		t.Fatalf("records: %d, %v", len(recs), err)
	}
	// Raising the limit lets the station go on; what is spent stays spent.
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 25); err != nil {
		t.Fatal(err)
	}
	if ok, refused := reserveMany(t, r, 100, 10, nil); ok != 5 || refused != 5 {
		t.Fatalf("after raising to 25: %d succeeded, %d refused", ok, refused)
	}
}

func testQuotaLot(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	if err := r.SetQuota(ctx, ScopeLot, "lot-1", 7); err != nil {
		t.Fatal(err)
	}
	// Two stations share the lot.
	var n atomic.Int64
	ok, refused := reserveMany(t, r, 0, 30, func(rq *ReserveRequest) {
		rq.Station = fmt.Sprintf("st-%d", n.Add(1)%2)
	})
	if ok != 7 || refused != 23 {
		t.Fatalf("lot quota of 7: %d succeeded, %d refused", ok, refused)
	}
	// Another lot is not limited.
	if ok, refused := reserveMany(t, r, 100, 10, func(rq *ReserveRequest) { rq.Lot = "lot-2" }); ok != 10 || refused != 0 {
		t.Fatalf("unlimited lot: %d succeeded, %d refused", ok, refused)
	}
}

func testQuotaRefusalChangesNothing(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 10); err != nil {
		t.Fatal(err)
	}
	if err := r.SetQuota(ctx, ScopeLot, "lot-1", 0); err != nil {
		t.Fatal(err)
	}
	_, err := r.Reserve(ctx, req(1))
	var qe *QuotaError
	if !errors.As(err, &qe) || qe.Scope != ScopeLot || qe.Name != "lot-1" || qe.Limit != 0 {
		t.Fatalf("Reserve over the lot quota: %v", err)
	}
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 0 {
		t.Fatalf("station quota spent by a refused request: %+v", q)
	}
	if _, err := r.Get(ctx, ueid(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused chip recorded: %v", err)
	}
}

func testConcurrentSameUEID(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	if err := r.SetQuota(ctx, ScopeStation, "st-1", 100); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	recs := make([]*Record, 20)
	errs := make([]error, 20)
	for i := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i], errs[i] = r.Reserve(ctx, req(1))
		}()
	}
	wg.Wait()
	for i := range recs {
		if errs[i] != nil || !bytes.Equal(recs[i].PublicKey, key(1)) || recs[i].State != Issuing {
			t.Fatalf("Reserve %d: %+v, %v", i, recs[i], errs[i])
		}
	}
	if q := mustQuota(t, r, ScopeStation, "st-1"); q.Used != 1 {
		t.Fatalf("one chip reserved 20 times spent %d", q.Used)
	}
}

func testConcurrentClones(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	// 10 chips claim the same UEID with 10 keys at once: exactly one is
	// recorded, nine are clones.
	var wg sync.WaitGroup
	var won, clones atomic.Int64
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rq := req(1)
			rq.PublicKey = key(i)
			_, err := r.Reserve(ctx, rq)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ErrClone):
				clones.Add(1)
			default:
				t.Errorf("Reserve: %v", err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 || clones.Load() != 9 {
		t.Fatalf("%d recorded, %d clones; want 1 and 9", won.Load(), clones.Load())
	}
	if in, err := r.Incidents(ctx); err != nil || len(in) != 9 {
		t.Fatalf("incidents: %d, %v", len(in), err)
	}
}

func testOneCertificate(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	mustReserve(t, r, req(1))
	mustReserve(t, r, req(2))
	if _, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(1)); err != nil {
		t.Fatal(err)
	}
	// The same certificate cannot belong to two chips (unique constraint).
	if _, err := r.MarkIssued(ctx, ueid(2), cert(1), big.NewInt(1)); err == nil {
		t.Fatal("one certificate recorded for two UEIDs")
	}
	if rec, _ := r.Get(ctx, ueid(2)); rec.State != Issuing || rec.Certificate != nil {
		t.Fatalf("failed MarkIssued changed the record: %+v", rec)
	}
}

func testConcurrentMarkIssued(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	mustReserve(t, r, req(1))
	// Two replicas race to record two different certificates: one wins,
	// the other is refused, and the record holds the winner's.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.MarkIssued(ctx, ueid(1), cert(100+i), big.NewInt(int64(100+i)))
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner == -1:
			winner = i
		case err == nil:
			t.Fatalf("two certificates accepted for one UEID: %d and %d", winner, i)
		case !errors.Is(err, ErrWrongState):
			t.Fatalf("MarkIssued %d: %v", i, err)
		}
	}
	rec, err := r.Get(ctx, ueid(1))
	if err != nil || winner < 0 || !bytes.Equal(rec.Certificate, cert(100+winner)) {
		t.Fatalf("record %+v, %v; winner %d", rec, err, winner)
	}
}

func testCrash(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	for i := range 3 {
		mustReserve(t, r, req(i))
	}
	if _, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(11)); err != nil {
		t.Fatal(err)
	}
	// The service goes away without completing anything.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reserve(ctx, req(5)); err == nil {
		t.Fatal("Reserve after Close succeeded")
	}
	r = open(t)
	want := []State{Issuing, Issued, Issuing}
	for i, st := range want {
		rec, err := r.Get(ctx, ueid(i))
		if err != nil || rec.State != st {
			t.Fatalf("after reopening, UEID %d: %+v, %v; want %v", i, rec, err, st)
		}
	}
	if st, err := r.Stats(ctx); err != nil || *st != (Stats{Issuing: 2, Issued: 1}) {
		t.Fatalf("Stats after reopening: %+v, %v", st, err)
	}
	// And the flow resumes where it stopped, with the same answers.
	if rec, err := r.MarkIssued(ctx, ueid(1), cert(1), big.NewInt(11)); err != nil || rec.State != Issued {
		t.Fatalf("repeated MarkIssued after restart: %v", err)
	}
	if _, err := r.Complete(ctx, ueid(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.MarkIssued(ctx, ueid(0), cert(0), big.NewInt(10)); err != nil {
		t.Fatal(err)
	}
}

func testList(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	for i := range 7 {
		rq := req(i)
		if i%2 == 1 {
			rq.Product = "sku-b"
		}
		mustReserve(t, r, rq)
	}
	var all []*Record
	var after []byte
	for {
		page, err := r.List(ctx, &ListRequest{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].UEID
	}
	if len(all) != 7 {
		t.Fatalf("paged List: %d records", len(all))
	}
	for i, rec := range all {
		if !bytes.Equal(rec.UEID, ueid(i)) {
			t.Fatalf("List[%d] = %s", i, rec.UEID)
		}
	}
	b, err := r.List(ctx, &ListRequest{Product: "sku-b"})
	if err != nil || len(b) != 3 {
		t.Fatalf("List sku-b: %d, %v", len(b), err)
	}
}

func testInvalid(t *testing.T, open opener) {
	ctx := context.Background()
	r := open(t)
	long := bytes.Repeat([]byte{'x'}, 200)
	bad := []*ReserveRequest{
		nil,
		{PublicKey: key(1), Product: "p", Lot: "l", Station: "s"},
		{UEID: long, PublicKey: key(1), Product: "p", Lot: "l", Station: "s"},
		{UEID: ueid(1), Product: "p", Lot: "l", Station: "s"},
		{UEID: ueid(1), PublicKey: key(1), Lot: "l", Station: "s"},
		{UEID: ueid(1), PublicKey: key(1), Product: "p", Lot: string(long), Station: "s"},
		{UEID: ueid(1), PublicKey: key(1), Product: "p", Lot: "l"},
	}
	for i, rq := range bad {
		if _, err := r.Reserve(ctx, rq); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("bad request %d: %v", i, err)
		}
	}
	mustReserve(t, r, req(1))
	for i, c := range []struct {
		cert   []byte
		serial *big.Int
	}{{nil, big.NewInt(1)}, {cert(1), nil}, {cert(1), big.NewInt(0)}, {cert(1), big.NewInt(-5)},
		{cert(1), new(big.Int).Lsh(big.NewInt(1), 160)}, {bytes.Repeat([]byte{1}, MaxCertificateLen+1), big.NewInt(1)}} {
		if _, err := r.MarkIssued(ctx, ueid(1), c.cert, c.serial); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("bad MarkIssued %d: %v", i, err)
		}
	}
	if err := r.SetQuota(ctx, "site", "x", 1); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("SetQuota with unknown scope: %v", err)
	}
	if err := r.SetQuota(ctx, ScopeLot, "x", -1); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("SetQuota with negative limit: %v", err)
	}
	if recs, _ := r.List(ctx, nil); len(recs) != 1 {
		t.Errorf("bad requests changed the registry: %d records", len(recs))
	}
}

func testReopenMigrations(t *testing.T, open opener) {
	r := open(t)
	mustReserve(t, r, req(1))
	r.Close()
	// Opening again applies no migration twice and keeps the data.
	r = open(t)
	r.Close()
	r = open(t)
	if _, err := r.Get(context.Background(), ueid(1)); err != nil {
		t.Fatal(err)
	}
}

// fixedClock is a clock for tests that advances a microsecond per reading.
func fixedClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Microsecond)
		return t
	}
}
