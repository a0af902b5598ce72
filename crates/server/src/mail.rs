//! The seam between account flows that send e-mail and the mailer that sends it.
//!
//! Sending is the notifications issue's work; this side only says what to send. Each mail is
//! queued here (bounded: when nobody takes them, the oldest are not kept forever, new ones
//! are dropped with a warning) and the mailer takes the receiving end once, at start, with
//! [`Mailbox::take_receiver`].

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use uuid::Uuid;

/// Mails waiting for the mailer.
const QUEUE: usize = 1024;

/// An e-mail to send.
#[derive(Debug, Clone)]
pub enum Mail {
    /// `token` resets `username`'s password until it expires (1 h) or is used; the mail
    /// carries it to `to` (e.g. as a link to the web client's reset page).
    PasswordReset {
        user_id: Uuid,
        username: String,
        to: String,
        token: String,
    },
}

/// The sending side, shared by the handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mailbox {
    outgoing: mpsc::Sender<Mail>,
    receiver: Arc<Mutex<Option<mpsc::Receiver<Mail>>>>,
}

impl Default for Mailbox {
    fn default() -> Self {
        let (outgoing, receiver) = mpsc::channel(QUEUE);
        Mailbox {
            outgoing,
            receiver: Arc::new(Mutex::new(Some(receiver))),
        }
    }
}

impl Mailbox {
    /// Queues a mail; never waits (a request must not hang on the mailer).
    pub fn send(&self, mail: Mail) {
        if self.outgoing.try_send(mail).is_err() {
            tracing::warn!("mail queue full or closed; a mail was dropped");
        }
    }

    /// The receiving end, for the one mailer (`None` once taken).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Mail>> {
        self.receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}
