-- History at a billion rows (issue 19): `messages` becomes a table partitioned by a hash of
-- `room_id` (see docs/SCALING.md, "History storage at a billion rows").
--
-- Every read and write of a message names its room (history and the change feed by room,
-- idempotency by room and sender, seq and rev allocated under the room row's lock), so with
-- the room in the partition key each of them is planned against one partition. Time ranges
-- would not prune anything for these lookups: a room's history spans all of time.
--
-- A partitioned table's unique constraints must include the partition key, so `id` is no
-- longer unique on its own: it is unique per room, `(id, room_id)`. Ids are UUIDv7 drawn by
-- the server, and every lookup by id also names the room (`WHERE id = $1 AND room_id = $2`);
-- the index leads with `id` so that the rekey walk in id order (`store/reseal.rs`) stays an
-- index scan in every partition.
--
-- Converted in place, in this migration's transaction: a new partitioned table, the rows
-- copied into it, then the keys and indexes built once over the copied rows (cheaper than
-- maintaining them row by row), then the old table dropped. The table is locked throughout:
-- 10 million messages took 103 s here (docs/BENCHMARKS.md); docs/SCALING.md says what that
-- means for a much larger database.
ALTER TABLE messages RENAME TO messages_unpartitioned;
ALTER TABLE messages_unpartitioned RENAME CONSTRAINT messages_pkey TO messages_unpartitioned_pkey;
ALTER TABLE messages_unpartitioned RENAME CONSTRAINT messages_id_key TO messages_unpartitioned_id_key;
ALTER INDEX messages_idempotency RENAME TO messages_unpartitioned_idempotency;
ALTER INDEX messages_by_rev RENAME TO messages_unpartitioned_by_rev;

-- The columns in the order earlier migrations left them, so `SELECT *` and backups see the
-- same table as before.
CREATE TABLE messages (
    room_id         UUID NOT NULL,
    seq             BIGINT NOT NULL,
    id              UUID NOT NULL,
    sender_id       UUID NOT NULL,
    sender_username TEXT NOT NULL,
    content         TEXT NOT NULL,
    client_msg_id   TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    rev             BIGINT NOT NULL DEFAULT 0,
    created_rev     BIGINT NOT NULL DEFAULT 0,
    reply_to_id     UUID,
    reply_to_seq    BIGINT,
    edited_at       TIMESTAMPTZ,
    deleted_at      TIMESTAMPTZ,
    reactions       TEXT,
    attachments     TEXT,
    mentions        TEXT
) PARTITION BY HASH (room_id);

-- 16 partitions: a billion messages are ~60 million per partition, each vacuumed, analyzed,
-- frozen and reindexed on its own. Few enough that a generic plan's executor start-up (which
-- on PostgreSQL 15 locks every partition before pruning) stays cheap. More later without a
-- rewrite of the others: a partition of modulus 16 can be replaced by two of modulus 32.
DO $$
BEGIN
    FOR r IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE messages_p%s PARTITION OF messages FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(r::text, 2, '0'), r
        );
    END LOOP;
END
$$;

INSERT INTO messages
SELECT room_id, seq, id, sender_id, sender_username, content, client_msg_id, created_at, rev,
       created_rev, reply_to_id, reply_to_seq, edited_at, deleted_at, reactions, attachments,
       mentions
FROM messages_unpartitioned;

-- History is always read by (room_id, seq): a keyset page costs the same at any depth.
ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (room_id, seq);
-- A message by id, always with its room; in id order for the rekey walk.
ALTER TABLE messages ADD CONSTRAINT messages_id_key UNIQUE (id, room_id);
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
-- The change feed (`GET /rooms/{id}/changes`, resume, gap repair): one index range scan.
CREATE INDEX messages_by_rev ON messages (room_id, rev);

DROP TABLE messages_unpartitioned;

-- Autovacuum analyzes the partitions but never a partitioned parent: its statistics (used
-- when a query joins messages without naming one room) are gathered here once, and by
-- operators after bulk loads.
ANALYZE messages;
