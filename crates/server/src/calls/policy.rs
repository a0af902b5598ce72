//! Who may call whom: the one place that decides it.

use uuid::Uuid;

use crate::error::ApiError;
use crate::store::Store;

/// Whether user `a` may ring user `b` (and go on signalling a call with them): they are two
/// different users who share at least one room, and neither blocked the other. It is the only
/// check `call.invite` makes, and it reads the database, so a block holds at once on every
/// node.
pub async fn may_call(store: &Store, a: Uuid, b: Uuid) -> Result<bool, ApiError> {
    if a == b || store.blocked_either(a, b).await? {
        return Ok(false);
    }
    Ok(store.share_a_room(a, b).await?)
}
