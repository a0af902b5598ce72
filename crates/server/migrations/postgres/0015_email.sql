-- E-mail: verified addresses, verification codes and the one-click unsubscribe.
-- Only a verified address gets notification e-mail; changing the address unverifies it.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
-- Turned off by the one-click unsubscribe link (RFC 8058) of a notification e-mail.
ALTER TABLE users ADD COLUMN email_notifications BOOLEAN NOT NULL DEFAULT TRUE;

-- The one live verification code per account: sent to `email`, valid until `expires_at`,
-- at most a few wrong guesses (`attempts`). Replaced by a new request, deleted when used.
CREATE TABLE email_verifications (
    user_id     UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    code_hash   TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ NOT NULL
);
