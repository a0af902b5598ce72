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
    /// One room of 1000, everyone subscribed, 10 senders paced to 40,000 deliveries/s:
    /// server CPU per delivery and RSS per connection in a large room.
    LargeRoom,
    /// 10 rooms of 100, everyone subscribed, 2 senders per room paced to 20,000
    /// deliveries/s: server CPU per delivery in rooms of a common size.
    Rooms,
    /// 50 senders with 8 messages in flight each over 5 rooms, closed loop (as fast as acks
    /// allow): acked messages/s with small windows, as many real clients have.
    SmallWindowIngest,
    /// 10,000 users online and subscribed in one room, then one more socket subscribes and
    /// unsubscribes repeatedly: subscribe latency and memory with a large online list
    /// (Nebula only: the Socket.IO peer has no presence).
    Presence,
    /// 10 rooms of 10, everyone subscribed, 2 senders per room changing their own earlier
    /// messages over REST (edits, and reaction toggles) at 10 changes/s each: acknowledged
    /// changes/s, `message.updated` deliveries and their order by `rev`, server CPU per
    /// change (Nebula only: the Socket.IO peer has no edits or reactions).
    Edits,
}

/// What a scenario sets when its flags are not given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    pub users: usize,
    pub rooms: usize,
    pub senders: usize,
    /// Messages per second per sender; 0 means as fast as the window allows.
    pub rate: f64,
    /// When set, `rate` is derived from it and the layout (see
    /// [`Layout::deliveries_per_message_round`]) unless `--rate` is given.
    pub deliveries_per_second: Option<f64>,
    pub in_flight: usize,
    /// Messages each sender posts over REST during setup, before any socket opens.
    pub base_messages: usize,
}

impl Scenario {
    /// Users when `--users` is not given.
    pub fn default_users(self) -> usize {
        match self {
            Scenario::Chat | Scenario::SmallWindowIngest => 50,
            Scenario::Ingest => 8,
            Scenario::Edits => 100,
            Scenario::Presence => 10_000,
            Scenario::Fanout
            | Scenario::ManyRooms
            | Scenario::Idle
            | Scenario::LargeRoom
            | Scenario::Rooms => 1000,
        }
    }

    /// Defaults for this scenario, given whatever `--users` / `--rooms` were set explicitly
    /// (senders and rooms scale with them).
    pub fn defaults(self, users: Option<usize>, rooms: Option<usize>) -> Defaults {
        let users = users.unwrap_or(self.default_users());
        let per_room = |members: usize| (users / members).max(1);
        let rooms = rooms
            .unwrap_or(match self {
                Scenario::Chat | Scenario::SmallWindowIngest => 5,
                Scenario::Fanout | Scenario::LargeRoom | Scenario::Presence => 1,
                Scenario::ManyRooms => users / 5,
                Scenario::Ingest => 4,
                Scenario::Idle | Scenario::Rooms => per_room(100),
                Scenario::Edits => per_room(10),
            })
            .clamp(1, users.max(1));
        let senders = match self {
            Scenario::Chat => (users / 5).max(1),
            Scenario::Fanout => users.min(5),
            Scenario::LargeRoom => users.min(10),
            Scenario::ManyRooms => rooms,
            Scenario::Rooms | Scenario::Edits => users.min(rooms * 2),
            Scenario::Ingest | Scenario::SmallWindowIngest => users,
            Scenario::Idle | Scenario::Presence => 0,
        };
        let (rate, in_flight) = match self {
            Scenario::Chat | Scenario::ManyRooms | Scenario::LargeRoom | Scenario::Rooms => {
                (1.0, 8)
            }
            Scenario::Fanout => (2.0, 8),
            Scenario::Edits => (10.0, 4),
            Scenario::Ingest => (0.0, 64),
            Scenario::SmallWindowIngest => (0.0, 8),
            Scenario::Idle | Scenario::Presence => (0.0, 1),
        };
        let deliveries_per_second = match self {
            Scenario::LargeRoom => Some(40_000.0),
            Scenario::Rooms => Some(20_000.0),
            _ => None,
        };
        Defaults {
            users,
            rooms,
            senders,
            rate,
            deliveries_per_second,
            in_flight,
            base_messages: if self == Scenario::Edits { 16 } else { 0 },
        }
    }

    /// Whether the senders change earlier messages (REST edits and reactions, delivered as
    /// `message.updated`) rather than send new ones.
    pub fn makes_changes(self) -> bool {
        self == Scenario::Edits
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Chat => "chat",
            Scenario::Fanout => "fanout",
            Scenario::ManyRooms => "many-rooms",
            Scenario::Ingest => "ingest",
            Scenario::Idle => "idle",
            Scenario::LargeRoom => "large-room",
            Scenario::Rooms => "rooms",
            Scenario::SmallWindowIngest => "small-window-ingest",
            Scenario::Presence => "presence",
            Scenario::Edits => "edits",
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
        let rooms = self.rooms.max(1);
        if room >= rooms {
            return 0;
        }
        self.users / rooms + usize::from(room < self.users % rooms)
    }

    /// Deliveries when every sender sends one message: each reaches every subscriber of
    /// its room, itself included. A per-sender rate `r` gives `r ×` this deliveries/s.
    pub fn deliveries_per_message_round(&self) -> usize {
        (0..self.senders.min(self.users))
            .map(|sender| self.subscribers_in(self.room_of(sender)))
            .sum()
    }

    /// The per-sender rate that offers `deliveries_per_second` with this layout.
    pub fn rate_for(&self, deliveries_per_second: f64) -> Option<f64> {
        let round = self.deliveries_per_message_round();
        (round > 0).then(|| deliveries_per_second / round as f64)
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

    #[test]
    fn the_issue_shapes_have_their_sizes() {
        let large = Scenario::LargeRoom.defaults(None, None);
        assert_eq!((large.users, large.rooms, large.senders), (1000, 1, 10));
        let rooms = Scenario::Rooms.defaults(None, None);
        assert_eq!((rooms.users, rooms.rooms, rooms.senders), (1000, 10, 20));
        let small = Scenario::SmallWindowIngest.defaults(None, None);
        assert_eq!(
            (small.users, small.rooms, small.senders, small.in_flight),
            (50, 5, 50, 8)
        );
        assert_eq!(small.rate, 0.0);
        let idle = Scenario::Idle.defaults(Some(5000), None);
        assert_eq!(idle.rooms, 50, "100 members per room");
        let presence = Scenario::Presence.defaults(None, None);
        assert_eq!(
            (presence.users, presence.rooms, presence.senders),
            (10_000, 1, 0)
        );
        let edits = Scenario::Edits.defaults(None, None);
        assert_eq!(
            (edits.users, edits.rooms, edits.senders, edits.in_flight),
            (100, 10, 20, 4)
        );
        assert_eq!((edits.rate, edits.base_messages), (10.0, 16));
        assert_eq!(Scenario::Rooms.defaults(None, None).base_messages, 0);
    }

    #[test]
    fn subscribers_and_deliveries_follow_the_layout() {
        let layout = Layout {
            users: 1000,
            rooms: 10,
            senders: 20,
        };
        assert_eq!(layout.deliveries_per_message_round(), 2000);
        assert_eq!(layout.rate_for(20_000.0), Some(10.0));
        let large = Layout {
            users: 1000,
            rooms: 1,
            senders: 10,
        };
        assert_eq!(large.rate_for(70_000.0), Some(7.0));
        let uneven = Layout {
            users: 10,
            rooms: 3,
            senders: 2,
        };
        assert_eq!(
            (0..4).map(|r| uneven.subscribers_in(r)).collect::<Vec<_>>(),
            [4, 3, 3, 0]
        );
        assert_eq!(uneven.deliveries_per_message_round(), 7);
        let silent = Layout {
            senders: 0,
            ..uneven
        };
        assert_eq!(silent.rate_for(100.0), None);
    }
}
