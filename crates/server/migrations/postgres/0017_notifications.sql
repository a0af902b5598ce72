-- Mentions, notification settings and the e-mail digest (issue 17).

-- `@username`s of a message resolved to members of its room, as a JSON array of user ids
-- (NULL: none). On the row so every read of a message (history, changes, replays) carries
-- them at no extra cost; cleared when the message is deleted.
ALTER TABLE messages ADD COLUMN mentions TEXT;

-- The same, one row per mentioned user, for what is asked per user: the digest's unread
-- mentions. Rows of a deleted message are removed with its content; an edit rewrites them.
CREATE TABLE message_mentions (
    user_id    UUID NOT NULL,
    room_id    UUID NOT NULL,
    seq        BIGINT NOT NULL,
    message_id UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, room_id, seq)
);
CREATE INDEX message_mentions_message ON message_mentions (message_id);

-- Per member and room: 'all', 'mentions' or 'none'; NULL means the room kind's default
-- ('all' for direct rooms, 'mentions' for group rooms), so the default can change later.
ALTER TABLE room_members ADD COLUMN notification_level TEXT;

-- Per account: Web Push on/off (`email_notifications`, migration 0015, is the e-mail switch)
-- and the digest interval in minutes (NULL: the server's EMAIL_DIGEST_MINUTES).
ALTER TABLE users ADD COLUMN push_notifications BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE users ADD COLUMN email_digest_minutes INTEGER;

-- Users with something a digest may list: written in the commit of a direct message or a
-- mention (the first one since the last digest; later ones find the row). The digest
-- scheduler claims a row (FOR UPDATE SKIP LOCKED), mails, and deletes it.
CREATE TABLE digest_pending (
    user_id UUID PRIMARY KEY,
    since   TIMESTAMPTZ NOT NULL
);

-- The last digest of each user: when it went out, and the newest item it covered (a later
-- digest lists only what came after).
CREATE TABLE email_digests (
    user_id      UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_sent_at TIMESTAMPTZ NOT NULL,
    covered_to   TIMESTAMPTZ NOT NULL
);
