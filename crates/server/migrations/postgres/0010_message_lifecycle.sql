-- Message lifecycle: replies, edits, deletes, reactions, and the per-room change counter.
--
-- `rev` is allocated like `seq`: `rooms.last_rev` is bumped under the room row's lock in the
-- same transaction as every change (a new message takes the next seq and the next rev), so
-- within a room revs are gap-free in commit order and `messages.rev` is the rev of the
-- message's latest change. Existing rows get rev = seq: before this migration every change
-- was a new message.
ALTER TABLE rooms ADD COLUMN last_rev BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET last_rev = last_seq;

ALTER TABLE messages
    ADD COLUMN rev          BIGINT NOT NULL DEFAULT 0,
    -- The rev the message was created at: a change feed row whose rev equals it is the
    -- message's creation (`message.new`), any other is a later change (`message.updated`).
    ADD COLUMN created_rev  BIGINT NOT NULL DEFAULT 0,
    -- A reply's target, with its seq so that history needs no join.
    ADD COLUMN reply_to_id  UUID,
    ADD COLUMN reply_to_seq BIGINT,
    ADD COLUMN edited_at    TIMESTAMPTZ,
    ADD COLUMN deleted_at   TIMESTAMPTZ,
    -- Reaction counts as JSON `[[emoji, count], …]` in the order each emoji was first reacted
    -- with, kept in the same transaction as `message_reactions`, so history pages carry
    -- reactions without reading that table. NULL: none.
    ADD COLUMN reactions    TEXT;
UPDATE messages SET rev = seq, created_rev = seq;
-- The change feed (`GET /rooms/{id}/changes`, resume, gap repair): one index range scan.
CREATE INDEX messages_by_rev ON messages (room_id, rev);

-- Earlier contents of edited messages; `rev` is that of the edit that replaced the content.
-- Deleted with the message's content.
CREATE TABLE message_versions (
    message_id UUID NOT NULL,
    rev        BIGINT NOT NULL,
    content    TEXT NOT NULL,
    edited_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, rev)
);

-- Who reacted with what; `rev` is that of the change that added the reaction.
CREATE TABLE message_reactions (
    message_id UUID NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    UUID NOT NULL,
    rev        BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);
