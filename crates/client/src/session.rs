//! [`Session`]: a WebSocket session on its own task that survives disconnects: it resumes
//! each room with `since_seq`/`since_rev` (backoff with jitter), delivers each room's
//! messages once and in `seq` order, applies `message.updated` by `rev`, and re-sends unacked
//! messages with the same `client_msg_id` so they are stored once.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nebula_wire::{ClientEvent, Message, Rev, Seq, ServerEvent};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

use crate::socket::Socket;
use crate::{Client, Error, Result};

impl Client {
    /// A WebSocket session with this client's token (log in first).
    pub fn session(&self) -> Session {
        Session::start(self.clone())
    }
}

/// What a session reports.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// A new message: once per message, in `seq` order per room.
    Message(Message),
    /// A newer version (`rev`) of a message already delivered.
    Updated(Message),
    /// The socket is open (again); the rooms are being resubscribed.
    Connected,
    Disconnected,
    /// Every server event as received (typing, presence, members, calls…).
    Server(ServerEvent),
}

enum Command {
    Subscribe(Uuid),
    Send {
        room_id: Uuid,
        content: String,
        client_msg_id: String,
        reply_to: Option<String>,
        answer: oneshot::Sender<Result<Message>>,
    },
    Disconnect,
    Pause,
    Resume,
}

/// A WebSocket session running on its own task; dropping it (or every clone) ends it.
#[derive(Clone)]
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    events: std::sync::Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<SessionEvent>>>,
}

impl Session {
    fn start(client: Client) -> Session {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(
            Worker {
                client,
                rooms: HashMap::new(),
                pending: HashMap::new(),
                events: event_tx,
                commands: command_rx,
                attempt: 0,
                paused: false,
            }
            .run(),
        );
        Session {
            commands,
            events: std::sync::Arc::new(tokio::sync::Mutex::new(events)),
        }
    }

    /// Follows a room from now on (and across reconnects).
    pub fn subscribe(&self, room_id: Uuid) {
        let _ = self.commands.send(Command::Subscribe(room_id));
    }

    /// Sends a message; resolves with the stored message on its ack. Re-sent with the same
    /// `client_msg_id` after a disconnect, so it is stored once.
    pub async fn send(&self, room_id: Uuid, content: &str) -> Result<Message> {
        self.send_with(room_id, content, Uuid::now_v7().to_string(), None)
            .await
    }

    pub async fn send_with(
        &self,
        room_id: Uuid,
        content: &str,
        client_msg_id: String,
        reply_to: Option<Uuid>,
    ) -> Result<Message> {
        let (answer, answered) = oneshot::channel();
        self.commands
            .send(Command::Send {
                room_id,
                content: content.to_owned(),
                client_msg_id,
                reply_to: reply_to.map(|id| id.to_string()),
                answer,
            })
            .map_err(|_| Error::Closed)?;
        answered.await.map_err(|_| Error::Closed)?
    }

    /// Drops the connection as a network failure would (it reconnects and resumes).
    pub fn disconnect(&self) {
        let _ = self.commands.send(Command::Disconnect);
    }

    /// Drops the connection and stays offline until `resume` (sends wait for it).
    pub fn pause(&self) {
        let _ = self.commands.send(Command::Pause);
    }

    /// Reconnects after `pause`, resuming every room where it was.
    pub fn resume(&self) {
        let _ = self.commands.send(Command::Resume);
    }

    /// The next event; `None` once the session has ended.
    pub async fn next_event(&self) -> Option<SessionEvent> {
        self.events.lock().await.recv().await
    }
}

#[derive(Default)]
struct RoomState {
    /// Highest `seq` delivered in order; `None` until the first `subscribed`.
    seq: Option<Seq>,
    /// The rev it is safe to resume from.
    rev: Rev,
    subscribed: bool,
    last_seq_at_subscribe: Seq,
    revs: HashMap<Uuid, Rev>,
    early: BTreeMap<Seq, Message>,
}

struct Pending {
    frame: ClientEvent,
    answer: oneshot::Sender<Result<Message>>,
}

struct Worker {
    client: Client,
    rooms: HashMap<Uuid, RoomState>,
    pending: HashMap<String, Pending>,
    events: mpsc::UnboundedSender<SessionEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    attempt: u32,
    paused: bool,
}

enum Ended {
    Lost,
    Finished,
}

impl Worker {
    async fn run(mut self) {
        loop {
            while self.paused {
                match self.commands.recv().await {
                    None => return,
                    Some(command) => {
                        self.command(command, None).await;
                    }
                }
            }
            if let Ok(connection) = self.client.connect("/ws").await {
                let socket = connection.into_inner();
                self.attempt = 0;
                let _ = self.events.send(SessionEvent::Connected);
                let ended = self.connected(socket).await;
                for room in self.rooms.values_mut() {
                    room.subscribed = false;
                }
                let _ = self.events.send(SessionEvent::Disconnected);
                if matches!(ended, Ended::Finished) {
                    return;
                }
            }
            // Exponential backoff with jitter (half to all of the step); commands keep coming.
            let step = 200u64.saturating_mul(1 << self.attempt.min(6)).min(10_000);
            self.attempt += 1;
            let jitter = RandomState::new().hash_one(self.attempt) % (step / 2 + 1);
            let wake = tokio::time::sleep(Duration::from_millis(step / 2 + jitter));
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    () = &mut wake => break,
                    command = self.commands.recv() => match command {
                        None => return,
                        Some(command) => { self.command(command, None).await; }
                    },
                }
            }
        }
    }

    async fn connected(&mut self, mut socket: Socket) -> Ended {
        let rooms: Vec<Uuid> = self.rooms.keys().copied().collect();
        for room_id in rooms {
            if write(&mut socket, &self.subscribe_frame(room_id))
                .await
                .is_err()
            {
                return Ended::Lost;
            }
        }
        let mut ping = tokio::time::interval(Duration::from_secs(20));
        ping.tick().await;
        let mut heard = true;
        loop {
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(tungstenite::Message::Text(text))) => {
                        heard = true;
                        if let Ok(event) = serde_json::from_str::<ServerEvent>(&text)
                            && self.handle(event, &mut socket).await.is_err()
                        {
                            return Ended::Lost;
                        }
                    }
                    Some(Ok(tungstenite::Message::Close(_))) | Some(Err(_)) | None => return Ended::Lost,
                    Some(Ok(_)) => heard = true,
                },
                command = self.commands.recv() => match command {
                    None => return Ended::Finished,
                    Some(command) => {
                        if !self.command(command, Some(&mut socket)).await {
                            return Ended::Lost;
                        }
                    }
                },
                _ = ping.tick() => {
                    // A silent network is noticed by an unanswered ping.
                    if !heard || write(&mut socket, &ClientEvent::Ping).await.is_err() {
                        return Ended::Lost;
                    }
                    heard = false;
                }
            }
        }
    }

    /// Applies a command; false when the socket failed (or should be dropped).
    async fn command(&mut self, command: Command, socket: Option<&mut Socket>) -> bool {
        match command {
            Command::Subscribe(room_id) => {
                self.rooms.entry(room_id).or_default();
                match socket {
                    Some(socket) => write(socket, &self.subscribe_frame(room_id)).await.is_ok(),
                    None => true,
                }
            }
            Command::Send {
                room_id,
                content,
                client_msg_id,
                reply_to,
                answer,
            } => {
                let frame = ClientEvent::MessageSend {
                    room_id,
                    content,
                    client_msg_id: Some(client_msg_id.clone()),
                    reply_to,
                    attachments: None,
                };
                let ready = self.rooms.get(&room_id).is_none_or(|room| room.subscribed);
                let sent = match socket {
                    Some(socket) if ready => write(socket, &frame).await.is_ok(),
                    _ => true,
                };
                self.pending
                    .insert(client_msg_id, Pending { frame, answer });
                sent
            }
            Command::Disconnect => false,
            Command::Pause => {
                self.paused = true;
                false
            }
            Command::Resume => {
                self.paused = false;
                true
            }
        }
    }

    fn subscribe_frame(&self, room_id: Uuid) -> ClientEvent {
        let room = self.rooms.get(&room_id);
        let since_seq = room.and_then(|room| room.seq);
        ClientEvent::Subscribe {
            room_id,
            since_seq,
            since_rev: since_seq.and(room.map(|room| room.rev)),
        }
    }

    async fn handle(&mut self, event: ServerEvent, socket: &mut Socket) -> tungstenite::Result<()> {
        let _ = self.events.send(SessionEvent::Server(event.clone()));
        match event {
            ServerEvent::Subscribed {
                room_id,
                last_seq,
                last_rev,
                ..
            } => {
                let Some(room) = self.rooms.get_mut(&room_id) else {
                    return Ok(());
                };
                room.subscribed = true;
                room.last_seq_at_subscribe = last_seq;
                if room.seq.is_none() {
                    room.seq = Some(last_seq);
                    room.rev = last_rev;
                }
                let frames: Vec<ClientEvent> = self
                    .pending
                    .values()
                    .filter(|p| p.frame.room_id() == Some(room_id))
                    .map(|p| p.frame.clone())
                    .collect();
                for frame in frames {
                    write(socket, &frame).await?;
                }
            }
            ServerEvent::MessageNew { message } => self.new_message(message, false),
            ServerEvent::MessageAck {
                client_msg_id,
                message,
            } => {
                if let Some(pending) = client_msg_id.and_then(|id| self.pending.remove(&id)) {
                    let _ = pending.answer.send(Ok(message.clone()));
                }
                self.new_message(message, true);
            }
            ServerEvent::MessageUpdated { message } => {
                let Some(room) = self.rooms.get_mut(&message.room_id) else {
                    return Ok(());
                };
                // Updates come in rev order: every change up to this rev has been seen.
                room.rev = room.rev.max(message.rev);
                let newer = room
                    .revs
                    .get(&message.id)
                    .is_none_or(|rev| *rev < message.rev);
                if newer {
                    room.revs.insert(message.id, message.rev);
                    if room.seq.is_some_and(|seq| message.seq <= seq) {
                        let _ = self.events.send(SessionEvent::Updated(message));
                    }
                }
            }
            ServerEvent::Error {
                code,
                message,
                reference: Some(reference),
            } => {
                if code == "rate_limited" {
                    return Ok(());
                }
                if let Some(pending) = self.pending.remove(&reference) {
                    let _ = pending.answer.send(Err(Error::Refused { code, message }));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn new_message(&mut self, message: Message, from_ack: bool) {
        let Some(room) = self.rooms.get_mut(&message.room_id) else {
            return;
        };
        let Some(seq) = room.seq else {
            return;
        };
        if message.seq <= seq {
            // A repeat (a replay, or the ack of our own message): maybe a newer version.
            if room
                .revs
                .get(&message.id)
                .is_some_and(|rev| *rev < message.rev)
            {
                room.revs.insert(message.id, message.rev);
                let _ = self.events.send(SessionEvent::Updated(message));
            }
            return;
        }
        let keep = room
            .early
            .get(&message.seq)
            .is_none_or(|early| early.rev < message.rev);
        if keep {
            room.early.insert(message.seq, message);
        }
        while let Some(next) = room.early.remove(&(room.seq.unwrap_or(0) + 1)) {
            room.seq = Some(next.seq);
            // Replayed messages must not move the resume rev (see docs/WEBSOCKET.md).
            if !from_ack && room.subscribed && next.seq > room.last_seq_at_subscribe {
                room.rev = room.rev.max(next.rev);
            }
            let rev = room.revs.entry(next.id).or_insert(next.rev);
            *rev = (*rev).max(next.rev);
            let _ = self.events.send(SessionEvent::Message(next));
        }
    }
}

async fn write(socket: &mut Socket, event: &ClientEvent) -> tungstenite::Result<()> {
    // Serializing a wire type cannot fail.
    let text = serde_json::to_string(event).unwrap_or_default();
    socket.send(tungstenite::Message::text(text)).await
}
