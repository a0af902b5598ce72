//! Everything before the first WebSocket: users registered, rooms created and joined, over
//! the REST API with `nebula-client`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use nebula_client::Client;
use nebula_wire::{AuthResponse, CreateRoomRequest, Message, RegisterRequest, Room};
use uuid::Uuid;

use crate::frames::filler_content;
use crate::options::Options;
use crate::progress::Progress;

/// Every simulated user's password (the run id keeps usernames unique, not passwords).
const PASSWORD: &str = "nebula-bench-password";
/// Concurrent joins and room creations: cheap requests, no argon2.
const CHEAP_CONCURRENCY: usize = 16;

/// A user the simulator can connect as.
#[derive(Debug, Clone)]
pub struct Account {
    /// What authenticates the socket: a JWT for Nebula, `user:<name>` for the Socket.IO peer.
    pub token: String,
}

/// The run's users and rooms, by index: `accounts` holds `options.accounts()` users (the
/// connected ones first, then any presence probe), `rooms` the room ids as the target
/// spells them, `messages` the ids of the messages each user posted during setup
/// (`--base-messages` for each sender, none for the others).
#[derive(Debug, Clone)]
pub struct World {
    pub accounts: Vec<Account>,
    pub rooms: Vec<String>,
    pub messages: Vec<Vec<Uuid>>,
}

/// How long each setup step took.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetupTimes {
    pub register: Duration,
    pub rooms: Duration,
    pub join: Duration,
    pub messages: Duration,
}

/// One change to an earlier message, as the `edits` scenario makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// `PATCH …/messages/{id}` with new content.
    Edit(&'a str),
    /// `PUT …/messages/{id}/reactions/{emoji}`.
    React(&'a str),
    /// `DELETE …/messages/{id}/reactions/{emoji}`.
    Unreact(&'a str),
}

/// The REST calls of setup and of the `edits` scenario, as `nebula-client` calls on one
/// shared connection pool, each acting as the user whose token it is given.
#[derive(Clone)]
pub struct Api {
    client: Client,
    /// One client per node users connect to (sharing `client`'s pool); `[client]` for one
    /// server.
    nodes: Vec<Client>,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Api> {
        Api::for_nodes(&[base.to_owned()])
    }

    /// Setup and REST changes go to the first of `bases`; sockets open on any of them.
    pub fn for_nodes(bases: &[String]) -> anyhow::Result<Api> {
        let Some(first) = bases.first() else {
            bail!("no server URL");
        };
        // The workspace builds reqwest with `rustls-no-provider` (for the notifier): a TLS
        // provider must be chosen before the first client, even for plain http.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            client: Client::with_http(http.clone(), first),
            nodes: bases
                .iter()
                .map(|base| Client::with_http(http.clone(), base))
                .collect(),
        })
    }

    /// The client of node `node` (of [`Api::for_nodes`]'s list, wrapping around), acting as
    /// the holder of `token`: where a socket opens.
    pub fn as_user_on(&self, node: usize, token: &str) -> Client {
        self.nodes[node % self.nodes.len()].with_token(token)
    }

    /// The client acting as the holder of `token`.
    pub fn as_user(&self, token: &str) -> Client {
        self.client.with_token(token)
    }

    pub async fn register(&self, username: String) -> anyhow::Result<AuthResponse> {
        let request = RegisterRequest {
            username,
            password: PASSWORD.into(),
            email: None,
        };
        let mut client = self.client.clone();
        let registered = client.register_with(&request).await;
        registered.map_err(|err| self.refused("POST /auth/register", err))
    }

    pub async fn create_room(&self, token: &str, name: String) -> anyhow::Result<Room> {
        let request = CreateRoomRequest {
            name,
            is_private: Some(false),
            description: Some("created by nebula-bench".into()),
        };
        let created = self.as_user(token).create_room_with(&request).await;
        created.map_err(|err| self.refused("POST /rooms", err))
    }

    /// Joins a public room.
    pub async fn join(&self, token: &str, room: &str) -> anyhow::Result<()> {
        let joined = self.as_user(token).join(room_id(room)?).await;
        joined.map_err(|err| self.refused("POST /rooms/{room_id}/members", err))?;
        Ok(())
    }

    pub async fn post_message(
        &self,
        token: &str,
        room: &str,
        content: String,
    ) -> anyhow::Result<Message> {
        let posted = self
            .as_user(token)
            .post_message(room_id(room)?, &content)
            .await;
        posted.map_err(|err| self.refused("POST /rooms/{room_id}/messages", err))
    }

    /// Makes one change to message `message` of room `room`. `Err` is what to count the
    /// failure as: the problem's `code` (`http_<status>` without one), or `request_failed`.
    pub async fn change(
        &self,
        token: &str,
        room: &str,
        message: Uuid,
        change: Change<'_>,
    ) -> Result<(), String> {
        let room = room_id(room).map_err(|_| "request_failed".to_owned())?;
        let client = self.as_user(token);
        let answer = match change {
            Change::Edit(content) => client.edit_message(room, message, content).await.map(drop),
            Change::React(emoji) => client.react(room, message, emoji).await,
            Change::Unreact(emoji) => client.unreact(room, message, emoji).await,
        };
        answer.map_err(|err| match err.code() {
            Some(code) => code.to_owned(),
            None => "request_failed".to_owned(),
        })
    }

    /// A setup call's failure, with what to do about it where that is known.
    fn refused(&self, call: &str, err: nebula_client::Error) -> anyhow::Error {
        match err {
            nebula_client::Error::Api {
                status: 429,
                problem,
            } => anyhow::anyhow!(
                "{call}: 429 {}: start the server with \
                 RATE_LIMIT_AUTH_PER_MINUTE=0 RATE_LIMIT_MESSAGES_PER_SECOND=0",
                problem.code
            ),
            nebula_client::Error::Api { status, problem } => {
                anyhow::anyhow!("{call}: {status} {}", problem.code)
            }
            nebula_client::Error::Http(err) => anyhow::Error::new(err).context(format!(
                "{call}: is the server running at {}?",
                self.client.base_url()
            )),
            other => anyhow::Error::new(other).context(call.to_owned()),
        }
    }
}

/// A Nebula room id, as the world spells it.
pub fn room_id(room: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(room).context("a Nebula room id is a UUID")
}

/// Registers the users, creates the rooms and fills them as the scenario's layout says.
pub async fn prepare(
    api: &Api,
    options: &Options,
    progress: &Progress,
) -> anyhow::Result<(World, SetupTimes)> {
    let layout = options.layout();
    let mut times = SetupTimes::default();

    let started = Instant::now();
    let bar = progress.phase("register", options.accounts());
    let accounts: Vec<Account> = stream::iter(0..options.accounts())
        .map(|index| {
            let (api, bar) = (api, &bar);
            async move {
                let auth = api.register(options.username(index)).await?;
                bar.inc();
                anyhow::Ok(Account { token: auth.token })
            }
        })
        .buffered(options.register_concurrency)
        .try_collect()
        .await?;
    bar.finish();
    times.register = started.elapsed();

    let started = Instant::now();
    let bar = progress.phase("rooms", options.rooms);
    let rooms: Vec<String> = stream::iter(0..options.rooms)
        .map(|room| {
            let creator = &accounts[layout.creator_of(room)];
            let name = format!("{} room {room}", options.run_id);
            let bar = &bar;
            async move {
                let room = api.create_room(&creator.token, name).await?;
                bar.inc();
                anyhow::Ok(room.id.to_string())
            }
        })
        .buffered(CHEAP_CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish();
    times.rooms = started.elapsed();

    let started = Instant::now();
    let joiners: Vec<usize> = (0..options.accounts())
        .filter(|&user| layout.creator_of(layout.room_of(user)) != user)
        .collect();
    let bar = progress.phase("join", joiners.len());
    stream::iter(joiners)
        .map(|user| {
            let (token, room) = (&accounts[user].token, &rooms[layout.room_of(user)]);
            let bar = &bar;
            async move {
                api.join(token, room).await?;
                bar.inc();
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CHEAP_CONCURRENCY)
        .try_collect::<()>()
        .await?;
    bar.finish();
    times.join = started.elapsed();

    let started = Instant::now();
    let posters: Vec<usize> = (0..options.users)
        .filter(|&user| options.base_messages > 0 && layout.is_sender(user))
        .collect();
    let bar = progress.phase("messages", posters.len() * options.base_messages);
    let content = filler_content(options.message_size);
    let mut messages = vec![Vec::new(); options.accounts()];
    let posted: Vec<(usize, Vec<Uuid>)> = stream::iter(posters)
        .map(|user| {
            let (token, room) = (&accounts[user].token, &rooms[layout.room_of(user)]);
            let (bar, content) = (&bar, &content);
            async move {
                let mut ids = Vec::with_capacity(options.base_messages);
                for _ in 0..options.base_messages {
                    ids.push(api.post_message(token, room, content.clone()).await?.id);
                    bar.inc();
                }
                anyhow::Ok((user, ids))
            }
        })
        .buffer_unordered(CHEAP_CONCURRENCY)
        .try_collect()
        .await?;
    for (user, ids) in posted {
        messages[user] = ids;
    }
    bar.finish();
    times.messages = started.elapsed();

    Ok((
        World {
            accounts,
            rooms,
            messages,
        },
        times,
    ))
}

/// The Socket.IO peer has no accounts and no rooms to create: a user is a name in its token,
/// a room is a string. Only checks that the server answers `/health`, so a wrong `--url`
/// fails here with a clear message rather than as a thousand failed handshakes.
pub async fn name_only(options: &Options) -> anyhow::Result<(World, SetupTimes)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let health = format!("{}/health", options.url.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?
        .get(&health)
        .send()
        .await
        .with_context(|| format!("GET {health}: is the Socket.IO peer running?"))?;
    if !response.status().is_success() {
        bail!("GET {health}: {}", response.status());
    }
    let accounts = (0..options.accounts())
        .map(|index| Account {
            token: format!("user:{}", options.username(index)),
        })
        .collect();
    let rooms = (0..options.rooms)
        .map(|room| format!("{}-room-{room}", options.run_id))
        .collect();
    let world = World {
        accounts,
        rooms,
        messages: vec![Vec::new(); options.accounts()],
    };
    Ok((world, SetupTimes::default()))
}
