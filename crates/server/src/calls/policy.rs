//! Who may call whom: the one place that decides it.

use uuid::Uuid;

use crate::error::ApiError;
use crate::store::Store;

/// Whether user `a` may ring user `b` (and go on signalling a call with them).
///
/// Today: `a` and `b` share at least one room, and are not the same user. **Blocks go here**:
/// when blocking lands (issue 14 item 3), this function must also refuse when either user
/// blocked the other, so that every call path (it is the only check `call.invite` makes)
/// honours a block at once.
pub async fn may_call(store: &Store, a: Uuid, b: Uuid) -> Result<bool, ApiError> {
    if a == b {
        return Ok(false);
    }
    Ok(store.share_a_room(a, b).await?)
}
