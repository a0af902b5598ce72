-- The database as the previous release (migrations up to 0017) would hold it: `messages`
-- unpartitioned, then 10M rows. Run against a database the current build created, with the
-- record of migration 0018 removed, so that the next start runs 0018 on these rows.
-- Usage: createdb nebula_part_bench; start nebula once on it (or `nebula admin grant x`) so it
-- migrates; then psql -v ON_ERROR_STOP=1 postgres://…/nebula_part_bench -f scripts/history-10m.sql
\timing on
BEGIN;
DELETE FROM _sqlx_migrations WHERE version = 18;
DROP TABLE messages;
CREATE TABLE messages (
    room_id UUID NOT NULL, seq BIGINT NOT NULL, id UUID NOT NULL, sender_id UUID NOT NULL,
    sender_username TEXT NOT NULL, content TEXT NOT NULL, client_msg_id TEXT,
    created_at TIMESTAMPTZ NOT NULL, rev BIGINT NOT NULL DEFAULT 0,
    created_rev BIGINT NOT NULL DEFAULT 0, reply_to_id UUID, reply_to_seq BIGINT,
    edited_at TIMESTAMPTZ, deleted_at TIMESTAMPTZ, reactions TEXT, attachments TEXT,
    mentions TEXT);
INSERT INTO users (id, username, username_key, password_hash, created_at)
VALUES ('00000000-0000-0000-0000-0000000a11ce', 'filler', 'filler', 'unusable', now());
-- The deep room: 8M messages. Then 4000 rooms of 500.
INSERT INTO rooms (id, name, name_key, is_private, owner_id, member_count, last_seq, last_rev, created_at)
VALUES ('00000000-0000-0000-0000-00000000deef', 'Deep', 'deep', FALSE,
        '00000000-0000-0000-0000-0000000a11ce', 0, 8000000, 8000000, now());
INSERT INTO rooms (id, name, name_key, is_private, owner_id, member_count, last_seq, last_rev, created_at)
SELECT gen_random_uuid(), 'r' || n, 'r' || n, FALSE, '00000000-0000-0000-0000-0000000a11ce', 0,
       500, 500, now()
FROM generate_series(1, 4000) AS n;
COMMIT;
INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, client_msg_id, created_at, rev, created_rev)
SELECT gen_random_uuid(), '00000000-0000-0000-0000-00000000deef', n,
       '00000000-0000-0000-0000-0000000a11ce', 'filler',
       rpad('message ' || n || ' ', 100, 'lorem ipsum dolor sit amet '), 'c' || n,
       timestamptz '2026-01-01' + n * interval '1 second', n, n
FROM generate_series(1, 8000000) AS n;
INSERT INTO messages (id, room_id, seq, sender_id, sender_username, content, client_msg_id, created_at, rev, created_rev)
SELECT gen_random_uuid(), r.id, n, '00000000-0000-0000-0000-0000000a11ce', 'filler',
       rpad('message ' || n || ' ', 100, 'lorem ipsum dolor sit amet '), 'c' || n,
       timestamptz '2026-01-01' + n * interval '1 second', n, n
FROM rooms r, generate_series(1, 500) AS n WHERE r.id <> '00000000-0000-0000-0000-00000000deef';
-- The indexes and constraints migrations 0001, 0003 and 0010 leave.
ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (room_id, seq);
ALTER TABLE messages ADD CONSTRAINT messages_id_key UNIQUE (id);
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_by_rev ON messages (room_id, rev);
VACUUM ANALYZE messages;
SELECT COUNT(*) FROM messages;
SELECT pg_size_pretty(pg_total_relation_size('messages'));
