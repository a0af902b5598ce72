-- Transactional outbox: membership notifications written in the same transaction as the
-- membership change, then moved out (to RabbitMQ, or pushed in-process) by the relay in
-- src/outbox/. A row is deleted once it is out; `dead_at` marks one that gave up.

CREATE TABLE outbox (
    -- Publication order. Ids are drawn at insert time and commits may land out of id order
    -- across rooms; within a room they cannot, because the row is inserted after the
    -- `UPDATE rooms` that locks the room row until commit. So per-room order is id order.
    id              BIGSERIAL PRIMARY KEY,
    event_id        UUID NOT NULL UNIQUE,
    room_id         UUID NOT NULL,
    -- The `MemberNotification` JSON (nebula_wire::notify), exactly as it is published.
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    -- Set when the relay gave up on the row; kept for an operator to inspect or replay
    -- (`UPDATE outbox SET dead_at = NULL, attempts = 0 WHERE …`).
    dead_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL
);
-- The relay's scan: live rows in order.
CREATE INDEX outbox_live ON outbox (id) WHERE dead_at IS NULL;
