-- See the PostgreSQL migration of the same number.
ALTER TABLE rooms ADD COLUMN last_rev INTEGER NOT NULL DEFAULT 0;
UPDATE rooms SET last_rev = last_seq;

ALTER TABLE messages ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN created_rev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN reply_to_id BLOB;
ALTER TABLE messages ADD COLUMN reply_to_seq INTEGER;
ALTER TABLE messages ADD COLUMN edited_at TEXT;
ALTER TABLE messages ADD COLUMN deleted_at TEXT;
ALTER TABLE messages ADD COLUMN reactions TEXT;
UPDATE messages SET rev = seq, created_rev = seq;
CREATE INDEX messages_by_rev ON messages (room_id, rev);

CREATE TABLE message_versions (
    message_id BLOB NOT NULL,
    rev        INTEGER NOT NULL,
    content    TEXT NOT NULL,
    edited_at  TEXT NOT NULL,
    PRIMARY KEY (message_id, rev)
) WITHOUT ROWID;

CREATE TABLE message_reactions (
    message_id BLOB NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    BLOB NOT NULL,
    rev        INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;
