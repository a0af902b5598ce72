-- Web Push subscriptions and delivery bookkeeping of the notification service.
-- Versions start at 1001 so they never collide with the chat server's migrations (1..999) in
-- the shared `_sqlx_migrations` table. UUIDs are 16-byte BLOBs and timestamps RFC 3339 TEXT
-- (sqlx's SQLite encodings), as in the server's schema. No foreign key to `users`: the
-- notifier may run against a database of its own.

CREATE TABLE IF NOT EXISTS webpush_subscriptions (
    id         BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL,
    endpoint   TEXT NOT NULL UNIQUE,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webpush_subscriptions_user ON webpush_subscriptions (user_id);

-- Events whose pushes are all done: a redelivered event id is skipped.
CREATE TABLE IF NOT EXISTS webpush_processed_events (
    event_id     BLOB PRIMARY KEY,
    processed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webpush_processed_events_age ON webpush_processed_events (processed_at);

-- Per-(event, subscription) progress of events not finished yet. A 'pending' row is a claim
-- taken just before pushing, so two copies of one event (a publisher retry, two notifier
-- instances) never push the same subscription at once; a claim older than the lease is
-- considered abandoned (crashed pusher) and may be taken over. A 'done' row means the push
-- service accepted (or refused for good) the push, so a retry skips it. Emptied when the event
-- is marked processed.
CREATE TABLE IF NOT EXISTS webpush_deliveries (
    event_id        BLOB NOT NULL,
    subscription_id BLOB NOT NULL REFERENCES webpush_subscriptions (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (event_id, subscription_id)
);
