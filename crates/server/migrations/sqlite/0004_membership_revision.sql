-- See the PostgreSQL migration of the same number: bumped on every removal from the room.
ALTER TABLE rooms ADD COLUMN member_rev INTEGER NOT NULL DEFAULT 0;
