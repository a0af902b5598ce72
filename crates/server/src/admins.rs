//! Who the server admins are: `ADMIN_USERNAMES` at start and `nebula admin grant|revoke`.

use crate::config::AdminCommand;
use crate::domain::Username;
use crate::store::{Audit, Store};

/// Makes the listed accounts that exist now admins. A listed name nobody has registered yet
/// is skipped (and logged): whoever registers it later must not become an admin by it.
pub async fn apply_admin_usernames(store: &Store, names: &[String]) -> anyhow::Result<()> {
    for name in names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
    {
        let Ok(username) = Username::parse(name) else {
            tracing::warn!(
                username = name,
                "ADMIN_USERNAMES: not a valid username; skipped"
            );
            continue;
        };
        let audit = Audit {
            actor: None,
            action: "admin.granted",
            target: None,
            ip: None,
        };
        match store.set_admin(&username.key(), true, &audit).await? {
            Some(id) => {
                tracing::info!(username = name, user_id = %id, "server admin (ADMIN_USERNAMES)")
            }
            None => tracing::warn!(
                username = name,
                "ADMIN_USERNAMES: no such account yet; not granted (grant it later with `nebula admin grant`)"
            ),
        }
    }
    Ok(())
}

/// Runs `nebula admin grant|revoke USERNAME`; the message to print on success.
pub async fn run(store: &Store, command: &AdminCommand) -> anyhow::Result<String> {
    let (name, grant) = match command {
        AdminCommand::Grant { username } => (username, true),
        AdminCommand::Revoke { username } => (username, false),
    };
    let username =
        Username::parse(name).map_err(|_| anyhow::anyhow!("{name:?} is not a valid username"))?;
    let audit = Audit {
        actor: None,
        action: if grant {
            "admin.granted"
        } else {
            "admin.revoked"
        },
        target: None,
        ip: None,
    };
    match store.set_admin(&username.key(), grant, &audit).await? {
        Some(_) if grant => Ok(format!("{name} is now a server admin")),
        Some(_) => Ok(format!("{name} is no longer a server admin")),
        None => Err(anyhow::anyhow!("no account named {name}")),
    }
}
