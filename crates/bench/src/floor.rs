//! The `write()` floor: what the kernel charges a process for writing one small frame to a
//! loopback TCP socket, measured in this process, in the same run as the server.
//!
//! A chat server's cost per delivery is at least one such write (or a share of a larger one);
//! expressing the server's CPU per delivery as a multiple of this floor cancels most of the
//! machine's drift (a shared virtual machine's CPU time per unit of work moves ±20 % between
//! runs), which absolute microseconds cannot.
//!
//! Method: `pairs` loopback TCP connections are opened; a reader thread drains every one of
//! them (a single-threaded tokio runtime, so it sleeps in epoll rather than spinning); this
//! thread writes one `frame_bytes` buffer per `write()` round-robin over the writing ends
//! (`TCP_NODELAY` on, as servers set it), first a warm-up, then `writes` measured writes.
//! The figure is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`: user + system, not wall
//! clock) over the measured writes, divided by their number. On loopback the receiving side's
//! TCP processing runs in the writer's system call too, just as it does for a server writing
//! to a local client, so it is part of the floor. The reader's own CPU is not.

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
}

impl Default for FloorOptions {
    fn default() -> Self {
        FloorOptions {
            pairs: 100,
            writes: 200_000,
            frame_bytes: 150,
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

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Floor {
    /// CPU time of the writing thread per `write()`, in nanoseconds.
    pub cpu_ns_per_write: f64,
    /// Wall-clock time per `write()` (includes waiting when the reader fell behind).
    pub wall_ns_per_write: f64,
    /// Share of that CPU time spent in the kernel (from `/proc/thread-self/stat`, 10 ms
    /// ticks, so only indicative on short measurements).
    pub system_share: Option<f64>,
    pub writes: u64,
    pub pairs: usize,
    pub frame_bytes: usize,
}

/// Measures the floor. Blocking: call it from a thread that may block (`spawn_blocking`).
pub fn measure(options: &FloorOptions) -> anyhow::Result<Floor> {
    options.validate()?;
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
        .spawn(move || drain(readers))
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
    let cpu_before = system::thread_cpu_ns();
    let wall_before = Instant::now();
    write(options.writes, warm_up)?;
    let cpu = system::thread_cpu_ns().saturating_sub(cpu_before);
    let wall = wall_before.elapsed();
    let ticks_after = system::thread_user_system_ticks();
    drop(writers);
    let received = draining
        .join()
        .map_err(|_| anyhow::anyhow!("the floor's reader thread panicked"))??;
    let written = (warm_up + options.writes) * options.frame_bytes as u64;
    if received != written {
        bail!("the floor's readers got {received} bytes of {written}");
    }
    let system_share = ticks_before
        .zip(ticks_after)
        .and_then(|((user0, sys0), (user1, sys1))| {
            let (user, sys) = (user1.saturating_sub(user0), sys1.saturating_sub(sys0));
            (user + sys > 0).then(|| sys as f64 / (user + sys) as f64)
        });
    let writes = options.writes as f64;
    Ok(Floor {
        cpu_ns_per_write: cpu as f64 / writes,
        wall_ns_per_write: wall.as_nanos() as f64 / writes,
        system_share,
        writes: options.writes,
        pairs: options.pairs,
        frame_bytes: options.frame_bytes,
    })
}

/// Reads every connection to its end; returns the bytes read.
fn drain(readers: Vec<TcpStream>) -> anyhow::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the floor's reader runtime")?;
    runtime.block_on(async move {
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
    })
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
