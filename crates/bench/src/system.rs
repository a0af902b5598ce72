//! What the operating system can tell about this process and the server's: file-descriptor
//! limits, resident memory and CPU time (Linux `/proc`).

use crate::options::DbProcesses;

/// Kernel clock ticks per second in `/proc/<pid>/stat`. USER_HZ is 100 on every Linux ABI
/// this runs on; reading it properly needs `sysconf`, i.e. unsafe libc.
const TICKS_PER_SECOND: f64 = 100.0;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each connection is a descriptor; the
/// soft limit is often 1024). Returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// Which process to look at.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    This,
    Pid(u32),
}

impl Process {
    fn path(self, file: &str) -> String {
        match self {
            Process::This => format!("/proc/self/{file}"),
            Process::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// Resident set size (`VmRSS`) in KiB.
    pub fn rss_kib(self) -> Option<u64> {
        parse_vm_rss(&std::fs::read_to_string(self.path("status")).ok()?)
    }

    /// User plus system CPU time consumed so far by all its threads, in seconds.
    pub fn cpu_seconds(self) -> Option<f64> {
        let times = parse_cpu_times(&std::fs::read_to_string(self.path("stat")).ok()?)?;
        Some(times.own() as f64 / TICKS_PER_SECOND)
    }

    /// Like [`Process::cpu_seconds`], plus the time of children it has reaped: PostgreSQL's
    /// postmaster inherits the time of backends that exit, so a sum over `postgres`
    /// processes keeps the work of backends that ended during the window.
    pub fn cpu_seconds_with_children(self) -> Option<f64> {
        let times = parse_cpu_times(&std::fs::read_to_string(self.path("stat")).ok()?)?;
        Some((times.own() + times.children) as f64 / TICKS_PER_SECOND)
    }
}

/// CPU seconds of a set of database processes (explicit PIDs, or every `postgres` process)
/// at one moment, and how many processes were read.
pub fn db_cpu_seconds(db: &DbProcesses) -> Option<(f64, usize)> {
    if db.is_empty() {
        return None;
    }
    let mut pids = db.pids.clone();
    if db.all_postgres {
        pids.extend(processes_named("postgres"));
        pids.sort_unstable();
        pids.dedup();
    }
    let readings: Vec<f64> = pids
        .into_iter()
        .filter_map(|pid| Process::Pid(pid).cpu_seconds_with_children())
        .collect();
    (!readings.is_empty()).then(|| (readings.iter().sum(), readings.len()))
}

/// PIDs of the processes whose command name (`/proc/<pid>/comm`) is `name`.
pub fn processes_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// CPU time of the calling thread (user + system), in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(time.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(time.tv_nsec).unwrap_or(0)
}

/// Voluntary context switches of the calling thread so far (times it blocked and was woken).
pub fn thread_voluntary_switches() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = status
        .lines()
        .find(|line| line.starts_with("voluntary_ctxt_switches:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User and system ticks of the calling thread (`/proc/thread-self/stat`).
pub fn thread_user_system_ticks() -> Option<(u64, u64)> {
    let times = parse_cpu_times(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)?;
    Some((times.user, times.system))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU ticks of a process from its `stat` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    user: u64,
    system: u64,
    /// `cutime + cstime`: reaped children.
    children: u64,
}

impl CpuTimes {
    fn own(self) -> u64 {
        self.user + self.system
    }
}

/// `utime`, `stime`, `cutime`, `cstime` (fields 14–17) of `/proc/<pid>/stat`. The command
/// name (field 2) may contain spaces, so fields are counted after its closing parenthesis.
fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let mut next = || fields.next()?.parse::<u64>().ok();
    let (user, system) = (next()?, next()?);
    let children = next()? + next()?;
    Some(CpuTimes {
        user,
        system,
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tnebula\nVmPeak:\t  200 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_even_with_spaces_in_the_name() {
        let stat = "4242 (tokio (rt) w) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0";
        assert_eq!(
            parse_cpu_times(stat),
            Some(CpuTimes {
                user: 250,
                system: 50,
                children: 0
            })
        );
        let reaped = "1 (postgres) S 1 2 3 4 5 6 7 8 9 10 7 3 40 2 20 0 1 0";
        assert_eq!(
            parse_cpu_times(reaped).map(|t| (t.own(), t.children)),
            Some((10, 42))
        );
    }

    #[test]
    fn this_process_is_visible() {
        assert!(Process::This.rss_kib().is_some_and(|kib| kib > 0));
        assert!(Process::This.cpu_seconds().is_some());
        assert!(Process::This.cpu_seconds_with_children().is_some());
        assert!(thread_user_system_ticks().is_some());
        assert!(thread_voluntary_switches().is_some());
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_ns() > before, "{x}");
    }

    #[test]
    fn finds_processes_by_name() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let mine = processes_named(me.trim_end());
        assert!(mine.contains(&std::process::id()), "{mine:?}");
        let explicit = DbProcesses {
            pids: vec![std::process::id()],
            all_postgres: false,
        };
        assert_eq!(db_cpu_seconds(&explicit).map(|(_, n)| n), Some(1));
        assert_eq!(db_cpu_seconds(&DbProcesses::default()), None);
    }
}
