//! Integration tests: the real server on port 0, over real HTTP (and WebSocket), on SQLite and,
//! when `NEBULA_TEST_DATABASE_URL` is set, on PostgreSQL. One binary, so it links once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod account_security;
mod accounts;
mod admin;
mod at_rest;
mod backup;
mod browsers;
mod calls;
mod client_sdk;
mod cluster;
mod compression;
mod contacts;
mod dms;
mod email;
mod errors;
mod feed;
mod leaks;
mod leaving;
mod lifecycle;
mod limits;
mod media;
mod members;
mod membership;
mod mentions;
mod messages;
mod moderation;
mod notification_settings;
mod notifications;
mod operations;
mod otlp;
mod partitions;
mod people;
mod presence;
mod privacy;
mod proxies;
mod reactions;
mod realtime;
mod rooms;
mod scale;
mod stories;
mod updates;
mod upgrade;
mod ws_client;
