-- Messages are the one table written at tens of thousands of rows per second, and each foreign
-- key costs a parent lookup per inserted row. Both relations hold without them (see the
-- PostgreSQL migration of the same number for why). SQLite cannot drop a constraint, so the
-- table is rebuilt with the same columns, keys and indexes.
CREATE TABLE messages_new (
    room_id         BLOB NOT NULL,
    seq             INTEGER NOT NULL,
    id              BLOB NOT NULL UNIQUE,
    sender_id       BLOB NOT NULL,
    sender_username TEXT NOT NULL,
    content         TEXT NOT NULL,
    client_msg_id   TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
INSERT INTO messages_new (room_id, seq, id, sender_id, sender_username, content, client_msg_id, created_at)
    SELECT room_id, seq, id, sender_id, sender_username, content, client_msg_id, created_at
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
