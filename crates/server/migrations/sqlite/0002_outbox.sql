-- Transactional outbox: membership notifications written in the same transaction as the
-- membership change, then moved out (to RabbitMQ, or pushed in-process) by the relay in
-- src/outbox/. A row is deleted once it is out; `dead_at` marks one that gave up.

CREATE TABLE outbox (
    -- Publication order: AUTOINCREMENT never reuses an id, so order survives deletions.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        BLOB NOT NULL UNIQUE,
    room_id         BLOB NOT NULL,
    -- The `MemberNotification` JSON (nebula_wire::notify), exactly as it is published.
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    -- Set when the relay gave up on the row; kept for an operator to inspect or replay
    -- (`UPDATE outbox SET dead_at = NULL, attempts = 0 WHERE …`).
    dead_at         TEXT,
    created_at      TEXT NOT NULL
);
-- The relay's scan: live rows in order.
CREATE INDEX outbox_live ON outbox (id) WHERE dead_at IS NULL;
