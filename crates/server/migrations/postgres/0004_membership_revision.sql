-- Every removal from a room (leave, removal by an owner or admin) bumps the room's
-- `member_rev` in the same transaction, under the room row's lock. Message commits read it in
-- the statement that allocates their seqs, and every event between nodes carries it: a node
-- that sees a revision newer than the one it last checked its local subscribers against
-- re-checks them before delivering, so a removed member hears nothing more from the room even
-- when the event announcing the removal was lost between nodes.
ALTER TABLE rooms ADD COLUMN member_rev BIGINT NOT NULL DEFAULT 0;
