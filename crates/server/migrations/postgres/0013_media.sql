-- Files and stories (issue 15).
--
-- `media` is one upload: its bytes live in the media store (disk or S3) under its id, its
-- thumbnail (images only) beside it. `attached_at` is set the first time a message or story
-- names it; the janitor removes media nothing references once they were attached, or a day
-- after upload if they never were.
CREATE TABLE media (
    id            UUID PRIMARY KEY,
    uploader_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    filename      TEXT NOT NULL,
    width         BIGINT,
    height        BIGINT,
    has_thumbnail BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    attached_at   TIMESTAMPTZ
);
CREATE INDEX media_by_uploader ON media (uploader_id);
CREATE INDEX media_by_created ON media (created_at);

-- Which message carries which media (access checks and garbage collection). The message's
-- own `attachments` column holds the media objects as delivered, so reading history needs no
-- join. Rows go when the message is deleted.
CREATE TABLE message_media (
    message_id UUID NOT NULL,
    room_id    UUID NOT NULL,
    media_id   UUID NOT NULL,
    PRIMARY KEY (message_id, media_id)
);
CREATE INDEX message_media_by_media ON message_media (media_id);

ALTER TABLE messages ADD COLUMN attachments TEXT;

CREATE TABLE stories (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text       TEXT,
    media_id   UUID,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX stories_by_user ON stories (user_id, created_at);
CREATE INDEX stories_by_expiry ON stories (expires_at);
CREATE INDEX stories_by_media ON stories (media_id);

CREATE TABLE story_views (
    story_id  UUID NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    viewed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (story_id, user_id)
);
