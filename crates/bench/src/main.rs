//! `nebula-bench`: parses flags, prepares the process, runs, prints the report.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use nebula_bench::cli::{Cli, Command};
use nebula_bench::{floor, system};

fn main() -> ExitCode {
    match bench(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("nebula-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status: 0 for a clean run, 2 when the report found lost, repeated or reordered
/// messages, unanswered sends or dropped sockets, 1 when the run could not happen.
fn bench(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Floor(args)) = &cli.command {
        return floor_only(&args.options(), cli.json);
    }
    let options = cli.options()?;
    if let Some(limit) = system::raise_fd_limit()
        && limit < options.descriptors_needed()
    {
        bail!(
            "{} users need about {} file descriptors but this process may open {limit}: \
             lower --users or raise the hard limit (`ulimit -Hn`)",
            options.users,
            options.descriptors_needed()
        );
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(nebula_bench::run(options, interrupt()))?;
    if cli.json {
        println!("{}", report.to_json()?);
    } else {
        print!("{report}");
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `nebula-bench floor`: one measurement of the write() floor.
fn floor_only(options: &floor::FloorOptions, json: bool) -> anyhow::Result<ExitCode> {
    system::raise_fd_limit();
    let measured = floor::measure(options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&measured)?);
    } else {
        println!(
            "write() of {} B to loopback TCP: {:.3} µs CPU per write (rounds {:.3}–{:.3}; \
             {:.3} µs wall{}{}), {} writes over {} pairs, pinned to CPU {}",
            measured.frame_bytes,
            measured.cpu_ns_per_write / 1000.0,
            measured.cpu_ns_min / 1000.0,
            measured.cpu_ns_max / 1000.0,
            measured.wall_ns_per_write / 1000.0,
            measured.system_share.map_or(String::new(), |share| format!(
                ", {:.0} % in the kernel",
                share * 100.0
            )),
            measured
                .reader_wakeups_per_write
                .map_or(String::new(), |w| format!(
                    ", {w:.2} reader wake-ups per write"
                )),
            measured.writes,
            measured.pairs,
            measured
                .cpu
                .map_or("- (refused)".into(), |cpu| cpu.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on the first Ctrl-C; a second one quits at once.
async fn interrupt() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler: never interrupt.
        std::future::pending::<()>().await;
    }
    eprintln!("nebula-bench: stopping early (Ctrl-C again to quit without a report)");
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
