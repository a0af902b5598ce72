//! What the server does with each client event.

use std::future::Future;
use std::pin::Pin;

use nebula_wire::{ClientEvent, Rev, Seq, ServerEvent, TypingState};
use tracing::Instrument;
use uuid::Uuid;

use super::close::CloseReason;
use super::connection::Connection;
use super::outbound::Position;
use crate::access::{explain_refusal, member_room, resolve_reply};
use crate::domain::{MessageBody, parse_client_msg_id};
use crate::error::ApiError;
use crate::hub::Subscriber;
use crate::store::{NewMessage, Posted};
use crate::writer::{Ticket, WriteError};

/// The fields of a `message.send` besides its room.
pub(super) struct Outgoing {
    content: String,
    client_msg_id: Option<String>,
    reply_to: Option<String>,
    attachments: Option<Vec<String>>,
}

/// A submitted `message.send` waiting for its commit.
pub(super) type PendingSend = Pin<Box<dyn Future<Output = SendOutcome> + Send>>;

/// The result of one `message.send`, turned into `message.ack` or `error`.
pub(super) struct SendOutcome {
    client_msg_id: Option<String>,
    room_id: Uuid,
    result: Result<Posted, WriteError>,
}

impl SendOutcome {
    pub(super) fn into_event(self) -> ServerEvent {
        match self.result {
            Ok(posted) => {
                let message = posted.message().clone();
                ServerEvent::MessageAck {
                    client_msg_id: self.client_msg_id,
                    message,
                }
            }
            Err(err) => {
                ApiError::from(err).ws_error(self.client_msg_id.or(Some(self.room_id.to_string())))
            }
        }
    }
}

impl Connection {
    /// Parses and dispatches one text frame.
    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), CloseReason> {
        let event = match serde_json::from_str::<ClientEvent>(text) {
            Ok(event) => event,
            Err(err) => {
                return self
                    .reject(
                        ApiError::InvalidEvent(format!("unreadable event: {err}")),
                        None,
                    )
                    .await;
            }
        };
        if !matches!(event, ClientEvent::MessageSend { .. })
            && let Err(err) = self.spend_frame_budget().await
        {
            let reference = event.room_id().map(|room_id| room_id.to_string());
            return self.reject(err, reference).await;
        }
        match event {
            ClientEvent::Subscribe {
                room_id,
                since_seq,
                since_rev,
            } => Box::pin(self.subscribe(room_id, since_seq, since_rev)).await,
            ClientEvent::Unsubscribe { room_id } => {
                self.drop_subscription(room_id);
                self.send_event(&ServerEvent::Unsubscribed { room_id })
                    .await
            }
            ClientEvent::MessageSend {
                room_id,
                content,
                client_msg_id,
                reply_to,
                attachments,
            } => {
                let body = Outgoing {
                    content,
                    client_msg_id,
                    reply_to,
                    attachments,
                };
                self.send_message(room_id, body).await
            }
            ClientEvent::Typing { room_id, state } => self.typing(room_id, state).await,
            ClientEvent::Read { room_id, seq } => Box::pin(self.read(room_id, seq)).await,
            ClientEvent::Ping => self.send_event(&ServerEvent::Pong).await,
            ClientEvent::CallInvite { .. }
            | ClientEvent::CallAnswer { .. }
            | ClientEvent::CallCandidate { .. }
            | ClientEvent::CallReject { .. }
            | ClientEvent::CallHangup { .. } => Box::pin(self.call(event)).await,
        }
    }

    /// A call signalling event (see `crate::calls`); refused ones get an `error` whose `ref`
    /// is the `call_id`.
    async fn call(&mut self, event: ClientEvent) -> Result<(), CloseReason> {
        let reference = event.call_id().map(|call_id| call_id.to_string());
        let calls = self.state.calls.clone();
        let store = self.state.store.clone();
        match calls.handle(&store, &self.user, self.id, event).await {
            Ok(()) => Ok(()),
            Err(err) => self.reject(err, reference).await,
        }
    }

    /// Subscribes to a room: live interest is registered *before* the room's last seq and rev
    /// are read, so everything committed later arrives live; what the client missed before
    /// that is replayed (`Connection::catch_up`: new messages after `since_seq`, then changes
    /// after `since_rev` of the older ones), and the rev filter in `deliver` drops whatever
    /// the replay already covered. No gap, no duplicate, nothing out of order.
    pub(super) async fn subscribe(
        &mut self,
        room_id: Uuid,
        since_seq: Option<Seq>,
        since_rev: Option<Rev>,
    ) -> Result<(), CloseReason> {
        let reference = Some(room_id.to_string());
        if let Err(err) = member_room(&self.state.store, room_id, self.user.id).await {
            return self.reject(err, reference).await;
        }
        let newly = self.out.cursor(room_id).is_none();
        if newly && self.out.room_count() >= self.state.config.config.ws_max_subscriptions {
            return self.reject(ApiError::TooManySubscriptions, reference).await;
        }
        // Until the replay is done, live events for the room are handed to this task (which
        // handles them after this returns) instead of being written by the fan-out.
        self.out.open_room(room_id);
        self.forget_held(room_id);
        let mut came_online = false;
        let positions = if newly {
            let subscriber = Subscriber {
                user_id: self.user.id,
                out: self.out.clone(),
            };
            let store = self.state.store.clone();
            let subscribed = self
                .state
                .bus
                .subscribe(&store, room_id, self.id, subscriber)
                .await;
            if let Ok(Some(_)) = subscribed {
                metrics::gauge!("nebula_ws_subscriptions").increment(1.0);
                came_online = self.state.presence.count_connected(room_id, &self.user);
            } else {
                // Not registered (the bus undid it): forget the room without unsubscribing.
                self.out.remove_room(room_id);
            }
            subscribed.map(|state| {
                state.map(|state| Position {
                    seq: state.last_seq,
                    rev: state.last_rev,
                })
            })
        } else {
            self.state
                .store
                .room_positions(room_id)
                .await
                .map(|(seq, rev)| Some(Position { seq, rev }))
        };
        let last = match positions {
            Ok(Some(last)) => last,
            // Removed from the room while subscribing.
            Ok(None) => {
                let err = ApiError::NotAMember {
                    status: axum::http::StatusCode::FORBIDDEN,
                };
                return self.reject(err, reference).await;
            }
            Err(err) => {
                if !newly {
                    self.drop_subscription(room_id);
                }
                let api: ApiError = err.into();
                return self.send_event(&api.ws_error(reference)).await;
            }
        };
        let online = self
            .state
            .presence
            .online(
                room_id,
                None,
                self.state.config.config.subscribed_online_max,
            )
            .await;
        let answered = self
            .send_event(&ServerEvent::Subscribed {
                room_id,
                last_seq: last.seq,
                last_rev: last.rev,
                online: online.users,
                online_count: online.total,
            })
            .await;
        // After the answer: announcing writes to every subscriber of the room (see
        // `Presence::count_connected`); made whatever became of the answer, so an offline
        // announcement never comes without its online one.
        if came_online {
            self.state.presence.announce_online(room_id, &self.user);
        }
        answered?;
        // Without `since_seq` no message is replayed, without `since_rev` no change.
        let from = Position {
            seq: since_seq.unwrap_or(last.seq),
            rev: since_rev.unwrap_or(last.rev),
        };
        self.catch_up(room_id, from, last).await?;
        self.out.set_position(room_id, last);
        self.resume_direct(room_id);
        Ok(())
    }

    async fn send_message(&mut self, room_id: Uuid, body: Outgoing) -> Result<(), CloseReason> {
        let Outgoing {
            content,
            client_msg_id,
            reply_to,
            attachments,
        } = body;
        let reference = client_msg_id.clone().or_else(|| Some(room_id.to_string()));
        let parsed = MessageBody::parse(
            &content,
            attachments.as_deref(),
            self.state.config.config.message_max_chars,
        )
        .and_then(|body| Ok((body, parse_client_msg_id(client_msg_id.as_deref())?)));
        let (body, client_msg_id) = match parsed {
            Ok(parsed) => parsed,
            Err(err) => {
                return self.reject(err, reference).await;
            }
        };
        if let Err(err) = self.ensure_member(room_id).await {
            return self.reject(err, reference).await;
        }
        let reply_to = match reply_to {
            None => None,
            Some(raw) => match Box::pin(resolve_reply(&self.state.store, room_id, &raw)).await {
                Ok(target) => Some(target),
                Err(err) => return self.reject(err, reference).await,
            },
        };
        let attachments = if body.attachments.is_empty() {
            Vec::new()
        } else {
            match crate::media::attachments(&self.state.store, &body.attachments, self.user.id)
                .await
            {
                Ok(media) => media,
                Err(err) => return self.reject(err, reference).await,
            }
        };
        if let Err(err) = self.state.limits.check_message(self.user.id).await {
            return self.reject(err, reference).await;
        }
        let content = body.content.into_inner();
        // No query unless the content has an `@`.
        let mentions = match crate::mentions::resolve(&self.state.store, room_id, &content).await {
            Ok(mentions) => mentions,
            Err(err) => return self.reject(err.into(), reference).await,
        };
        let message = NewMessage {
            room_id,
            sender_id: self.user.id,
            sender_username: self.user.username.clone(),
            content,
            client_msg_id: client_msg_id.clone(),
            reply_to,
            attachments,
            mentions,
        };
        // The root of the message's trace, when traces are exported (the writer's commit and
        // the bus publication are its children). A root, not a child of the connection's span:
        // a socket lives for hours and would make one trace of everything sent on it.
        let span = if nebula_notifier::otel::enabled() {
            tracing::info_span!(parent: None, "ws.message.send", %room_id, user_id = %self.user.id)
        } else {
            tracing::Span::none()
        };
        // Submitted now, in frame order; the ack is sent when the commit completes.
        let ticket: Result<Ticket, WriteError> =
            self.state.writers.submit(message).instrument(span).await;
        // A block between the users of a direct room is checked in the commit (no query here on
        // the hot path); a refusal is then told as `cannot_message_user`.
        let store = self.state.store.clone();
        self.pending.push(Box::pin(async move {
            let result = match ticket {
                Ok(ticket) => explain_refusal(&store, room_id, ticket.wait().await).await,
                Err(err) => Err(err),
            };
            SendOutcome {
                client_msg_id,
                room_id,
                result,
            }
        }));
        Ok(())
    }

    /// Typing goes through the node's coalescer: at most one relay per second per user and
    /// room, and the latest state always follows.
    async fn typing(&mut self, room_id: Uuid, state: TypingState) -> Result<(), CloseReason> {
        if let Err(err) = self.ensure_member(room_id).await {
            return self.reject(err, Some(room_id.to_string())).await;
        }
        self.state.typing.update(room_id, &self.user, state);
        Ok(())
    }

    async fn read(&mut self, room_id: Uuid, seq: Seq) -> Result<(), CloseReason> {
        let reference = Some(room_id.to_string());
        if seq < 0 {
            return self
                .reject(
                    ApiError::validation("seq", "must not be negative"),
                    reference,
                )
                .await;
        }
        if let Err(err) = self.ensure_member(room_id).await {
            return self.reject(err, reference).await;
        }
        if let Err(err) = self.state.store.mark_read(room_id, self.user.id, seq).await {
            let api: ApiError = err.into();
            return self.send_event(&api.ws_error(reference)).await;
        }
        self.state.bus.publish(
            room_id,
            &ServerEvent::Read {
                room_id,
                user_id: self.user.id,
                seq,
            },
            None,
        );
        Ok(())
    }

    /// Takes one frame from this connection's budget and then from its user's (shared by all
    /// their connections, on every node). Message sends have their own limit instead.
    async fn spend_frame_budget(&mut self) -> Result<(), ApiError> {
        if !self
            .budget
            .take(self.state.config.config.ws_frames_per_second)
        {
            metrics::counter!("nebula_rate_limited_total", "limit" => "ws_frames").increment(1);
            return Err(ApiError::RateLimited {
                retry_after_secs: 1,
            });
        }
        Box::pin(self.state.limits.check_frame(self.user.id)).await
    }

    /// Membership for an action: a subscription proves it (it is dropped when the user leaves),
    /// otherwise the database is asked (boxed: see `Connection::serve`).
    fn ensure_member(
        &self,
        room_id: Uuid,
    ) -> impl Future<Output = Result<(), ApiError>> + Send + 'static {
        let subscribed = self.out.cursor(room_id).is_some();
        let (store, user_id) = (self.state.store.clone(), self.user.id);
        async move {
            if subscribed {
                return Ok(());
            }
            Box::pin(member_room(&store, room_id, user_id))
                .await
                .map(|_| ())
        }
    }
}
