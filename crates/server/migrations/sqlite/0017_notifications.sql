-- See the PostgreSQL migration of the same number.
ALTER TABLE messages ADD COLUMN mentions TEXT;

CREATE TABLE message_mentions (
    user_id    BLOB NOT NULL,
    room_id    BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    message_id BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, seq)
) WITHOUT ROWID;
CREATE INDEX message_mentions_message ON message_mentions (message_id);

ALTER TABLE room_members ADD COLUMN notification_level TEXT;

ALTER TABLE users ADD COLUMN push_notifications BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE users ADD COLUMN email_digest_minutes INTEGER;

CREATE TABLE digest_pending (
    user_id BLOB PRIMARY KEY,
    since   TEXT NOT NULL
);

CREATE TABLE email_digests (
    user_id      BLOB PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_sent_at TEXT NOT NULL,
    covered_to   TEXT NOT NULL
);
