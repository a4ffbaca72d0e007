-- Version 1: devices, incidents, quotas.
CREATE TABLE devices (
	ueid         BYTEA    NOT NULL PRIMARY KEY,
	spki         BYTEA    NOT NULL,
	product      TEXT     NOT NULL,
	lot          TEXT     NOT NULL,
	station      TEXT     NOT NULL,
	state        SMALLINT NOT NULL CHECK (state IN (1, 2, 3)),
	certificate  BYTEA    UNIQUE,
	serial       TEXT,
	created_ns   BIGINT   NOT NULL,
	issued_ns    BIGINT,
	completed_ns BIGINT,
	-- ISSUING has no certificate; ISSUED and COMPLETE have exactly one.
	CHECK ((state = 1) = (certificate IS NULL))
);

CREATE TABLE incidents (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	ueid        BYTEA  NOT NULL,
	known_spki  BYTEA  NOT NULL,
	seen_spki   BYTEA  NOT NULL,
	product     TEXT   NOT NULL,
	lot         TEXT   NOT NULL,
	station     TEXT   NOT NULL,
	at_ns       BIGINT NOT NULL
);

CREATE TABLE quotas (
	scope  TEXT   NOT NULL,
	name   TEXT   NOT NULL,
	lim    BIGINT NOT NULL CHECK (lim >= 0),
	used   BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (scope, name)
);
