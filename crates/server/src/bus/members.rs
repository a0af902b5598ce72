//! Membership at delivery: a removed member hears nothing more from the room, on any node.
//!
//! Every removal bumps the room's membership revision in the database, and every event
//! carries the revision it was published at: a commit's revision for messages, the removal's
//! own for `member.left`, and for anything else the revision its node had checked. Each room
//! in the hub remembers the revision its local subscribers were last checked at. An event of a
//! newer revision means this node may have missed a removal (a lost bus message, a race with
//! a commit): before delivering it, the node asks the database which of its local subscribers
//! are still members and announces `member.left` locally for the others, whose connections
//! then drop the room. The common case costs one integer comparison per event.

use nebula_wire::ServerEvent;
use uuid::Uuid;

use crate::hub::{Frame, Hub};
use crate::store::Store;

/// Makes sure this node's subscribers of the frame's room may receive it.
pub(crate) async fn admit(hub: &Hub, store: &Store, frame: &Frame) {
    if needs_check(hub, frame) {
        check_members(hub, store, frame.room_id).await;
    }
}

/// Whether the room's local subscribers must be checked before they receive the frame.
pub(crate) fn needs_check(hub: &Hub, frame: &Frame) -> bool {
    let Some(checked) = hub.member_rev(frame.room_id) else {
        return false; // nobody here to protect
    };
    if frame.member_rev <= checked {
        return false;
    }
    // The next removal after the one checked: delivering it is the update (see
    // `Hub::publish`), nothing can have been missed in between.
    !(frame.member_left.is_some() && frame.member_rev == checked + 1)
}

/// Checks the room's local subscribers against the database and removes whoever is no longer
/// a member. On a database failure nothing is raised, so the next event checks again.
pub(crate) async fn check_members(hub: &Hub, store: &Store, room_id: Uuid) {
    let Some(local) = hub.local_subscribers(room_id) else {
        return;
    };
    let check = match store.check_members(room_id, &local.users).await {
        Ok(check) => check,
        Err(err) => {
            tracing::warn!(error = %err, %room_id, "membership check failed");
            return;
        }
    };
    for user in check.former {
        metrics::counter!("nebula_membership_repairs_total").increment(1);
        tracing::info!(%room_id, user_id = %user.id, "dropping the subscriptions of a former member");
        // Only here: the other nodes run their own checks. Its user's connections drop the
        // room on reading it; the others learn of a departure they may have missed. Revision
        // 0: this frame must not move the room's checked revision (only the check below may,
        // and only if it covered every subscriber).
        let event = ServerEvent::MemberLeft { room_id, user };
        hub.publish(&Frame::event(room_id, &event, None, 0));
    }
    hub.checked_members(room_id, local.generation, check.member_rev);
}
