-- Direct rooms, contacts and blocks (issue 14).
--
-- Every existing room is a group room. A direct room is private and has exactly its two users;
-- `direct_rooms` names the pair with the lower id first, and its primary key is what makes
-- "one direct room per pair" hold even when both users (or two nodes) ask at the same moment:
-- the second insert conflicts and reads the first one's room instead.
ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'group' CHECK (kind IN ('group', 'direct'));

CREATE TABLE direct_rooms (
    user_low  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id   UUID NOT NULL UNIQUE REFERENCES rooms (id) ON DELETE CASCADE,
    PRIMARY KEY (user_low, user_high),
    CHECK (user_low < user_high)
);
CREATE INDEX direct_rooms_by_high ON direct_rooms (user_high);

-- People search: prefix range scans on the lowercased username in byte order, whatever the
-- database's collation (usernames are ASCII).
CREATE INDEX users_username_prefix ON users ((username_key COLLATE "C"));

-- A pending request from one user to another (one per direction; accepting or declining
-- deletes it).
CREATE TABLE contact_requests (
    id         UUID PRIMARY KEY,
    from_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (from_id, to_id)
);
CREATE INDEX contact_requests_to ON contact_requests (to_id);

-- Contacts are symmetric: one row per direction, so "my contacts" is one index range.
CREATE TABLE contacts (
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    since      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);

CREATE TABLE blocks (
    blocker_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
