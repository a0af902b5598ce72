//! What the server mails, rendered here and sent through the outbox (see `store::mail`):
//! password resets, address verification codes, and the signed one-click unsubscribe links.
//!
//! Sending is the outbox relay's job (in-process, or `nebula-notifier` behind RabbitMQ), over
//! SMTP with `nebula_notifier::Mailer`.

use hmac::{Hmac, Mac as _};
use nebula_wire::notify::MailContent;
use sha2::Sha256;
use uuid::Uuid;

/// Renders mails and signs unsubscribe links. Built once from the config.
#[derive(Debug, Clone)]
pub struct Mails {
    /// Where users reach this server, without a trailing slash (`PUBLIC_URL`).
    public_url: String,
    /// Key of the unsubscribe links' HMAC (derived from the JWT secret).
    key: Vec<u8>,
}

impl Mails {
    pub fn new(public_url: &str, secret: &str) -> Self {
        Mails {
            public_url: public_url.trim_end_matches('/').to_owned(),
            key: format!("nebula-unsubscribe:{secret}").into_bytes(),
        }
    }

    /// Where users reach this server, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The mail carrying a password-reset token.
    pub fn password_reset(&self, username: &str, to: &str, token: &str) -> MailContent {
        let link = format!("{}/?reset_token={token}", self.public_url);
        let text = format!(
            "Hello {username},\n\n\
             someone (hopefully you) asked to reset the password of your Nebula account.\n\n\
             Reset token: {token}\n\n\
             Open {link} or send the token with a new password to \
             POST {}/auth/password-reset/confirm.\n\
             The token works once, for one hour. If you did not ask, ignore this mail: \
             your password stays as it is.\n",
            self.public_url
        );
        let html = format!(
            "<p>Hello {name},</p>\
             <p>someone (hopefully you) asked to reset the password of your Nebula account.</p>\
             <p><a href=\"{link}\">Reset your password</a></p>\
             <p>Reset token: <code>{token}</code></p>\
             <p>The token works once, for one hour. If you did not ask, ignore this mail: \
             your password stays as it is.</p>",
            name = escape(username),
            link = escape(&link),
        );
        MailContent {
            to: to.to_owned(),
            subject: "Reset your Nebula password".into(),
            text,
            html,
            unsubscribe_url: None,
        }
    }

    /// The mail carrying an address verification code.
    pub fn verification(&self, username: &str, to: &str, code: &str) -> MailContent {
        let text = format!(
            "Hello {username},\n\nyour Nebula verification code is: {code}\n\n\
             Enter it in Nebula (POST /me/email/confirm) within 30 minutes. \
             If you did not ask for it, ignore this mail.\n"
        );
        let html = format!(
            "<p>Hello {name},</p><p>your Nebula verification code is: <strong>{code}</strong></p>\
             <p>Enter it in Nebula within 30 minutes. If you did not ask for it, ignore this mail.</p>",
            name = escape(username),
        );
        MailContent {
            to: to.to_owned(),
            subject: format!("Your Nebula verification code: {code}"),
            text,
            html,
            unsubscribe_url: None,
        }
    }

    /// The signed one-click unsubscribe link of `user_id` (for notification mail).
    pub fn unsubscribe_url(&self, user_id: Uuid) -> String {
        format!(
            "{}/email/unsubscribe?user={user_id}&token={}",
            self.public_url,
            self.unsubscribe_token(user_id)
        )
    }

    /// HMAC-SHA256 of the user id, hex.
    pub fn unsubscribe_token(&self, user_id: Uuid) -> String {
        let mut mac = self.mac();
        mac.update(user_id.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Whether `token` is `user_id`'s unsubscribe token (constant-time comparison).
    pub fn unsubscribe_token_valid(&self, user_id: Uuid, token: &str) -> bool {
        let Some(bytes) = decode_hex(token) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(user_id.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_tokens_are_per_user_and_per_secret() {
        let mails = Mails::new("http://x/", "secret");
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let token = mails.unsubscribe_token(alice);
        assert!(mails.unsubscribe_token_valid(alice, &token));
        assert!(!mails.unsubscribe_token_valid(bob, &token));
        assert!(!Mails::new("http://x", "other").unsubscribe_token_valid(alice, &token));
        assert!(!mails.unsubscribe_token_valid(alice, "zz"));
        assert!(
            mails
                .unsubscribe_url(alice)
                .starts_with("http://x/email/unsubscribe?user=")
        );
    }
}
