-- Accounts, rooms, memberships and messages. Same schema as the PostgreSQL migration;
-- UUIDs are 16-byte BLOBs and timestamps RFC 3339 TEXT (sqlx's SQLite encodings).

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    email         TEXT,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE rooms (
    id           BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    -- Lowercased name for case-insensitive search (folded in Rust: SQLite lower() is ASCII-only).
    name_key     TEXT NOT NULL,
    description  TEXT,
    is_private   INTEGER NOT NULL,
    owner_id     BLOB NOT NULL REFERENCES users (id),
    member_count INTEGER NOT NULL DEFAULT 0,
    last_seq     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL
);
CREATE INDEX rooms_public_newest ON rooms (created_at DESC, id DESC) WHERE NOT is_private;

CREATE TABLE room_members (
    room_id       BLOB NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id       BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at     TEXT NOT NULL,
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_by_user ON room_members (user_id);

CREATE TABLE messages (
    room_id         BLOB NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    id              BLOB NOT NULL UNIQUE,
    sender_id       BLOB NOT NULL REFERENCES users (id),
    sender_username TEXT NOT NULL,
    content         TEXT NOT NULL,
    client_msg_id   TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
