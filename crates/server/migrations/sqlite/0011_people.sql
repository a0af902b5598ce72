-- See the PostgreSQL migration of the same number. UUIDs are 16-byte BLOBs, compared (and
-- ordered by `user_low < user_high`) byte-wise as in PostgreSQL and Rust.
ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'group' CHECK (kind IN ('group', 'direct'));

CREATE TABLE direct_rooms (
    user_low  BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id   BLOB NOT NULL UNIQUE REFERENCES rooms (id) ON DELETE CASCADE,
    PRIMARY KEY (user_low, user_high),
    CHECK (user_low < user_high)
) WITHOUT ROWID;
CREATE INDEX direct_rooms_by_high ON direct_rooms (user_high);

-- People search: the UNIQUE index on `username_key` (BINARY collation, byte order) already
-- serves prefix range scans; nothing to add.

CREATE TABLE contact_requests (
    id         BLOB PRIMARY KEY,
    from_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    UNIQUE (from_id, to_id)
);
CREATE INDEX contact_requests_to ON contact_requests (to_id);

CREATE TABLE contacts (
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    since      TEXT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
) WITHOUT ROWID;

CREATE TABLE blocks (
    blocker_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) WITHOUT ROWID;
