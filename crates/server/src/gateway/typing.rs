//! Typing indicators, coalesced per user and room on this node.
//!
//! A client may send `typing` on every keystroke; relaying each one would let one member flood
//! a room. At most one `typing` event per second per user and room is relayed, and a change of
//! state is never lost, only delayed: a `stop` right after a `start` is relayed when the second
//! is up, so nobody is left showing "typing…". When a user's subscription ends while they were
//! last shown typing, a `stop` is relayed at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nebula_wire::{ServerEvent, TypingState, User};
use uuid::Uuid;

use crate::bus::Bus;

/// The shortest time between two relayed events of one user in one room.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    user: User,
    /// The state the room last heard, and when.
    relayed: TypingState,
    at: Instant,
    /// The latest state not relayed yet; a flush is scheduled while this is set.
    pending: Option<TypingState>,
}

type Key = (Uuid, Uuid); // (room, user)

/// The node's typing relay. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TypingRelay {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bus: Bus,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl TypingRelay {
    pub fn new(bus: Bus) -> Self {
        TypingRelay {
            inner: Arc::new(Inner {
                bus,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A member's client says they started or stopped typing.
    pub fn update(&self, room_id: Uuid, user: &User, state: TypingState) {
        let now = Instant::now();
        let mut entries = self.inner.lock();
        let Some(entry) = entries.get_mut(&(room_id, user.id)) else {
            entries.insert(
                (room_id, user.id),
                Entry {
                    user: user.clone(),
                    relayed: state,
                    at: now,
                    pending: None,
                },
            );
            drop(entries);
            self.inner.relay(room_id, user.clone(), state);
            return;
        };
        if entry.pending.is_some() {
            entry.pending = Some(state); // the scheduled flush relays the latest
            return;
        }
        if now.duration_since(entry.at) >= TYPING_INTERVAL {
            entry.relayed = state;
            entry.at = now;
            let user = entry.user.clone();
            drop(entries);
            self.inner.relay(room_id, user, state);
            return;
        }
        if state == entry.relayed {
            return; // a repeat within the second: nothing new to say
        }
        entry.pending = Some(state);
        let due = entry.at + TYPING_INTERVAL;
        drop(entries);
        let (inner, user_id) = (self.inner.clone(), user.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                inner.flush(room_id, user_id);
            });
        }
    }

    /// The user's subscription to the room ended on this node: if the room last heard them
    /// typing, it hears them stop now.
    pub fn subscription_ended(&self, room_id: Uuid, user_id: Uuid) {
        let mut entries = self.inner.lock();
        let Some(entry) = entries.remove(&(room_id, user_id)) else {
            return;
        };
        drop(entries);
        if entry.relayed == TypingState::Start || entry.pending == Some(TypingState::Start) {
            self.inner.relay(room_id, entry.user, TypingState::Stop);
        }
    }

    /// Forgets entries with nothing pending that are past their interval (called periodically),
    /// so memory follows who typed recently.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        self.inner.lock().retain(|_, entry| {
            entry.pending.is_some() || now.duration_since(entry.at) < TYPING_INTERVAL * 10
        });
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The second is up: relays the latest state if it differs from what the room heard.
    fn flush(&self, room_id: Uuid, user_id: Uuid) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&(room_id, user_id)) else {
            return; // the subscription ended meanwhile (and relayed its stop)
        };
        let Some(state) = entry.pending.take() else {
            return;
        };
        if state == entry.relayed {
            return;
        }
        entry.relayed = state;
        entry.at = Instant::now();
        let user = entry.user.clone();
        drop(entries);
        self.relay(room_id, user, state);
    }

    fn relay(&self, room_id: Uuid, user: User, state: TypingState) {
        let user_id = user.id;
        let event = ServerEvent::Typing {
            room_id,
            user_id,
            username: user.username,
            state,
        };
        self.bus.publish(room_id, &event, Some(user_id));
    }
}
