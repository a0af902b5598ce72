//! The `write()` floor: what the kernel charges a process for writing one small frame to a
//! loopback TCP socket, measured in this process, in the same run as the server.
//!
//! A chat server's cost per delivery is at least one such write (or a share of a larger one);
//! expressing the server's CPU per delivery as a multiple of this floor cancels most of the
//! machine's drift (a shared virtual machine's CPU time per unit of work moves ±20 % between
//! runs), which absolute microseconds cannot.
//!
//! Method: `pairs` loopback TCP connections are opened; a reader thread drains every one of
//! them (a single-threaded tokio runtime, so it sleeps in epoll rather than spinning); a
//! writer thread writes one `frame_bytes` buffer per `write()` round-robin over the writing ends
//! (`TCP_NODELAY` on, as servers set it), first a warm-up, then `writes` measured writes.
//! The figure is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`: user + system, not wall
//! clock) over the measured writes, divided by their number. On loopback the receiving side's
//! TCP processing runs in the writer's system call too, just as it does for a server writing
//! to a local client, so it is part of the floor. The reader's own CPU is not.
//!
//! Both threads are pinned to one CPU. Left to the scheduler, they ran on one core in some
//! measurements and on two in others on the two-core development machine, and the result
//! jumped between ~1.5 and ~4.3 µs with every round of one measurement agreeing; pinned,
//! repeated measurements agreed within ~10 % even with other work on the machine.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::system;

/// How to measure the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorOptions {
    /// Loopback connections written to in turn (a room's worth of subscribers).
    pub pairs: usize,
    /// Measured writes (after a warm-up of a tenth as many).
    pub writes: u64,
    /// Bytes per write: about one small chat event with its WebSocket header.
    pub frame_bytes: usize,
    /// The CPU both threads are pinned to; `None`: the one the caller is running on.
    pub cpu: Option<usize>,
}

impl Default for FloorOptions {
    fn default() -> Self {
        FloorOptions {
            pairs: 100,
            writes: 200_000,
            frame_bytes: 150,
            cpu: None,
        }
    }
}

impl FloorOptions {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=10_000).contains(&self.pairs) {
            bail!("--floor-pairs must be 1–10000");
        }
        if self.writes < 1000 {
            bail!("--floor-writes must be at least 1000");
        }
        if !(1..=65_536).contains(&self.frame_bytes) {
            bail!("--floor-frame-bytes must be 1–65536");
        }
        Ok(())
    }
}

/// The measured writes are split into this many rounds and the median round is the floor:
/// one round disturbed by a neighbour on a shared machine does not move it.
const ROUNDS: u64 = 5;

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Floor {
    /// CPU time of the writing thread per `write()`, in nanoseconds: the median of the
    /// rounds.
    pub cpu_ns_per_write: f64,
    /// The cheapest round.
    pub cpu_ns_min: f64,
    /// The dearest round.
    pub cpu_ns_max: f64,
    /// Wall-clock time per `write()` (includes waiting when the reader fell behind).
    pub wall_ns_per_write: f64,
    /// Share of that CPU time spent in the kernel (from `/proc/thread-self/stat`, 10 ms
    /// ticks, so only indicative on short measurements).
    pub system_share: Option<f64>,
    /// How often the reader thread went to sleep and was woken, per write (warm-up
    /// included): near 0 means the reader was always busy, so the writes rarely paid for
    /// waking it.
    pub reader_wakeups_per_write: Option<f64>,
    pub writes: u64,
    pub pairs: usize,
    pub frame_bytes: usize,
    /// The CPU the writer and the reader were pinned to (`None`: pinning was refused and
    /// the scheduler placed them).
    pub cpu: Option<usize>,
}

/// Measures the floor. Blocking: call it from a thread that may block (`spawn_blocking`).
/// The work happens on two threads of its own, so pinning them leaves the caller's
/// affinity alone.
pub fn measure(options: &FloorOptions) -> anyhow::Result<Floor> {
    options.validate()?;
    let options = *options;
    let cpu = options.cpu.unwrap_or_else(rustix::thread::sched_getcpu);
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || measure_on(&options, cpu))
        .context("starting the writer thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the floor's writer thread panicked"))?
}

/// Pins the calling thread to `cpu`; returns it if that worked.
fn pin(cpu: usize) -> Option<usize> {
    let mut set = rustix::thread::CpuSet::new();
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return None;
    }
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .ok()
        .map(|()| cpu)
}

fn measure_on(options: &FloorOptions, cpu: usize) -> anyhow::Result<Floor> {
    let pinned = pin(cpu);
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let address = listener.local_addr()?;
    let mut writers = Vec::with_capacity(options.pairs);
    let mut readers = Vec::with_capacity(options.pairs);
    for _ in 0..options.pairs {
        let reader = TcpStream::connect(address).context("connecting a loopback pair")?;
        let (writer, _) = listener.accept().context("accepting a loopback pair")?;
        writer.set_nodelay(true)?;
        reader.set_nonblocking(true)?;
        writers.push(writer);
        readers.push(reader);
    }
    let draining = std::thread::Builder::new()
        .name("floor-reader".into())
        .spawn(move || {
            pin(cpu);
            drain(readers)
        })
        .context("starting the reader thread")?;

    let frame = vec![b'x'; options.frame_bytes];
    let warm_up = (options.writes / 10).max(options.pairs as u64);
    let mut write = |count: u64, offset: u64| -> anyhow::Result<()> {
        for i in offset..offset + count {
            let index = (i % options.pairs as u64) as usize;
            writers[index]
                .write_all(&frame)
                .context("writing to loopback")?;
        }
        Ok(())
    };
    write(warm_up, 0)?;
    let ticks_before = system::thread_user_system_ticks();
    let wall_before = Instant::now();
    let per_round = (options.writes / ROUNDS).max(1);
    let mut rounds = Vec::with_capacity(ROUNDS as usize);
    for round in 0..ROUNDS {
        let cpu_before = system::thread_cpu_ns();
        write(per_round, warm_up + round * per_round)?;
        let cpu = system::thread_cpu_ns().saturating_sub(cpu_before);
        rounds.push(cpu as f64 / per_round as f64);
    }
    let wall = wall_before.elapsed();
    let ticks_after = system::thread_user_system_ticks();
    drop(writers);
    let measured = per_round * ROUNDS;
    rounds.sort_by(f64::total_cmp);
    let (received, reader_switches) = draining
        .join()
        .map_err(|_| anyhow::anyhow!("the floor's reader thread panicked"))??;
    let written = (warm_up + measured) * options.frame_bytes as u64;
    if received != written {
        bail!("the floor's readers got {received} bytes of {written}");
    }
    let system_share = ticks_before
        .zip(ticks_after)
        .and_then(|((user0, sys0), (user1, sys1))| {
            let (user, sys) = (user1.saturating_sub(user0), sys1.saturating_sub(sys0));
            (user + sys > 0).then(|| sys as f64 / (user + sys) as f64)
        });
    Ok(Floor {
        cpu_ns_per_write: rounds[rounds.len() / 2],
        cpu_ns_min: rounds[0],
        cpu_ns_max: rounds[rounds.len() - 1],
        wall_ns_per_write: wall.as_nanos() as f64 / measured as f64,
        system_share,
        reader_wakeups_per_write: reader_switches
            .map(|switches| switches as f64 / (warm_up + measured) as f64),
        writes: measured,
        pairs: options.pairs,
        frame_bytes: options.frame_bytes,
        cpu: pinned,
    })
}

/// Reads every connection to its end; returns the bytes read and how many times this thread
/// slept (voluntary context switches) meanwhile.
fn drain(readers: Vec<TcpStream>) -> anyhow::Result<(u64, Option<u64>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the floor's reader runtime")?;
    let switches_before = system::thread_voluntary_switches();
    let received = runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for reader in readers {
            let mut reader = tokio::net::TcpStream::from_std(reader)?;
            tasks.spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut total = 0u64;
                loop {
                    match reader.read(&mut buffer).await? {
                        0 => return std::io::Result::Ok(total),
                        read => total += read as u64,
                    }
                }
            });
        }
        let mut total = 0;
        while let Some(read) = tasks.join_next().await {
            total += read??;
        }
        anyhow::Ok(total)
    })?;
    let switches = system::thread_voluntary_switches()
        .zip(switches_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok((received, switches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_plausible_floor() {
        let floor = measure(&FloorOptions {
            pairs: 8,
            writes: 20_000,
            frame_bytes: 150,
            cpu: None,
        })
        .unwrap();
        // A loopback write costs the kernel somewhere between a few hundred ns and tens of
        // µs on anything this runs on; zero would mean the clock was not read.
        assert!(
            floor.cpu_ns_per_write > 100.0 && floor.cpu_ns_per_write < 200_000.0,
            "{floor:?}"
        );
        assert!(floor.wall_ns_per_write > 0.0);
    }

    #[test]
    fn rejects_silly_options() {
        let options = FloorOptions {
            pairs: 0,
            ..FloorOptions::default()
        };
        assert!(options.validate().is_err());
        assert!(measure(&options).is_err());
    }
}
