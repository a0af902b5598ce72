//! Call signalling: `call.invite` / `.answer` / `.candidate` / `.reject` / `.hangup` relayed
//! between two users' connections on any node. Nothing is stored in the database.
//!
//! Design (see docs/WEBSOCKET.md, "Calls"):
//! - A call is **owned by the caller's node**: the node of the connection that sent
//!   `call.invite` keeps the call's state ([`Call`]: the caller's connection, the callee, which
//!   callee connection answered) and its ring timer. It alone decides what happens to the call,
//!   so two answers on two nodes cannot both win.
//! - Events are **addressed to users, or to one connection** (`node`, `conn`), never to rooms.
//!   Every node keeps its open connections per user ([`Calls::register`]). In a cluster (Redis or
//!   NATS), every signalling envelope goes over one cluster-wide channel (`{prefix}:calls`); each node
//!   delivers what is addressed to its own connections and ignores the rest (call traffic is
//!   a few small frames per call, so one shared channel costs less than a channel per user).
//! - A node that delivered an invite to its connections remembers which node owns that call,
//!   so the callee's `call.answer` / `.candidate` / `.reject` / `.hangup` go to the owner as a
//!   request ([`Envelope::Request`]); the owner checks it and relays.
//! - The first `call.answer` wins: the owner pins the callee's side to that connection and sends
//!   the callee's other connections `call.hangup {call_id, reason: "answered_elsewhere"}`.
//! - An invite not answered within `CALL_RING_TIMEOUT_SECONDS` ends with `call.hangup
//!   {call_id, reason: "timeout"}` to both sides; a party's connection closing ends the call
//!   with `reason: "disconnected"` to the other side.
//!
//! - A connection that opens while a call rings for its user gets the `call.invite` too
//!   ([`Envelope::Opened`], answered by the owner node).
//! - A callee with **no open connection** anywhere (`Presence::user_connected`) gets a Web Push
//!   "incoming call" instead: the invite queues an outbox row (its own small transaction; the
//!   call itself is still not stored) that the relay publishes like any notification, so the
//!   one path serves both the broker and the in-process mode. The push carries the ring's
//!   end (`expires_at`, also its TTL) and is not sent once the ring is over.
//!
//! If the owner node dies, its calls die with it (the caller's connection was on it); the
//! callee's connections stop hearing about the call and a later event gets `call_not_found`.

pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use nebula_wire::notify::{CallNotification, UserRef};
use nebula_wire::{CallMedia, ClientEvent, ServerEvent, User};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cluster::{Cluster, channel};
use crate::error::ApiError;
use crate::gateway::outbound::Outbound;
use crate::hub::ConnId;
use crate::presence::Presence;
use crate::store::Store;

pub use policy::may_call;

/// One connection anywhere in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Addr {
    #[serde(rename = "n")]
    node: Uuid,
    #[serde(rename = "c")]
    conn: ConnId,
}

/// What travels between nodes (and what a node applies to itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Envelope {
    /// Write `event` to `user`'s connections (only `only`, or all but `except`). With
    /// `owner`, the nodes that deliver remember that `owner` runs this call.
    Deliver {
        user: Uuid,
        call_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        only: Option<Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Uuid>,
        event: String,
    },
    /// An event of a call's party, for the node that owns the call.
    Request {
        owner: Uuid,
        from: Addr,
        user: User,
        event: ClientEvent,
        /// The connection closed (`event` is then a `call.hangup`).
        #[serde(default)]
        disconnected: bool,
    },
    /// The call is over: nodes forget who owned it.
    Ended { call_id: Uuid },
    /// A connection of `user` opened at `at`: the owners of calls ringing for that user send
    /// it their `call.invite`, so a device that comes online mid-ring rings too.
    Opened { user: Uuid, at: Addr },
}

#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    /// The publishing node, which applied the envelope already and ignores its echo.
    o: Uuid,
    e: Envelope,
}

/// A call this node owns.
#[derive(Debug)]
struct Call {
    caller: User,
    caller_conn: ConnId,
    callee: Uuid,
    answered: Option<Addr>,
    timer: AbortHandle,
    /// The `call.invite` event as the callee's connections got it, for one that opens later.
    invite: String,
}

/// A call ringing (or answered on) a local connection, owned by `owner`.
#[derive(Debug, Clone, Copy)]
struct Known {
    owner: Uuid,
    user: Uuid,
}

#[derive(Debug, Default)]
struct State {
    /// Open connections per user on this node.
    conns: HashMap<Uuid, HashMap<ConnId, Arc<Outbound>>>,
    owned: HashMap<Uuid, Call>,
    known: HashMap<Uuid, Known>,
}

#[derive(Debug)]
struct Inner {
    node: Uuid,
    ring_timeout: Duration,
    /// Whether a callee has a connection anywhere (else they get a Web Push).
    presence: Arc<Presence>,
    outgoing: Option<mpsc::UnboundedSender<Vec<u8>>>,
    state: Mutex<State>,
    /// Itself, for the ring timers.
    this: Weak<Inner>,
}

/// The call signalling service of this node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Calls(Arc<Inner>);

impl Calls {
    /// Starts the service; with a cluster, also the tasks that carry envelopes over the
    /// cluster engine
    /// (returns once the channel subscription is confirmed, or after a short wait).
    pub async fn start(
        cluster: Option<&Cluster>,
        presence: Arc<Presence>,
        ring_timeout: Duration,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Calls {
        let node = cluster.map_or_else(Uuid::new_v4, |cluster| cluster.node_id);
        let (outgoing, outgoing_rx) = match cluster {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let inner = Arc::new_cyclic(|this| Inner {
            node,
            ring_timeout,
            presence,
            outgoing,
            state: Mutex::new(State::default()),
            this: this.clone(),
        });
        if let (Some(cluster), Some(outgoing_rx)) = (cluster, outgoing_rx) {
            let calls = Arc::downgrade(&inner);
            channel::open(
                cluster,
                cluster.key(format_args!("calls")),
                "calls",
                outgoing_rx,
                || {},
                move |payload| {
                    let Some(calls) = calls.upgrade() else {
                        return false;
                    };
                    calls.receive(payload);
                    true
                },
                shutdown,
                tasks,
            )
            .await;
        }
        Calls(inner)
    }

    /// A connection opened: call events for its user may be written to it, starting with
    /// the invite of any call ringing for the user right now (on whatever node owns it).
    pub fn register(&self, user_id: Uuid, conn: ConnId, out: Arc<Outbound>) {
        self.0
            .lock()
            .conns
            .entry(user_id)
            .or_default()
            .insert(conn, out);
        self.0.publish(Envelope::Opened {
            user: user_id,
            at: Addr {
                node: self.0.node,
                conn,
            },
        });
    }

    /// A connection closed: it hears no more, and the calls it took part in end (for the
    /// other party: `call.hangup` with `reason: "disconnected"`).
    pub fn unregister(&self, user: &User, conn: ConnId) {
        let from = Addr {
            node: self.0.node,
            conn,
        };
        let mut requests = Vec::new();
        {
            let mut state = self.0.lock();
            if let Some(conns) = state.conns.get_mut(&user.id) {
                conns.remove(&conn);
                if conns.is_empty() {
                    state.conns.remove(&user.id);
                }
            }
            let owned = state
                .owned
                .iter()
                .filter(|(_, call)| call.caller.id == user.id || call.callee == user.id)
                .map(|(call_id, _)| (*call_id, self.0.node));
            let known = state
                .known
                .iter()
                .filter(|(_, known)| known.user == user.id)
                .map(|(call_id, known)| (*call_id, known.owner));
            for (call_id, owner) in owned.chain(known).collect::<Vec<_>>() {
                requests.push(Envelope::Request {
                    owner,
                    from,
                    user: user.clone(),
                    event: ClientEvent::CallHangup { call_id },
                    disconnected: true,
                });
            }
        }
        for request in requests {
            self.0.publish(request);
        }
    }

    /// Handles a call event from connection `conn` of `user`. An error is for the connection
    /// to send back (as a WebSocket `error`).
    pub async fn handle(
        &self,
        store: &Store,
        user: &User,
        conn: ConnId,
        event: ClientEvent,
    ) -> Result<(), ApiError> {
        let from = Addr {
            node: self.0.node,
            conn,
        };
        if let ClientEvent::CallInvite {
            call_id,
            to_user_id,
            media,
            sdp,
        } = event
        {
            return self
                .invite(store, user, from, call_id, to_user_id, media, sdp)
                .await;
        }
        if let ClientEvent::CallAnswer { sdp, .. } = &event
            && sdp.trim().is_empty()
        {
            return Err(ApiError::validation("sdp", "must not be empty"));
        }
        let Some(call_id) = event.call_id() else {
            return Err(ApiError::InvalidEvent("not a call event".into()));
        };
        let owner = {
            let state = self.0.lock();
            if state.owned.contains_key(&call_id) {
                self.0.node
            } else {
                match state.known.get(&call_id) {
                    Some(known) if known.user == user.id => known.owner,
                    _ => return Err(ApiError::CallNotFound),
                }
            }
        };
        self.0.publish(Envelope::Request {
            owner,
            from,
            user: user.clone(),
            event,
            disconnected: false,
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn invite(
        &self,
        store: &Store,
        caller: &User,
        from: Addr,
        call_id: Uuid,
        callee: Uuid,
        media: CallMedia,
        sdp: String,
    ) -> Result<(), ApiError> {
        if callee == caller.id {
            return Err(ApiError::validation(
                "to_user_id",
                "you cannot call yourself",
            ));
        }
        if sdp.trim().is_empty() {
            return Err(ApiError::validation("sdp", "must not be empty"));
        }
        if !may_call(store, caller.id, callee).await? {
            return Err(ApiError::CannotMessageUser);
        }
        let invite = event_text(&ServerEvent::CallInvite {
            call_id,
            from: caller.clone(),
            media,
            sdp,
        });
        {
            let mut state = self.0.lock();
            if state.owned.contains_key(&call_id) || state.known.contains_key(&call_id) {
                return Err(ApiError::CallExists);
            }
            let inner = self.0.this.clone();
            let ring_timeout = self.0.ring_timeout;
            let timer = tokio::spawn(async move {
                tokio::time::sleep(ring_timeout).await;
                if let Some(inner) = inner.upgrade() {
                    inner.ring_timed_out(call_id);
                }
            })
            .abort_handle();
            state.owned.insert(
                call_id,
                Call {
                    caller: caller.clone(),
                    caller_conn: from.conn,
                    callee,
                    answered: None,
                    timer,
                    invite: invite.clone(),
                },
            );
        }
        metrics::counter!("nebula_calls_started_total").increment(1);
        self.0.publish(Envelope::Deliver {
            user: callee,
            call_id,
            only: None,
            except: None,
            owner: Some(self.0.node),
            event: invite,
        });
        if !self.0.presence.user_connected(callee).await {
            self.push_invite(store, caller, call_id, callee, media)
                .await;
        }
        Ok(())
    }

    /// Queues the "incoming call" Web Push for a callee with no open connection. A failure
    /// is logged, not answered: the call itself went out and rings wherever it can.
    async fn push_invite(
        &self,
        store: &Store,
        caller: &User,
        call_id: Uuid,
        callee: Uuid,
        media: CallMedia,
    ) {
        let occurred_at = crate::store::now();
        let ring = chrono::Duration::from_std(self.0.ring_timeout)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        let event = CallNotification {
            version: CallNotification::VERSION,
            event_id: Uuid::now_v7(),
            call_id,
            caller: UserRef {
                id: caller.id,
                username: caller.username.clone(),
            },
            callee,
            media,
            occurred_at,
            expires_at: occurred_at + ring,
        };
        if let Err(err) = store.enqueue_incoming_call(event).await {
            tracing::warn!(error = %err, %call_id, "could not queue the incoming-call push");
        }
    }
}

fn event_text(event: &ServerEvent) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

fn hangup(call_id: Uuid, from: Option<User>, reason: Option<&str>) -> String {
    event_text(&ServerEvent::CallHangup {
        call_id,
        from,
        reason: reason.map(str::to_owned),
    })
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies an envelope here (and whatever it leads to), and sends each to the other nodes.
    fn publish(&self, envelope: Envelope) {
        // In order: what one step leads to is written after it, as the other nodes see it.
        let mut queue = std::collections::VecDeque::from([envelope]);
        while let Some(envelope) = queue.pop_front() {
            let local_only =
                matches!(&envelope, Envelope::Request { owner, .. } if *owner == self.node);
            if !local_only && let Some(outgoing) = &self.outgoing {
                let wire = Wire {
                    o: self.node,
                    e: envelope.clone(),
                };
                if let Ok(bytes) = serde_json::to_vec(&wire) {
                    let _ = outgoing.send(bytes);
                }
            }
            let mut next = Vec::new();
            self.apply(envelope, &mut next);
            queue.extend(next);
        }
    }

    /// An envelope from another node.
    fn receive(&self, payload: &[u8]) {
        match serde_json::from_slice::<Wire>(payload) {
            Ok(wire) if wire.o == self.node => {}
            Ok(wire) => {
                let mut queue = Vec::new();
                self.apply(wire.e, &mut queue);
                for envelope in queue {
                    self.publish(envelope);
                }
            }
            Err(err) => tracing::warn!(error = %err, "unreadable call envelope"),
        }
    }

    /// Applies one envelope to this node; what it leads to is pushed on `next`.
    fn apply(&self, envelope: Envelope, next: &mut Vec<Envelope>) {
        match envelope {
            Envelope::Deliver {
                user,
                call_id,
                only,
                except,
                owner,
                event,
            } => {
                let mut state = self.lock();
                let Some(conns) = state.conns.get(&user) else {
                    return;
                };
                let bytes = Bytes::from(event);
                for (conn, out) in conns {
                    let addr = Addr {
                        node: self.node,
                        conn: *conn,
                    };
                    if only.is_some_and(|only| only != addr) || except == Some(addr) {
                        continue;
                    }
                    out.send(&bytes);
                }
                if let Some(owner) = owner
                    && owner != self.node
                {
                    state.known.insert(call_id, Known { owner, user });
                }
            }
            Envelope::Request {
                owner,
                from,
                user,
                event,
                disconnected,
            } => {
                if owner == self.node {
                    self.on_request(from, user, event, disconnected, next);
                }
            }
            Envelope::Ended { call_id } => {
                self.lock().known.remove(&call_id);
            }
            Envelope::Opened { user, at } => {
                let state = self.lock();
                for (call_id, call) in &state.owned {
                    if call.callee == user && call.answered.is_none() {
                        next.push(Envelope::Deliver {
                            user,
                            call_id: *call_id,
                            only: Some(at),
                            except: None,
                            owner: Some(self.node),
                            event: call.invite.clone(),
                        });
                    }
                }
            }
        }
    }

    /// The owner's decision on one event of a call's party.
    fn on_request(
        &self,
        from: Addr,
        user: User,
        event: ClientEvent,
        disconnected: bool,
        next: &mut Vec<Envelope>,
    ) {
        let Some(call_id) = event.call_id() else {
            return;
        };
        let refuse = |err: ApiError, next: &mut Vec<Envelope>| {
            if !disconnected {
                next.push(Envelope::Deliver {
                    user: user.id,
                    call_id,
                    only: Some(from),
                    except: None,
                    owner: None,
                    event: event_text(&err.ws_error(Some(call_id.to_string()))),
                });
            }
        };
        let mut state = self.lock();
        let Some(call) = state.owned.get_mut(&call_id) else {
            return refuse(ApiError::CallNotFound, next);
        };
        let caller_addr = Addr {
            node: self.node,
            conn: call.caller_conn,
        };
        let is_caller = user.id == call.caller.id && from == caller_addr;
        let is_callee = user.id == call.callee && call.answered.is_none_or(|at| at == from);
        if !is_caller && !is_callee {
            // The caller's other connections, or a callee connection after another one
            // answered; a ringing connection closing changes nothing.
            return refuse(ApiError::CallNotFound, next);
        }
        if disconnected && !is_caller && call.answered.is_none() {
            return; // one of the callee's ringing connections went away: the others still ring
        }
        // Where the other side of the call is.
        let (peer, peer_only) = if is_caller {
            (call.callee, call.answered)
        } else {
            (call.caller.id, Some(caller_addr))
        };
        let relay = |event: &ServerEvent, next: &mut Vec<Envelope>| {
            next.push(Envelope::Deliver {
                user: peer,
                call_id,
                only: peer_only,
                except: None,
                owner: None,
                event: event_text(event),
            });
        };
        let callee = call.callee;
        let answered = call.answered;
        // The callee's other connections stop ringing.
        let stop_ringing = |reason: &str, next: &mut Vec<Envelope>| {
            next.push(Envelope::Deliver {
                user: callee,
                call_id,
                only: None,
                except: Some(from),
                owner: None,
                event: hangup(call_id, None, Some(reason)),
            });
        };
        match event {
            ClientEvent::CallCandidate { candidate, .. } => {
                relay(
                    &ServerEvent::CallCandidate {
                        call_id,
                        from: user,
                        candidate,
                    },
                    next,
                );
            }
            ClientEvent::CallAnswer { sdp, .. } => {
                if is_caller {
                    return refuse(
                        ApiError::CallState("the caller cannot answer its own call"),
                        next,
                    );
                }
                if answered.is_some() {
                    return refuse(ApiError::CallState("this call is already answered"), next);
                }
                call.answered = Some(from);
                call.timer.abort();
                relay(
                    &ServerEvent::CallAnswer {
                        call_id,
                        from: user,
                        sdp,
                    },
                    next,
                );
                stop_ringing("answered_elsewhere", next);
            }
            ClientEvent::CallReject { .. } => {
                if is_caller {
                    return refuse(
                        ApiError::CallState("the caller cannot reject its own call; hang up"),
                        next,
                    );
                }
                if answered.is_some() {
                    return refuse(
                        ApiError::CallState("this call is already answered; hang up"),
                        next,
                    );
                }
                relay(
                    &ServerEvent::CallReject {
                        call_id,
                        from: user,
                    },
                    next,
                );
                stop_ringing("rejected_elsewhere", next);
                end(&mut state, call_id, next);
            }
            ClientEvent::CallHangup { .. } => {
                let event = if disconnected {
                    hangup(call_id, None, Some("disconnected"))
                } else {
                    hangup(call_id, Some(user), None)
                };
                next.push(Envelope::Deliver {
                    user: peer,
                    call_id,
                    only: peer_only,
                    except: None,
                    owner: None,
                    event,
                });
                // A callee hanging up while ringing declines on all of its connections.
                if !is_caller && answered.is_none() {
                    stop_ringing("rejected_elsewhere", next);
                }
                end(&mut state, call_id, next);
            }
            ClientEvent::CallInvite { .. } => refuse(ApiError::CallExists, next),
            _ => {}
        }
    }

    /// The ring timer fired: an unanswered call ends for both sides.
    fn ring_timed_out(&self, call_id: Uuid) {
        let mut next = Vec::new();
        {
            let mut state = self.lock();
            let Some(call) = state.owned.get(&call_id) else {
                return;
            };
            if call.answered.is_some() {
                return;
            }
            let event = hangup(call_id, None, Some("timeout"));
            next.push(Envelope::Deliver {
                user: call.caller.id,
                call_id,
                only: Some(Addr {
                    node: self.node,
                    conn: call.caller_conn,
                }),
                except: None,
                owner: None,
                event: event.clone(),
            });
            next.push(Envelope::Deliver {
                user: call.callee,
                call_id,
                only: None,
                except: None,
                owner: None,
                event,
            });
            metrics::counter!("nebula_calls_timed_out_total").increment(1);
            end(&mut state, call_id, &mut next);
        }
        for envelope in next {
            self.publish(envelope);
        }
    }
}

/// Forgets a call here and tells the other nodes it is over.
fn end(state: &mut State, call_id: Uuid, next: &mut Vec<Envelope>) {
    if let Some(call) = state.owned.remove(&call_id) {
        call.timer.abort();
    }
    next.push(Envelope::Ended { call_id });
}

/// A TURN credential pair per coturn's REST API (`use-auth-secret`): the username is
/// `<expiry unix time>:<user id>`, the password base64(HMAC-SHA1(secret, username)).
pub fn turn_credentials(secret: &str, user_id: Uuid, expires_at: i64) -> (String, String) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let username = format!("{expires_at}:{user_id}");
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_coturns_rest_api() {
        // echo -n "1700000000:00000000-0000-0000-0000-000000000000" |
        //   openssl dgst -sha1 -hmac secret -binary | base64
        let (username, password) = turn_credentials("secret", Uuid::nil(), 1_700_000_000);
        assert_eq!(username, "1700000000:00000000-0000-0000-0000-000000000000");
        assert_eq!(password, "iiziDX1lpfVkoajjvQPv6/vnAcY=");
    }
}
