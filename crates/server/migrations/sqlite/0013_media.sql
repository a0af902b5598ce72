-- See the PostgreSQL migration of the same number (UUIDs are BLOBs, times TEXT).
--
-- `media` is one upload: its bytes live in the media store (disk or S3) under its id, its
-- thumbnail (images only) beside it. `attached_at` is set the first time a message or story
-- names it; the janitor removes media nothing references once they were attached, or a day
-- after upload if they never were.
CREATE TABLE media (
    id            BLOB PRIMARY KEY,
    uploader_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    filename      TEXT NOT NULL,
    width         INTEGER,
    height        INTEGER,
    has_thumbnail INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    attached_at   TEXT
);
CREATE INDEX media_by_uploader ON media (uploader_id);
CREATE INDEX media_by_created ON media (created_at);

-- Which message carries which media (access checks and garbage collection). The message's
-- own `attachments` column holds the media objects as delivered, so reading history needs no
-- join. Rows go when the message is deleted.
CREATE TABLE message_media (
    message_id BLOB NOT NULL,
    room_id    BLOB NOT NULL,
    media_id   BLOB NOT NULL,
    PRIMARY KEY (message_id, media_id)
);
CREATE INDEX message_media_by_media ON message_media (media_id);

ALTER TABLE messages ADD COLUMN attachments TEXT;

CREATE TABLE stories (
    id         BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text       TEXT,
    media_id   BLOB,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX stories_by_user ON stories (user_id, created_at);
CREATE INDEX stories_by_expiry ON stories (expires_at);
CREATE INDEX stories_by_media ON stories (media_id);

CREATE TABLE story_views (
    story_id  BLOB NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    user_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    viewed_at TEXT NOT NULL,
    PRIMARY KEY (story_id, user_id)
);
