//! The sending side of the `edits` scenario: a sender changes the messages it posted during
//! setup over REST (the WebSocket has no lifecycle commands): `PATCH` to edit one, `PUT` /
//! `DELETE` of its own reaction to toggle it. Paced (`--rate` changes per second) or closed
//! loop, with at most `--in-flight` changes outstanding and never two to the same message,
//! so every change really changes something (the server publishes nothing for a no-op such
//! as reacting twice) and the changes to one message commit in the order they were made.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::Connection;
use crate::frames::filler_content;
use crate::latency::LocalSamples;
use crate::live::{Live, bump};
use crate::sender::Finished;
use crate::setup::{Api, Change};

/// Reactions cycle through these, one emoji per message.
const EMOJI: [&str; 4] = ["👍", "❤️", "😂", "🎉"];

/// How one sender changes its messages.
pub struct EditPlan {
    pub api: Api,
    pub token: String,
    pub room_id: String,
    /// The sender's messages, with their [`crate::live::ChangeLog`] slots.
    pub messages: Vec<(Uuid, usize)>,
    /// Time between changes; `None` = as fast as the window allows.
    pub interval: Option<Duration>,
    pub first_at: Instant,
    /// Most changes outstanding at once.
    pub in_flight: usize,
    /// Share of changes that toggle a reaction, in percent; the others are edits.
    pub reaction_percent: u8,
    /// Length of an edit's content (at least its counter).
    pub message_size: usize,
}

/// One of the sender's messages and what the sender has done to it.
struct Target {
    id: Uuid,
    slot: usize,
    emoji: &'static str,
    /// Whether the sender's reaction is on it now.
    reacted: bool,
    edits: u64,
}

impl Target {
    /// The next change of the given kind, with the content an edit needs.
    fn next_change(&mut self, reaction: bool, filler: &str) -> Planned {
        if reaction {
            return Planned::Reaction(!self.reacted);
        }
        self.edits += 1;
        // The counter makes every edit differ from the content before it.
        let mut content = format!("edit {}", self.edits);
        if let Some(rest) = filler.len().checked_sub(content.len() + 1) {
            content.push(' ');
            content.push_str(&filler[..rest]);
        }
        Planned::Edit(content)
    }
}

enum Planned {
    Edit(String),
    /// `true` adds the reaction, `false` removes it.
    Reaction(bool),
}

/// Whether change number `n` (0-based) of a sender is a reaction toggle: spreads exactly
/// `percent` of every hundred changes evenly over them.
fn is_reaction(n: u64, percent: u8) -> bool {
    let percent = u64::from(percent);
    (n + 1) * percent / 100 > n * percent / 100
}

/// Changes messages until `stop` is cancelled, waits for the changes still outstanding,
/// then hands the connection back with the failures by code.
pub async fn change_until(
    connection: Connection,
    plan: EditPlan,
    live: Arc<Live>,
    stop: CancellationToken,
) -> Finished {
    let filler = filler_content(plan.message_size);
    let mut idle: VecDeque<Target> = plan
        .messages
        .iter()
        .map(|&(id, slot)| Target {
            id,
            slot,
            emoji: EMOJI[slot % EMOJI.len()],
            reacted: false,
            edits: 0,
        })
        .collect();
    let mut ticks = plan.interval.map(|interval| {
        let mut ticks = tokio::time::interval_at(plan.first_at, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        ticks
    });
    let mut acks = LocalSamples::new(&live.ack_latency);
    let mut errors = BTreeMap::new();
    let mut outstanding = FuturesUnordered::new();
    let mut settle = |(mut target, planned, started_us, answer): (Target, Planned, u64, _)| {
        match answer {
            Ok(()) => {
                if let Planned::Reaction(on) = planned {
                    target.reacted = on;
                }
                acks.record_micros(live.now_us().saturating_sub(started_us));
                bump(&live.acked);
                live.changed(connection.room);
            }
            Err(code) => {
                live.changes.withdraw(target.slot);
                bump(&live.failed);
                *errors.entry(code).or_insert(0) += 1;
            }
        }
        target
    };
    let mut made = 0u64;
    'changing: loop {
        if let Some(ticks) = &mut ticks {
            // Settle answers while waiting for the tick.
            loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break 'changing,
                    Some(done) = outstanding.next() => idle.push_back(settle(done)),
                    _ = ticks.tick() => break,
                }
            }
        }
        while outstanding.len() >= plan.in_flight || idle.is_empty() {
            tokio::select! {
                biased;
                () = stop.cancelled() => break 'changing,
                Some(done) = outstanding.next() => idle.push_back(settle(done)),
            }
        }
        let Some(mut target) = idle.pop_front() else {
            continue;
        };
        let planned = target.next_change(is_reaction(made, plan.reaction_percent), &filler);
        made += 1;
        let (api, token, room, live) = (&plan.api, &plan.token, &plan.room_id, &live);
        outstanding.push(async move {
            let started_us = live.now_us();
            live.changes.start(target.slot, started_us);
            bump(&live.sent);
            let change = match &planned {
                Planned::Edit(content) => Change::Edit(content),
                Planned::Reaction(true) => Change::React(target.emoji),
                Planned::Reaction(false) => Change::Unreact(target.emoji),
            };
            let answer = api.change(token, room, target.id, change).await;
            (target, planned, started_us, answer)
        });
    }
    while let Some(done) = outstanding.next().await {
        settle(done);
    }
    (connection, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_exact_and_spread() {
        let reactions = |percent| (0..100).filter(|&n| is_reaction(n, percent)).count();
        assert_eq!(
            [0, 25, 50, 100].map(reactions),
            [0, 25, 50, 100],
            "per hundred changes"
        );
        let half: Vec<bool> = (0..4).map(|n| is_reaction(n, 50)).collect();
        assert_eq!(half, [false, true, false, true]);
    }

    #[test]
    fn edits_always_differ_and_reactions_toggle() {
        let mut target = Target {
            id: Uuid::new_v4(),
            slot: 0,
            emoji: EMOJI[0],
            reacted: false,
            edits: 0,
        };
        let filler = filler_content(20);
        let (Planned::Edit(first), Planned::Edit(second)) = (
            target.next_change(false, &filler),
            target.next_change(false, &filler),
        ) else {
            panic!("edits were asked for");
        };
        assert_ne!(first, second);
        assert_eq!((first.len(), second.len()), (20, 20));
        assert!(matches!(
            target.next_change(true, &filler),
            Planned::Reaction(true)
        ));
        target.reacted = true;
        assert!(matches!(
            target.next_change(true, &filler),
            Planned::Reaction(false)
        ));
        // Content shorter than the counter is the counter alone.
        let Planned::Edit(short) = target.next_change(false, "x") else {
            panic!("an edit was asked for");
        };
        assert_eq!(short, "edit 3");
    }
}
