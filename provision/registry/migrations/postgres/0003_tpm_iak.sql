-- Version 3: chips on a TPM 2.0. tpm_iak is the TPMT_PUBLIC area of the
-- TPM's attestation key (IAK) as provision.Service.ProvisionTPM received
-- and checked it: the key whose quotes a verifier checks, and from which
-- the chip's UEID is derived (pluton/tpm.UEID). spki is then the TPM's
-- IDevID key. NULL for a chip that is not on a TPM.
ALTER TABLE devices ADD COLUMN tpm_iak BYTEA;
