//! The exporter's own `process_*` series.
//!
//! Same names and meanings as the Prometheus client libraries' process
//! collector, with two differences that matter to whoever runs us: CPU
//! seconds keep their sub-second part (the `prometheus` crate's collector
//! truncates them to whole seconds, so `rate()` over a minute of a cheap
//! exporter read 0 or 1/60), and a sample is cheap. At one node, reading
//! `/proc/self/stat`, `/proc/self/limits` and listing `/proc/self/fd` on
//! every scrape was a third of the scrape's CPU (perf: the kernel
//! formatting those files and walking the paths), so a sample is five
//! cheap system calls instead:
//!
//! * CPU: `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, all threads, dead ones
//!   included (what utime+stime count), in nanoseconds;
//! * memory: `/proc/self/statm`, held open and re-read from offset 0
//!   (procfs regenerates it on each read);
//! * open descriptors: the size `fstat` reports for the held
//!   `/proc/self/fd` directory (Linux 6.2+; older kernels report 0, and
//!   then the directory is listed);
//! * threads: the held `/proc/self/task` directory's link count, 2 + the
//!   number of threads;
//! * descriptor limit: `getrlimit(RLIMIT_NOFILE)`, the soft limit.
//!
//! The start time does not change and is read once.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Values of one sample; a read that failed leaves its field `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub resident_memory_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
}

/// The fields of `/proc/self/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub num_threads: u64,
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime_ticks: n(14)?,
        stime_ticks: n(15)?,
        num_threads: n(20)?,
        start_ticks: n(22)?,
        vsize_bytes: n(23)?,
        rss_pages: n(24)?,
    })
}

/// Virtual and resident size in pages, from `/proc/<pid>/statm`.
pub fn parse_statm(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_ascii_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// Reads samples of the current process. Constants of the system and the
/// start time are read once; the files it re-reads are held open (three
/// descriptors, counted in `process_open_fds` like any other).
#[derive(Debug)]
pub struct Reader {
    page_size: u64,
    start_time_seconds: Option<f64>,
    statm: Option<File>,
    fd_dir: Option<File>,
    task_dir: Option<File>,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

/// Room for `/proc/self/statm` (a line of seven numbers); a longer read is
/// cut, and the cut text fails to parse rather than being misread.
const PROC_FILE_MAX: usize = 512;

/// The text of an open one-line procfs file (statm), read from its start
/// into `buf`.
fn read_line_from_start<'b>(
    file: Option<&File>,
    buf: &'b mut [u8; PROC_FILE_MAX],
) -> Option<&'b str> {
    let mut len = 0;
    // procfs may hand out a file in pieces; read until end of file, or
    // until the text ends with its newline (statm is one line, so one read
    // usually suffices and the end-of-file read is saved).
    while len < buf.len() {
        match file?.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if buf[len - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    if len == buf.len() {
        return None;
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// Open descriptors of this process, from the held `/proc/self/fd`.
fn count_open_fds(fd_dir: Option<&File>) -> Option<u64> {
    // Linux 6.2+ reports the count as the directory's size. Older kernels
    // report 0, never a true count here (this very directory is open).
    match fd_dir.map(File::metadata) {
        Some(Ok(meta)) if meta.size() > 0 => Some(meta.size()),
        _ => std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
    }
}

impl Reader {
    pub fn new() -> Reader {
        let ticks_per_second = procfs::ticks_per_second().max(1) as f64;
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t));
        let start_time_seconds = match (stat, procfs::boot_time_secs().ok()) {
            (Some(s), Some(boot)) => Some(boot as f64 + s.start_ticks as f64 / ticks_per_second),
            _ => None,
        };
        Reader {
            page_size: procfs::page_size(),
            start_time_seconds,
            statm: File::open("/proc/self/statm").ok(),
            fd_dir: File::open("/proc/self/fd").ok(),
            task_dir: File::open("/proc/self/task").ok(),
        }
    }

    pub fn sample(&self) -> Sample {
        let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        let mut buf = [0u8; PROC_FILE_MAX];
        let statm = read_line_from_start(self.statm.as_ref(), &mut buf).and_then(parse_statm);
        let threads = self
            .task_dir
            .as_ref()
            .and_then(|d| d.metadata().ok())
            .and_then(|m| m.nlink().checked_sub(2))
            .filter(|n| *n > 0);
        Sample {
            cpu_seconds: Some(cpu.tv_sec as f64 + cpu.tv_nsec as f64 / 1e9),
            open_fds: count_open_fds(self.fd_dir.as_ref()),
            max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            virtual_memory_bytes: statm.map(|(size, _)| size.saturating_mul(self.page_size)),
            resident_memory_bytes: statm.map(|(_, rss)| rss.saturating_mul(self.page_size)),
            start_time_seconds: self.start_time_seconds,
            threads,
        }
    }
}

/// The sample as text exposition, in the client libraries' order, names
/// and help texts; a missing value leaves its family out.
pub fn render(s: &Sample) -> String {
    use std::fmt::Write as _;
    let families: [(&str, &str, &str, Option<f64>); 7] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            s.cpu_seconds,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            s.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            s.max_fds.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            s.virtual_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            s.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds,
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            s.threads.map(|v| v as f64),
        ),
    ];
    let mut out = String::with_capacity(1024);
    for (name, kind, help, value) in families {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let text = "4242 (a) b) (c) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 75 0 0 20 0 7 0 123456 987654321 3000 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime_ticks: 250,
                stime_ticks: 75,
                num_threads: 7,
                start_ticks: 123456,
                vsize_bytes: 987654321,
                rss_pages: 3000,
            })
        );
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn parses_statm() {
        assert_eq!(
            parse_statm("36078 2943 1792 1200 0 4567 0\n"),
            Some((36078, 2943))
        );
        assert_eq!(parse_statm("36078"), None);
        assert_eq!(parse_statm("x 1"), None);
    }

    #[test]
    fn renders_like_the_client_libraries() {
        let s = Sample {
            cpu_seconds: Some(1.25),
            open_fds: Some(12),
            max_fds: None,
            ..Sample::default()
        };
        assert_eq!(
            render(&s),
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total 1.25\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\n\
             process_open_fds 12\n"
        );
    }

    /// The count follows descriptors opened and closed (tests in other
    /// threads open and close their own meanwhile: hence the slack).
    #[test]
    fn counts_open_descriptors() {
        let dir = File::open("/proc/self/fd").ok();
        let before = count_open_fds(dir.as_ref()).unwrap();
        let files: Vec<File> = (0..64)
            .map(|_| File::open("/proc/self/stat").unwrap())
            .collect();
        let during = count_open_fds(dir.as_ref()).unwrap();
        drop(files);
        let after = count_open_fds(dir.as_ref()).unwrap();
        assert!(
            (during as i64 - before as i64 - 64).abs() < 20,
            "{before} {during}"
        );
        assert!(
            (during as i64 - after as i64 - 64).abs() < 20,
            "{during} {after}"
        );
    }

    /// Samples are current, not the first read's: the CPU clock moves
    /// after work, and the held `statm`, re-read, shows 64 MiB touched
    /// since (other tests allocate meanwhile: hence half of it).
    #[test]
    fn samples_are_current() {
        let reader = Reader::new();
        let first = reader.sample().cpu_seconds.unwrap();
        let start = std::time::Instant::now();
        while reader.sample().cpu_seconds.unwrap() <= first {
            assert!(
                start.elapsed().as_secs() < 10,
                "CPU seconds stuck at {first}"
            );
        }
        let before = reader.sample().resident_memory_bytes.unwrap();
        let touched = vec![1u8; 64 << 20];
        let during = reader.sample().resident_memory_bytes.unwrap();
        assert!(touched.iter().step_by(4096).all(|b| *b == 1));
        assert!(during >= before + (32 << 20), "{before} -> {during}");
    }

    #[test]
    fn counts_threads() {
        let reader = Reader::new();
        let before = reader.sample().threads.unwrap();
        let (senders, handles): (Vec<_>, Vec<_>) = (0..8)
            .map(|_| {
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                (tx, std::thread::spawn(move || rx.recv().is_err()))
            })
            .unzip();
        let during = reader.sample().threads.unwrap();
        drop(senders);
        for h in handles {
            assert!(h.join().unwrap());
        }
        assert!(
            (during as i64 - before as i64 - 8).abs() < 8,
            "{before} {during}"
        );
    }

    /// The real process: every value present and plausible.
    #[test]
    fn samples_this_process() {
        let s = Reader::new().sample();
        assert!(s.cpu_seconds.unwrap() >= 0.0);
        assert!(s.open_fds.unwrap() >= 3);
        assert!(s.max_fds.unwrap() >= s.open_fds.unwrap());
        assert!(s.resident_memory_bytes.unwrap() > 1 << 20);
        assert!(s.virtual_memory_bytes.unwrap() >= s.resident_memory_bytes.unwrap());
        assert!(s.threads.unwrap() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86400.0 * 365.0,
            "{start}"
        );
    }
}
