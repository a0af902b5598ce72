//! What the operating system can tell about this process and the server's: file-descriptor
//! limits, resident memory and CPU time (Linux `/proc`).

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

    /// User plus system CPU time consumed so far, in seconds.
    pub fn cpu_seconds(self) -> Option<f64> {
        parse_cpu_ticks(&std::fs::read_to_string(self.path("stat")).ok()?)
            .map(|ticks| ticks as f64 / TICKS_PER_SECOND)
    }
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` (fields 14 and 15) of `/proc/<pid>/stat`. The command name (field 2) may
/// contain spaces, so fields are counted after its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
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
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn this_process_is_visible() {
        assert!(Process::This.rss_kib().is_some_and(|kib| kib > 0));
        assert!(Process::This.cpu_seconds().is_some());
    }
}
