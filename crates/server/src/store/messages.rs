//! Messages: group-committed appends with per-room seq, and history reads by (room_id, seq).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use nebula_wire::{Message, ReplyTo, Rev, Seq};
use sqlx::{PgConnection, QueryBuilder, SqliteConnection};
use uuid::Uuid;

use super::rows::{MessageRow, encode_attachments, message_columns, message_insert_columns};
use super::{Backend, Store, StoreError, StoreResult, is_unique_violation, with_pool};

/// A message waiting to be written.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub room_id: Uuid,
    pub sender_id: Uuid,
    pub sender_username: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    /// The message it answers, checked to be of the same room.
    pub reply_to: Option<ReplyTo>,
    /// Media the sender uploaded, checked before queueing (unsigned paths).
    pub attachments: Vec<nebula_wire::Media>,
    /// Members of the room the content mentions (`crate::mentions::resolve`).
    pub mentions: Vec<Uuid>,
}

/// Outcome of writing one message.
#[derive(Debug, Clone)]
pub enum Posted {
    /// Stored now, with a new seq.
    Created(Message),
    /// The sender already posted this `client_msg_id` in this room: the original.
    Existing(Message),
}

impl Posted {
    pub fn message(&self) -> &Message {
        match self {
            Posted::Created(message) | Posted::Existing(message) => message,
        }
    }
}

/// The idempotency key of a message: the same sender, room and `client_msg_id`.
type IdempotencyKey = (Uuid, Uuid, String);

fn idempotency_key(message: &NewMessage) -> Option<IdempotencyKey> {
    message
        .client_msg_id
        .clone()
        .map(|id| (message.room_id, message.sender_id, id))
}

/// How many times a batch is retried when a concurrent writer (another node) stored the same
/// `client_msg_id` between our check and our insert. The retry's check then finds it.
const CONFLICT_RETRIES: usize = 3;

/// Idempotency keys looked up per SQLite query (see `sqlite_originals`).
const IDEMPOTENCY_CHUNK: usize = 32;

/// Why a message of a batch was not stored: its sender is not a member of the room (any
/// more). Decided inside the commit, so a removal that raced the send always wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAMember;

/// The outcome of one input of a batch.
pub type Outcome = Result<Posted, NotAMember>;

/// A committed batch: one outcome per input, in order, and the membership revision of each
/// room that got new messages (events about them carry it; see `bus`).
#[derive(Debug)]
pub struct Committed {
    pub outcomes: Vec<Outcome>,
    pub member_revs: BTreeMap<Uuid, i64>,
}

/// Which senders were members of which rooms, as of a membership revision: a writer's memory
/// of its last checks, so a batch checks only senders it has not seen at the room's current
/// revision. Every removal bumps the revision (in the same transaction, under the room row's
/// lock), which invalidates every entry of the room at once, on every node.
#[derive(Debug, Default)]
pub struct MemberCache {
    known: HashMap<(Uuid, Uuid), i64>,
}

/// Entries kept before the cache starts over (a cold entry costs one indexed lookup).
const MEMBER_CACHE_MAX: usize = 100_000;

impl MemberCache {
    fn is_known(&self, room_id: Uuid, sender: Uuid, member_rev: i64) -> bool {
        self.known.get(&(room_id, sender)) == Some(&member_rev)
    }

    fn remember(&mut self, room_id: Uuid, sender: Uuid, member_rev: i64) {
        if self.known.len() >= MEMBER_CACHE_MAX {
            self.known.clear();
        }
        self.known.insert((room_id, sender), member_rev);
    }
}

impl Store {
    /// Writes a batch of messages in one transaction and returns one outcome per input, in order.
    ///
    /// Seqs are allocated per room by bumping `rooms.last_seq` (and `last_rev`: a new message
    /// is also a change) inside the same transaction as the inserts: the row lock serializes
    /// writers of one room across every process, and a rolled-back batch releases its seqs, so
    /// seq never has gaps or duplicates. Rooms are locked in id order so two batches touching
    /// the same rooms cannot deadlock.
    ///
    /// Senders are checked against the room's membership under the same lock: a message from
    /// someone removed before the commit is refused ([`NotAMember`]) whatever any node's
    /// caches said. Senders already checked at the room's current membership revision cost
    /// nothing; the others one indexed lookup per room.
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    pub async fn append_messages(
        &self,
        batch: &[NewMessage],
        members: &mut MemberCache,
    ) -> StoreResult<Committed> {
        let mut attempt = 0;
        let mut refused: HashSet<(Uuid, Uuid)> = HashSet::new();
        loop {
            attempt += 1;
            // Almost always the whole batch; after a refusal, the rest of it.
            let (subset, admitted) = if refused.is_empty() {
                (Cow::Borrowed(batch), None)
            } else {
                let admitted: Vec<usize> = (0..batch.len())
                    .filter(|&i| !refused.contains(&(batch[i].room_id, batch[i].sender_id)))
                    .collect();
                let subset = admitted.iter().map(|&i| batch[i].clone()).collect();
                (Cow::Owned(subset), Some(admitted))
            };
            match self.try_append(&subset, members).await {
                Ok(Attempt::Committed(mut outcomes, member_revs)) => {
                    for posted in &mut outcomes {
                        let (Posted::Created(message) | Posted::Existing(message)) = posted;
                        self.sign_message(message);
                    }
                    let outcomes = match admitted {
                        None => outcomes.into_iter().map(Ok).collect(),
                        Some(admitted) => {
                            let mut all: Vec<Outcome> = vec![Err(NotAMember); batch.len()];
                            for (index, outcome) in admitted.into_iter().zip(outcomes) {
                                all[index] = Ok(outcome);
                            }
                            all
                        }
                    };
                    return Ok(Committed {
                        outcomes,
                        member_revs,
                    });
                }
                // Rolled back: commit the rest without the non-members' messages.
                Ok(Attempt::NotMembers(senders)) => refused.extend(senders),
                Err(StoreError::Database(err))
                    if is_unique_violation(&err) && attempt < CONFLICT_RETRIES => {}
                Err(err) => return Err(err),
            }
        }
    }

    async fn try_append(
        &self,
        batch: &[NewMessage],
        members: &mut MemberCache,
    ) -> StoreResult<Attempt> {
        let created_at = super::now();
        let keyed: Vec<&NewMessage> = batch.iter().filter(|m| m.client_msg_id.is_some()).collect();
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let mut tx = writer.begin().await?;
                let plan = Plan::new(
                    batch,
                    self.open_rows(sqlite_originals(&mut tx, &keyed).await?)?,
                );
                let (seqs, revs, direct) = allocate_seqs!(tx, plan, batch.len());
                let outsiders = check_senders!(tx, plan, batch, revs, members);
                if !outsiders.is_empty() {
                    tx.rollback().await?;
                    return Ok(Attempt::NotMembers(outsiders));
                }
                let created = new_rows(batch, seqs, created_at);
                sqlite_insert(&mut tx, &created, &self.sealed_contents(&created)).await?;
                let queued = enqueue_direct_messages!(tx, direct, created);
                let queued = super::mentions::record_mentions!(tx, created) || queued;
                tx.commit().await?;
                if queued {
                    self.wake_outbox_relay();
                }
                Ok(Attempt::Committed(plan.outcomes(batch, created)?, revs))
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let plan = Plan::new(
                    batch,
                    self.open_rows(postgres_originals(&mut tx, &keyed).await?)?,
                );
                let (seqs, revs, direct) = allocate_seqs!(tx, plan, batch.len());
                let outsiders = check_senders!(tx, plan, batch, revs, members);
                if !outsiders.is_empty() {
                    tx.rollback().await?;
                    return Ok(Attempt::NotMembers(outsiders));
                }
                let created = new_rows(batch, seqs, created_at);
                postgres_insert(&mut tx, &created, &self.sealed_contents(&created)).await?;
                let queued = enqueue_direct_messages!(tx, direct, created);
                let queued = super::mentions::record_mentions!(tx, created) || queued;
                tx.commit().await?;
                if queued {
                    self.wake_outbox_relay();
                }
                Ok(Attempt::Committed(plan.outcomes(batch, created)?, revs))
            }
        }
    }
}

/// One try at committing a batch.
enum Attempt {
    Committed(Vec<Posted>, BTreeMap<Uuid, i64>),
    /// Rolled back: these (room, sender) pairs are not members.
    NotMembers(Vec<(Uuid, Uuid)>),
}

/// Allocates seqs and revs for a plan's new messages: one `UPDATE` per room, in room-id
/// order, inside the batch's transaction, which also reads each room's membership revision
/// and kind under the lock (the direct rooms' messages get outbox rows). The same SQL on both backends; a macro because the transaction types differ.
macro_rules! allocate_seqs {
    ($tx:ident, $plan:ident, $len:expr) => {{
        let mut seqs: Vec<Option<(Seq, Rev)>> = vec![None; $len];
        let mut revs: BTreeMap<Uuid, i64> = BTreeMap::new();
        let mut direct: Vec<Uuid> = Vec::new();
        for (room_id, indexes) in &$plan.new_by_room {
            let count = i64::try_from(indexes.len()).unwrap_or(i64::MAX);
            let (last, last_rev, member_rev, kind): (Seq, Rev, i64, String) = sqlx::query_as(
                "UPDATE rooms SET last_seq = last_seq + $2, last_rev = last_rev + $2 WHERE id = $1
                 RETURNING last_seq, last_rev, member_rev, kind",
            )
            .bind(room_id)
            .bind(count)
            .fetch_one(&mut *$tx)
            .await?;
            revs.insert(*room_id, member_rev);
            if kind == "direct" {
                direct.push(*room_id);
            }
            for (offset, &index) in indexes.iter().enumerate() {
                let offset = i64::try_from(offset).unwrap_or(0);
                seqs[index] = Some((last - count + 1 + offset, last_rev - count + 1 + offset));
            }
        }
        (seqs, revs, direct)
    }};
}
use allocate_seqs;

/// Inside a batch's transaction, after the inserts: one outbox row per new message of a
/// direct room, for the other user of the room (a possible Web Push; the relay and the
/// dispatcher decide later whether it is pushed). Committed with the messages, so a message
/// and its notification exist together or not at all. Evaluates to whether any was written.
macro_rules! enqueue_direct_messages {
    ($tx:ident, $direct:ident, $created:ident) => {{
        let mut queued = false;
        for room_id in &$direct {
            let pair: Option<(Uuid, Uuid)> =
                sqlx::query_as("SELECT user_low, user_high FROM direct_rooms WHERE room_id = $1")
                    .bind(room_id)
                    .fetch_optional(&mut *$tx)
                    .await?;
            let Some((low, high)) = pair else { continue };
            for message in $created.iter().flatten().filter(|m| m.room_id == *room_id) {
                let recipient = if message.sender_id == low { high } else { low };
                let event = super::outbox::OutboxEvent::direct_message(message, recipient)?;
                super::outbox::insert_outbox_row!($tx, event, *room_id);
                super::mentions::mark_digest_pending!($tx, recipient, message.created_at);
                queued = true;
            }
        }
        queued
    }};
}
use enqueue_direct_messages;

/// The (room, sender) pairs of a plan's new messages whose sender is not a member, checked in
/// the batch's transaction after `allocate_seqs` locked the rooms; senders the cache knows at
/// the room's revision are not looked up. Members found are remembered.
macro_rules! check_senders {
    ($tx:ident, $plan:ident, $batch:ident, $revs:ident, $members:ident) => {{
        let mut outsiders: Vec<(Uuid, Uuid)> = Vec::new();
        for (room_id, indexes) in &$plan.new_by_room {
            let member_rev = $revs.get(room_id).copied().unwrap_or_default();
            let mut unknown: Vec<Uuid> = indexes
                .iter()
                .map(|&index| $batch[index].sender_id)
                .filter(|&sender| !$members.is_known(*room_id, sender, member_rev))
                .collect();
            if unknown.is_empty() {
                continue;
            }
            unknown.sort_unstable();
            unknown.dedup();
            // A member of a direct room whose two users are blocked may not post there: checked
            // here too, under the room's lock, because blocking bumps the room's membership
            // revision under the same lock (see `Store::block`), so a block that commits
            // first is always seen, whatever any node's cache said.
            let mut query = QueryBuilder::new(
                "SELECT m.user_id FROM room_members m WHERE NOT EXISTS (
                   SELECT 1 FROM direct_rooms d JOIN blocks b
                     ON (b.blocker_id = d.user_low AND b.blocked_id = d.user_high)
                     OR (b.blocker_id = d.user_high AND b.blocked_id = d.user_low)
                   WHERE d.room_id = m.room_id) AND m.room_id = ",
            );
            query.push_bind(*room_id);
            query.push(" AND m.user_id IN (");
            let mut ids = query.separated(", ");
            for sender in &unknown {
                ids.push_bind(*sender);
            }
            query.push(")");
            let found: Vec<Uuid> = query.build_query_scalar().fetch_all(&mut *$tx).await?;
            for sender in unknown {
                if found.contains(&sender) {
                    $members.remember(*room_id, sender, member_rev);
                } else {
                    outsiders.push((*room_id, sender));
                }
            }
        }
        outsiders
    }};
}
use check_senders;

/// What a batch will do, decided before anything is written: which inputs repeat a stored
/// `client_msg_id` (`originals`), which repeat an earlier input of the same batch, and which
/// are new, grouped by room.
struct Plan {
    originals: HashMap<IdempotencyKey, Message>,
    first_in_batch: HashMap<IdempotencyKey, usize>,
    new_by_room: BTreeMap<Uuid, Vec<usize>>,
}

impl Plan {
    fn new(batch: &[NewMessage], stored: Vec<MessageRow>) -> Plan {
        let mut originals = HashMap::new();
        for row in stored {
            let message = Message::from(row);
            if let Some(id) = message.client_msg_id.clone() {
                originals.insert((message.room_id, message.sender_id, id), message);
            }
        }
        let mut first_in_batch: HashMap<IdempotencyKey, usize> = HashMap::new();
        let mut new_by_room: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
        for (index, message) in batch.iter().enumerate() {
            let key = idempotency_key(message);
            let seen = key
                .as_ref()
                .is_some_and(|k| originals.contains_key(k) || first_in_batch.contains_key(k));
            if !seen {
                if let Some(key) = key {
                    first_in_batch.insert(key, index);
                }
                new_by_room.entry(message.room_id).or_default().push(index);
            }
        }
        Plan {
            originals,
            first_in_batch,
            new_by_room,
        }
    }

    /// One outcome per input, in input order.
    fn outcomes(
        &self,
        batch: &[NewMessage],
        created: Vec<Option<Message>>,
    ) -> StoreResult<Vec<Posted>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            let outcome = match (&created[index], idempotency_key(message)) {
                (Some(stored), _) => Posted::Created(stored.clone()),
                (None, Some(key)) => self
                    .originals
                    .get(&key)
                    .cloned()
                    .or_else(|| {
                        self.first_in_batch
                            .get(&key)
                            .and_then(|&first| created[first].clone())
                    })
                    .map(Posted::Existing)
                    .ok_or(StoreError::Invariant("a skipped message has no original"))?,
                (None, None) => {
                    return Err(StoreError::Invariant("an unkeyed message was not stored"));
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

/// The rows to insert: one per input that got a seq (and rev).
fn new_rows(
    batch: &[NewMessage],
    seqs: Vec<Option<(Seq, Rev)>>,
    created_at: DateTime<Utc>,
) -> Vec<Option<Message>> {
    batch
        .iter()
        .zip(seqs)
        .map(|(message, seq)| {
            seq.map(|(seq, rev)| Message {
                id: Uuid::now_v7(),
                room_id: message.room_id,
                seq,
                sender_id: message.sender_id,
                sender_username: message.sender_username.clone(),
                content: message.content.clone(),
                client_msg_id: message.client_msg_id.clone(),
                created_at,
                reply_to: message.reply_to,
                edited_at: None,
                deleted_at: None,
                reactions: Vec::new(),
                rev,
                attachments: message.attachments.clone(),
                mentions: message.mentions.clone(),
            })
        })
        .collect()
}

/// Stored messages with the same idempotency keys as `keyed`, as OR-ed indexed lookups in
/// chunks: SQLite answers a row-value `IN (list)` with a full table scan (measured: 7,100
/// acked/s, falling as the table grew, against 30,400/s with OR-ed terms).
async fn sqlite_originals(
    tx: &mut SqliteConnection,
    keyed: &[&NewMessage],
) -> StoreResult<Vec<MessageRow>> {
    let mut rows = Vec::new();
    for chunk in keyed.chunks(IDEMPOTENCY_CHUNK) {
        let mut query = QueryBuilder::new(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE client_msg_id IS NOT NULL AND ("
        ));
        let mut terms = query.separated(" OR ");
        for message in chunk {
            terms.push("(room_id = ");
            terms.push_bind_unseparated(message.room_id);
            terms.push_unseparated(" AND sender_id = ");
            terms.push_bind_unseparated(message.sender_id);
            terms.push_unseparated(" AND client_msg_id = ");
            terms.push_bind_unseparated(message.client_msg_id.clone());
            terms.push_unseparated(")");
        }
        query.push(")");
        rows.extend(
            query
                .build_query_as::<MessageRow>()
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    Ok(rows)
}

/// The same lookup on PostgreSQL: the keys travel as three arrays and are joined against the
/// idempotency index, so the statement is one prepared plan whatever the batch size (512
/// OR-ed terms spent 45 ms in the planner).
async fn postgres_originals(
    tx: &mut PgConnection,
    keyed: &[&NewMessage],
) -> StoreResult<Vec<MessageRow>> {
    if keyed.is_empty() {
        return Ok(Vec::new());
    }
    let rooms: Vec<Uuid> = keyed.iter().map(|m| m.room_id).collect();
    let senders: Vec<Uuid> = keyed.iter().map(|m| m.sender_id).collect();
    let ids: Vec<&str> = keyed
        .iter()
        .map(|m| m.client_msg_id.as_deref().unwrap_or_default())
        .collect();
    // One index probe per key, in its room's partition, whatever the statistics say: as a
    // plain join, a table whose statistics are stale (a new database, partitions analyzed
    // while empty) got a hash join over a sequential scan of every partition, a cost that
    // grows with the table (measured: 7× the database CPU per message). The `LIMIT 1` keeps
    // the planner from flattening the subquery back into that join; the unique idempotency
    // index means it never drops a row.
    let rows = sqlx::query_as::<_, MessageRow>(concat!(
        "SELECT m.* FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS k(k_room, k_sender, k_client)",
        " CROSS JOIN LATERAL (SELECT ",
        message_columns!(),
        " FROM messages WHERE room_id = k.k_room AND sender_id = k.k_sender",
        " AND client_msg_id = k.k_client AND client_msg_id IS NOT NULL LIMIT 1) AS m"
    ))
    .bind(rooms)
    .bind(senders)
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows)
}

/// Records which media new messages carry (for access checks and collection), and marks the
/// media attached. Few messages carry any, so one statement per attachment is fine.
macro_rules! link_attachments {
    ($tx:ident, $created:ident) => {
        for m in $created.iter().flatten() {
            for media in &m.attachments {
                sqlx::query(
                    "INSERT INTO message_media (message_id, room_id, media_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(m.id)
                .bind(m.room_id)
                .bind(media.id)
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "UPDATE media SET attached_at = COALESCE(attached_at, $2) WHERE id = $1",
                )
                .bind(media.id)
                .bind(m.created_at)
                .execute(&mut *$tx)
                .await?;
            }
        }
    };
}
impl Store {
    /// The `content` to store for each new message, in `created.iter().flatten()` order.
    fn sealed_contents<'a>(&self, created: &'a [Option<Message>]) -> Vec<Cow<'a, str>> {
        created
            .iter()
            .flatten()
            .map(|m| self.seal_content(m.room_id, m.id, &m.content))
            .collect()
    }
}

async fn sqlite_insert(
    tx: &mut SqliteConnection,
    created: &[Option<Message>],
    contents: &[Cow<'_, str>],
) -> StoreResult<()> {
    let rows: Vec<(&Message, &Cow<'_, str>)> = created.iter().flatten().zip(contents).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = QueryBuilder::new(concat!(
        "INSERT INTO messages (",
        message_insert_columns!(),
        ") "
    ));
    insert.push_values(rows, |mut row, (m, content)| {
        row.push_bind(m.id)
            .push_bind(m.room_id)
            .push_bind(m.seq)
            .push_bind(m.sender_id)
            .push_bind(m.sender_username.clone())
            .push_bind(content.to_string())
            .push_bind(m.client_msg_id.clone())
            .push_bind(m.created_at)
            .push_bind(m.rev)
            .push_bind(m.rev)
            .push_bind(m.reply_to.map(|r| r.id))
            .push_bind(m.reply_to.map(|r| r.seq))
            .push_bind(encode_attachments(&m.attachments))
            .push_bind(super::mentions::encode_mentions(&m.mentions));
    });
    insert.build().execute(&mut *tx).await?;
    link_attachments!(tx, created);
    Ok(())
}

/// Inserts a batch as one column array per field: one small prepared statement instead of a
/// `VALUES` list of up to 4,096 parameters parsed and planned anew for every batch size.
async fn postgres_insert(
    tx: &mut PgConnection,
    created: &[Option<Message>],
    contents: &[Cow<'_, str>],
) -> StoreResult<()> {
    let rows: Vec<&Message> = created.iter().flatten().collect();
    if rows.is_empty() {
        return Ok(());
    }
    // A new message is its own creation: `created_rev` repeats the `rev` array (column 9).
    sqlx::query(concat!(
        "INSERT INTO messages (",
        message_insert_columns!(),
        ") SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c9, c10, c11, c12, c13",
        " FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::text[],",
        " $6::text[], $7::text[], $8::timestamptz[], $9::int8[], $10::uuid[], $11::int8[],",
        " $12::text[], $13::text[])",
        " AS t(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13)"
    ))
    .bind(rows.iter().map(|m| m.id).collect::<Vec<_>>())
    .bind(rows.iter().map(|m| m.room_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|m| m.seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|m| m.sender_id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|m| m.sender_username.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(contents.iter().map(AsRef::as_ref).collect::<Vec<&str>>())
    .bind(
        rows.iter()
            .map(|m| m.client_msg_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|m| m.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|m| m.rev).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|m| m.reply_to.map(|r| r.id))
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|m| m.reply_to.map(|r| r.seq))
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|m| encode_attachments(&m.attachments))
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|m| super::mentions::encode_mentions(&m.mentions))
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await?;
    link_attachments!(tx, created);
    Ok(())
}

/// Which way a keyset window extends from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Before,
    /// Upwards, below the given seq if any (a window inside a range).
    After(Option<Seq>),
}

impl Store {
    /// Messages with `low < seq <= high`, ascending. Backed by the (room_id, seq) primary key.
    pub async fn messages_between(
        &self,
        room_id: Uuid,
        low: Seq,
        high: Seq,
    ) -> StoreResult<Vec<Message>> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE room_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
        );
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, MessageRow>(sql).bind(room_id).bind(low).bind(high).fetch_all(pool).await?
        });
        rows.into_iter().map(|row| self.message_from(row)).collect()
    }

    /// Up to `limit` messages just beyond `cursor` in `direction`, ascending, and whether more
    /// exist beyond them. One index range scan whatever the depth of history.
    pub async fn messages_window(
        &self,
        room_id: Uuid,
        cursor: Seq,
        direction: Direction,
        limit: i64,
    ) -> StoreResult<(Vec<Message>, bool)> {
        let sql = match direction {
            Direction::Before => concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE room_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            ),
            Direction::After(_) => concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE room_id = $1 AND seq > $2 AND seq < $4 ORDER BY seq ASC LIMIT $3"
            ),
        };
        let below = match direction {
            Direction::After(Some(below)) => below,
            _ => Seq::MAX,
        };
        // One extra row answers `has_more` without a second query.
        let rows = with_pool!(self, pool => {
            let query = sqlx::query_as::<_, MessageRow>(sql)
                .bind(room_id)
                .bind(cursor)
                .bind(limit.saturating_add(1));
            let query = if matches!(direction, Direction::After(_)) { query.bind(below) } else { query };
            query.fetch_all(pool).await?
        });
        let mut messages: Vec<Message> = rows
            .into_iter()
            .map(|row| self.message_from(row))
            .collect::<StoreResult<_>>()?;
        let has_more = i64::try_from(messages.len()).unwrap_or(i64::MAX) > limit;
        messages.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        if direction == Direction::Before {
            messages.reverse();
        }
        Ok((messages, has_more))
    }

    /// The message a sender stored under `client_msg_id`, if any.
    pub async fn message_by_client_id(
        &self,
        room_id: Uuid,
        sender_id: Uuid,
        client_msg_id: &str,
    ) -> StoreResult<Option<Message>> {
        let sql = concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE room_id = $1 AND sender_id = $2 AND client_msg_id = $3"
        );
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, MessageRow>(sql)
                .bind(room_id)
                .bind(sender_id)
                .bind(client_msg_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|row| self.message_from(row)).transpose()
    }
}
