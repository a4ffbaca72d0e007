-- Version 1: devices, incidents, quotas.
CREATE TABLE devices (
	ueid         BLOB    NOT NULL PRIMARY KEY,
	spki         BLOB    NOT NULL,
	product      TEXT    NOT NULL,
	lot          TEXT    NOT NULL,
	station      TEXT    NOT NULL,
	state        INTEGER NOT NULL CHECK (state IN (1, 2, 3)),
	certificate  BLOB    UNIQUE,
	serial       TEXT,
	created_ns   INTEGER NOT NULL,
	issued_ns    INTEGER,
	completed_ns INTEGER,
	-- ISSUING has no certificate; ISSUED and COMPLETE have exactly one.
	CHECK ((state = 1) = (certificate IS NULL))
) WITHOUT ROWID;

CREATE TABLE incidents (
	id          INTEGER PRIMARY KEY,
	ueid        BLOB    NOT NULL,
	known_spki  BLOB    NOT NULL,
	seen_spki   BLOB    NOT NULL,
	product     TEXT    NOT NULL,
	lot         TEXT    NOT NULL,
	station     TEXT    NOT NULL,
	at_ns       INTEGER NOT NULL
);

CREATE TABLE quotas (
	scope  TEXT    NOT NULL,
	name   TEXT    NOT NULL,
	lim    INTEGER NOT NULL CHECK (lim >= 0),
	used   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (scope, name)
) WITHOUT ROWID;
