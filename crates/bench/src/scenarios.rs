//! The traffic shapes the simulator knows, and how each one lays users out over rooms.
//!
//! A scenario only chooses defaults: every number it picks can be overridden by a flag, so
//! `--scenario fanout --users 200` is a smaller fan-out, not a different program.

use serde::Serialize;

/// A traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Users spread over a few rooms, everyone subscribed, a fifth of them sending at a
    /// conversational rate.
    Chat,
    /// One big room, everyone subscribed, a handful of senders: measures delivery fan-out.
    Fanout,
    /// Many rooms of five members, one sender per room: measures many independent rooms.
    ManyRooms,
    /// Every user sends as fast as its in-flight window allows into a few rooms with few
    /// subscribers: measures how many messages per second the server can commit.
    Ingest,
    /// Connections that subscribe and then only hold: measures the memory cost of a socket.
    Idle,
}

/// What a scenario sets when its flags are not given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    pub users: usize,
    pub rooms: usize,
    pub senders: usize,
    /// Messages per second per sender; 0 means as fast as the window allows.
    pub rate: f64,
    pub in_flight: usize,
}

impl Scenario {
    /// Defaults for this scenario, given whatever `--users` / `--rooms` were set explicitly
    /// (senders and rooms scale with them).
    pub fn defaults(self, users: Option<usize>, rooms: Option<usize>) -> Defaults {
        let users = users.unwrap_or(match self {
            Scenario::Chat => 50,
            Scenario::Ingest => 8,
            Scenario::Fanout | Scenario::ManyRooms | Scenario::Idle => 1000,
        });
        let rooms = rooms
            .unwrap_or(match self {
                Scenario::Chat => 5,
                Scenario::Fanout => 1,
                Scenario::ManyRooms => users / 5,
                Scenario::Ingest => 4,
                Scenario::Idle => 10,
            })
            .clamp(1, users.max(1));
        let senders = match self {
            Scenario::Chat => (users / 5).max(1),
            Scenario::Fanout => users.min(5),
            Scenario::ManyRooms => rooms,
            Scenario::Ingest => users,
            Scenario::Idle => 0,
        };
        let (rate, in_flight) = match self {
            Scenario::Chat | Scenario::ManyRooms => (1.0, 8),
            Scenario::Fanout => (2.0, 8),
            Scenario::Ingest => (0.0, 64),
            Scenario::Idle => (0.0, 1),
        };
        Defaults {
            users,
            rooms,
            senders,
            rate,
            in_flight,
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Chat => "chat",
            Scenario::Fanout => "fanout",
            Scenario::ManyRooms => "many-rooms",
            Scenario::Ingest => "ingest",
            Scenario::Idle => "idle",
        }
    }
}

/// Who is where. User `i` is a member of room `i % rooms`, opens one socket subscribed to
/// that room, and sends if `i < senders`; the modulo spreads both members and senders evenly
/// over the rooms without any bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub users: usize,
    pub rooms: usize,
    pub senders: usize,
}

impl Layout {
    pub fn room_of(&self, user: usize) -> usize {
        user % self.rooms.max(1)
    }

    pub fn is_sender(&self, user: usize) -> bool {
        user < self.senders
    }

    /// The first user of a room creates it (and so becomes its owner).
    pub fn creator_of(&self, room: usize) -> usize {
        room
    }

    /// How many sockets are subscribed to `room`.
    pub fn subscribers_in(&self, room: usize) -> usize {
        (0..self.users).filter(|&u| self.room_of(u) == room).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_spreads_users_and_senders_round_robin() {
        let layout = Layout {
            users: 10,
            rooms: 3,
            senders: 4,
        };
        assert_eq!(
            (0..10).map(|u| layout.room_of(u)).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        );
        assert_eq!(layout.subscribers_in(0), 4);
        assert_eq!(layout.subscribers_in(2), 3);
        // Senders 0..4 land in rooms 0, 1, 2, 0: every room has one.
        assert!((0..3).all(|r| (0..10).any(|u| layout.is_sender(u) && layout.room_of(u) == r)));
        assert!((0..3).all(|r| layout.room_of(layout.creator_of(r)) == r));
    }

    #[test]
    fn defaults_follow_explicit_sizes() {
        let chat = Scenario::Chat.defaults(Some(50), Some(5));
        assert_eq!((chat.users, chat.rooms, chat.senders), (50, 5, 10));
        let many = Scenario::ManyRooms.defaults(Some(100), None);
        assert_eq!((many.rooms, many.senders), (20, 20));
        // More rooms than users would leave rooms empty.
        assert_eq!(Scenario::Chat.defaults(Some(3), Some(10)).rooms, 3);
        assert_eq!(Scenario::Idle.defaults(None, None).senders, 0);
    }
}
