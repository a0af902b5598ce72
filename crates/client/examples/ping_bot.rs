//! A bot answering `!ping` with `pong` in one room:
//! `NEBULA_URL=http://127.0.0.1:3838 ROOM_ID=<uuid> cargo run -p nebula-client --example ping_bot`
use nebula_client::wire::ServerEvent;
use nebula_client::{Client, Error, SessionEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // reqwest is built with `rustls-no-provider` in this workspace: pick ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let (user, password) = (
        env("BOT_USER", "pingbot"),
        env("BOT_PASSWORD", "correct horse battery"),
    );
    let mut client = Client::new(&env("NEBULA_URL", "http://127.0.0.1:3838"));
    if client.login(&user, &password).await.is_err() {
        client.register(&user, &password).await?;
    }
    let room_id = match std::env::var("ROOM_ID").ok().and_then(|id| id.parse().ok()) {
        Some(id) => id,
        None => client.create_room("ping").await?.id,
    };
    client.join(room_id).await?;
    let session = client.session();
    session.subscribe(room_id);
    while let Some(event) = session.next_event().await {
        if let SessionEvent::Server(ServerEvent::Subscribed { .. }) = event {
            // Subscribed: every message from now on reaches the loop below.
            println!("answering !ping in room {room_id}");
        }
        if let SessionEvent::Message(message) = event
            && message.content.trim() == "!ping"
            && message.sender_username != user
        {
            let id = uuid::Uuid::now_v7().to_string();
            session
                .send_with(room_id, "pong", id, Some(message.id))
                .await?;
        }
    }
    Ok(())
}
