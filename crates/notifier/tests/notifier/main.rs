//! The notifier's integration tests, one binary (zero-to-production style): real SQLite /
//! PostgreSQL, a real loopback push service that verifies VAPID and decrypts, real RabbitMQ.
#![allow(clippy::unwrap_used)]

mod consumer;
mod delivery;
mod direct;
mod duplicates;
mod endpoints;
mod faults;
mod http_api;
mod service;
mod store_suite;
mod support;
