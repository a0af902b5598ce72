-- Accounts, rooms, memberships and messages.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL,
    -- Lowercased username: uniqueness ignores case.
    username_key  TEXT NOT NULL UNIQUE,
    email         TEXT,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE rooms (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    -- Lowercased name for case-insensitive search (folded in Rust: SQLite lower() is ASCII-only).
    name_key     TEXT NOT NULL,
    description  TEXT,
    is_private   BOOLEAN NOT NULL,
    owner_id     UUID NOT NULL REFERENCES users (id),
    -- Kept in the same transaction as membership changes so listings need no COUNT(*).
    member_count BIGINT NOT NULL DEFAULT 0,
    -- Highest seq handed out in this room. Incremented under the row lock in the same
    -- transaction as the message insert, which is what makes seq gap-free across nodes.
    last_seq     BIGINT NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX rooms_public_newest ON rooms (created_at DESC, id DESC) WHERE NOT is_private;

CREATE TABLE room_members (
    room_id       UUID NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at     TIMESTAMPTZ NOT NULL,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_by_user ON room_members (user_id);

CREATE TABLE messages (
    room_id         UUID NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    id              UUID NOT NULL UNIQUE,
    sender_id       UUID NOT NULL REFERENCES users (id),
    -- Usernames never change, so the name is stored with the message and history needs no join.
    sender_username TEXT NOT NULL,
    content         TEXT NOT NULL,
    client_msg_id   TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    -- History is always read by (room_id, seq): a keyset page costs the same at any depth.
    PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
