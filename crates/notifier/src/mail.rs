//! E-mail over SMTP (`lettre`, rustls with ring): the mailer both the notifier and the chat
//! server's in-process delivery use for [`MailNotification`]s.
//!
//! - `SMTP_URL` in the forms `lettre` understands: `smtp://host:port` (plain),
//!   `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (implicit TLS), with
//!   credentials as `smtps://user:password@host`.
//! - `RESEND_API_KEY` alone stands for Resend's relay, `smtps://resend:KEY@smtp.resend.com:465`.
//! - `FROM_EMAIL` (`nebula@example.com` or `Nebula <nebula@example.com>`) is required with either.
//!
//! Every mail is `multipart/alternative` (text + HTML) with a `Date`, a `Message-ID` made from
//! the event id (so a copy sent again after a crash is recognisably the same message) and, for
//! notification mail, `List-Unsubscribe` + `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
//! (RFC 8058).

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use nebula_wire::notify::MailNotification;

use crate::error::{Error, Result};

/// Resend's SMTP relay, implicit TLS; the user name is always `resend`.
const RESEND_RELAY: &str = "smtp.resend.com:465";

/// What one send attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// Refused for good (a 5xx answer, an address that does not parse): not retried.
    Rejected(String),
    /// Worth another attempt (server down, 4xx answer, timeout).
    Transient(String),
}

/// Sends mail through one SMTP relay. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of Message-IDs: the sender's domain.
    domain: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// The mailer the settings describe; `None` when neither `SMTP_URL` nor `RESEND_API_KEY`
    /// is set (mail is then not sent). Empty values count as unset.
    pub fn from_settings(
        smtp_url: Option<&str>,
        resend_api_key: Option<&str>,
        from_email: Option<&str>,
    ) -> Result<Option<Mailer>> {
        let url = match (set(smtp_url), set(resend_api_key)) {
            (Some(url), _) => url.to_owned(),
            (None, Some(key)) => {
                if !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(config("RESEND_API_KEY", "is not a Resend API key"));
                }
                format!("smtps://resend:{key}@{RESEND_RELAY}")
            }
            (None, None) => return Ok(None),
        };
        let Some(from) = set(from_email) else {
            return Err(config("FROM_EMAIL", "is required to send e-mail"));
        };
        let from: Mailbox = from
            .parse()
            .map_err(|err| config("FROM_EMAIL", format!("is not an address: {err}")))?;
        let domain = from.email.domain().to_owned();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|err| config("SMTP_URL", format!("cannot be used: {err}")))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        Ok(Some(Mailer {
            transport,
            from,
            domain,
        }))
    }

    /// The `Message-ID` of the mail for `event_id`.
    pub fn message_id(&self, mail: &MailNotification) -> String {
        format!("<{}@{}>", mail.event_id, self.domain)
    }

    /// Builds the message (see the module docs for its headers).
    pub fn build(&self, mail: &MailNotification) -> std::result::Result<Message, String> {
        let to: Mailbox = mail
            .mail
            .to
            .parse()
            .map_err(|err| format!("recipient address: {err}"))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.mail.subject.clone())
            .message_id(Some(self.message_id(mail)))
            .date_now();
        if let Some(url) = &mail.mail.unsubscribe_url {
            builder = builder
                .header(ListUnsubscribe(format!("<{url}>")))
                .header(ListUnsubscribePost);
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                mail.mail.text.clone(),
                mail.mail.html.clone(),
            ))
            .map_err(|err| format!("building the message: {err}"))
    }

    /// One attempt at sending `mail`.
    pub async fn send(&self, mail: &MailNotification) -> MailOutcome {
        let message = match self.build(mail) {
            Ok(message) => message,
            Err(reason) => return MailOutcome::Rejected(reason),
        };
        match self.transport.send(message).await {
            Ok(_) => MailOutcome::Sent,
            Err(err) if err.is_permanent() => MailOutcome::Rejected(err.to_string()),
            Err(err) => MailOutcome::Transient(err.to_string()),
        }
    }
}

/// An optional setting, with an empty value read as unset.
fn set(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn config(setting: &'static str, reason: impl Into<String>) -> Error {
    Error::Config {
        setting,
        reason: reason.into(),
    }
}

/// `List-Unsubscribe: <https://…>`.
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(value: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(value.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}
