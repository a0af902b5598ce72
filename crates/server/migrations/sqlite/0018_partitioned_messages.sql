-- History at a billion rows (issue 19): on PostgreSQL this migration partitions `messages`
-- by a hash of `room_id`. SQLite has no partitioning, and an embedded single-node database
-- does not hold a billion messages; the (room_id, seq) key already serves history there.
--
-- Kept (doing nothing) so both backends know the same schema versions: a backup taken on
-- PostgreSQL at this version restores into SQLite (`backup/restore.rs` refuses a version it
-- does not know).
SELECT 1;
