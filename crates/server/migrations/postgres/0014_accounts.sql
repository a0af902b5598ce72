-- Accounts and operators (issue 16): token revocation, two-factor, admins, deactivation,
-- deleted accounts, password resets, reports and the audit log.
--
-- `token_generation` is stamped into every token; bumping it revokes every token issued
-- before (password change, logout-all, deactivation, deletion).
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN deactivated_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMPTZ;
-- A secret being set up (not yet confirmed with a code), and the confirmed one.
ALTER TABLE users ADD COLUMN totp_pending_secret TEXT;
ALTER TABLE users ADD COLUMN totp_secret TEXT;
-- The last 30-second step whose code was accepted: a code is accepted once.
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;

-- SHA-256 of each recovery code (they are random, so a fast hash is enough); used once.
CREATE TABLE recovery_codes (
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

-- SHA-256 of each password-reset token; single use, valid until `expires_at`.
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX password_resets_by_user ON password_resets (user_id);

CREATE TABLE reports (
    id             UUID PRIMARY KEY,
    reporter_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('message', 'user')),
    room_id        UUID,
    message_id     UUID,
    target_user_id UUID NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    created_at     TIMESTAMPTZ NOT NULL,
    resolved_at    TIMESTAMPTZ,
    resolved_by    UUID,
    action         TEXT,
    note           TEXT
);
CREATE INDEX reports_by_status ON reports (status, created_at);

-- Append-only: rows are written in the transaction of the action they record and never
-- changed (the triggers refuse updates and deletes, whoever asks).
CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    actor_id UUID,
    action   TEXT NOT NULL,
    target   TEXT,
    ip       TEXT
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
