//! Progress on stderr: indicatif bars on a terminal, a plain line every few seconds
//! otherwise (logs, CI), nothing with `--quiet`. Stdout stays clean for the report.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::live::{Counts, Live};

/// How often plain-line mode reports while running.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// How often the terminal bar recomputes rates.
const BAR_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Bar,
    Lines,
}

/// Where progress goes.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    mode: Mode,
}

/// One counted setup step (registering, joining, connecting …).
pub struct Phase {
    bar: Option<ProgressBar>,
    label: &'static str,
    total: usize,
    started: Instant,
    lines: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let mode = match (enabled, std::io::stderr().is_terminal()) {
            (false, _) => Mode::Off,
            (true, true) => Mode::Bar,
            (true, false) => Mode::Lines,
        };
        Progress { mode }
    }

    /// A message outside any bar.
    pub fn note(&self, text: &str) {
        if self.mode != Mode::Off {
            eprintln!("{text}");
        }
    }

    pub fn phase(&self, label: &'static str, total: usize) -> Phase {
        let bar = (self.mode == Mode::Bar).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(style(
                "{prefix:>10} [{bar:30}] {pos}/{len} {per_sec:.dim} {elapsed}",
            ));
            bar.set_prefix(label);
            bar
        });
        if self.mode == Mode::Lines {
            eprintln!("{label}: {total} …");
        }
        Phase {
            bar,
            label,
            total,
            started: Instant::now(),
            lines: self.mode == Mode::Lines,
        }
    }

    /// Shows sent / acked / delivered rates until `done` is cancelled.
    pub fn watch_run(
        &self,
        live: Arc<Live>,
        duration: Duration,
        done: CancellationToken,
    ) -> JoinHandle<()> {
        let mode = self.mode;
        tokio::spawn(async move {
            if mode == Mode::Off {
                return;
            }
            let every = if mode == Mode::Bar {
                BAR_EVERY
            } else {
                LINE_EVERY
            };
            let bar = (mode == Mode::Bar).then(|| {
                let bar = ProgressBar::with_draw_target(
                    Some(duration.as_millis().max(1) as u64),
                    ProgressDrawTarget::stderr(),
                );
                bar.set_style(style("{prefix:>10} [{bar:30}] {msg}"));
                bar.set_prefix("run");
                bar
            });
            let started = Instant::now();
            // First report after one period: a rate over a few microseconds means nothing.
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let mut last = (Instant::now(), Counts::default());
            loop {
                tokio::select! {
                    () = done.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let now = (Instant::now(), live.counts());
                let line = status_line(started.elapsed(), duration, &last, &now);
                match &bar {
                    Some(bar) => {
                        bar.set_position(started.elapsed().as_millis() as u64);
                        bar.set_message(line);
                    }
                    None => eprintln!("run {line}"),
                }
                last = now;
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        })
    }
}

impl Phase {
    pub fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        if self.lines {
            eprintln!(
                "{}: {} done in {:.1} s",
                self.label,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// `12/30 s  sent 1200 (100/s)  acked 1198 (100/s)  delivered 11980 (998/s)  errors 0  open 50`
fn status_line(
    elapsed: Duration,
    duration: Duration,
    (then, before): &(Instant, Counts),
    (now, after): &(Instant, Counts),
) -> String {
    let seconds = now.duration_since(*then).as_secs_f64().max(1e-3);
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / seconds;
    format!(
        "{:.0}/{:.0} s  sent {} ({:.0}/s)  acked {} ({:.0}/s)  delivered {} ({:.0}/s)  errors {}  open {}",
        elapsed.as_secs_f64(),
        duration.as_secs_f64(),
        after.sent,
        rate(after.sent, before.sent),
        after.acked,
        rate(after.acked, before.acked),
        after.delivered,
        rate(after.delivered, before.delivered),
        after.errors,
        after.open,
    )
}
