//! The typed REST calls, one module per area of the API. Each call is named after what it
//! does, takes the wire crate's request type (or the one or two values that make it up) and
//! answers the wire crate's response type; refusals come back as [`crate::Error::Api`].

mod accounts;
mod admin;
mod media;
mod messages;
mod notifications;
mod people;
mod rooms;
