-- Version 2: injected identities. A chip of a product whose identity is
-- injected has its device key made in the factory HSM: inject_label names
-- that key on the HSM and is recorded with the reservation, before the key
-- exists (so a key orphaned by a crash is found again by its label);
-- inject_spki is its public key (what the IDevID certifies), recorded once
-- the key is made; inject_destroyed_ns says when the HSM's copy was
-- destroyed, after the chip confirmed. spki stays the chip's DeviceID key
-- (clone detection). All NULL for a chip that generates its own key.
ALTER TABLE devices ADD COLUMN inject_label TEXT;
ALTER TABLE devices ADD COLUMN inject_spki BLOB;
ALTER TABLE devices ADD COLUMN inject_destroyed_ns INTEGER;
