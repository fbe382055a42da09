//! The process metrics every Prometheus client exports, under their conventional unprefixed
//! names (`process_cpu_seconds_total`, …), read from `/proc/self` at each scrape. On Linux only:
//! elsewhere, and for any file `/proc` does not answer as expected, the metric is left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat`. The kernel reports these times in USER_HZ,
/// which is 100 on every architecture Linux runs containers on (Prometheus's own procfs library
/// hard-codes it too); reading it at run time would take `sysconf`, and so `unsafe`.
const USER_HZ: f64 = 100.0;

/// One reading of the process, every field optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

impl Reading {
    /// This process, now.
    #[cfg(target_os = "linux")]
    pub fn now() -> Reading {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let stat = read("/proc/self/stat").and_then(|s| Stat::parse(&s));
        let boot = read("/proc/stat").and_then(|s| boot_time(&s));
        Reading {
            cpu_seconds: stat.map(|s| (s.utime + s.stime) / USER_HZ),
            resident_memory_bytes: read("/proc/self/status").and_then(|s| resident_bytes(&s)),
            virtual_memory_bytes: stat.map(|s| s.vsize),
            start_time_seconds: stat.zip(boot).map(|(s, b)| b + s.starttime / USER_HZ),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: read("/proc/self/limits").and_then(|s| max_open_files(&s)),
        }
    }

    /// Nothing to read where there is no `/proc`.
    #[cfg(not(target_os = "linux"))]
    pub fn now() -> Reading {
        Reading::default()
    }
}

/// The fields of `/proc/self/stat` that are used, in their own units.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    utime: f64,
    stime: f64,
    starttime: f64,
    vsize: f64,
}

impl Stat {
    /// `pid (comm) state ppid …`: the command name may hold spaces and parentheses, so the
    /// fields are counted from the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field n of proc(5) (1-based, counting pid and comm) is fields[n - 3].
        let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
        })
    }
}

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the epoch.
fn boot_time(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("btime "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` of `/proc/self/status`, which the kernel gives in kB.
fn resident_bytes(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`None` when unlimited).
fn max_open_files(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads the process at each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = Reading::now();
        if let Some(v) = r.cpu_seconds {
            let counter = ConstCounter::new(v);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(m)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                r.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                r.virtual_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                r.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                r.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                r.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(v) = value else { continue };
            let gauge = ConstGauge::new(v);
            let m = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis of its own.
        let stat = "4242 (tollgate (x) run) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 \
                    9 0 123456 104857600 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1";
        let s = Stat::parse(stat).expect("parses");
        assert_eq!(
            s,
            Stat {
                utime: 250.0,
                stime: 75.0,
                starttime: 123456.0,
                vsize: 104857600.0,
            }
        );
    }

    #[test]
    fn what_proc_does_not_say_as_expected_is_left_out() {
        for garbled in [
            "",
            "4242 tollgate S 1",
            "4242 (tollgate) S 1 2 3",
            "((((",
            ")",
        ] {
            assert_eq!(Stat::parse(garbled), None, "{garbled:?}");
        }
        assert_eq!(boot_time("cpu 1 2 3\nbtime x\n"), None);
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1.7e9));
        assert_eq!(
            resident_bytes("Name:\ttollgate\nVmRSS:\t  2048 kB\n"),
            Some(2048.0 * 1024.0)
        );
        assert_eq!(resident_bytes("Name:\ttollgate\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read() {
        let r = Reading::now();
        assert!(r.cpu_seconds.is_some_and(|c| c >= 0.0), "{r:?}");
        assert!(r.resident_memory_bytes.is_some_and(|b| b > 0.0), "{r:?}");
        assert!(r.open_fds.is_some_and(|n| n >= 1.0), "{r:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let started = r.start_time_seconds.unwrap_or_default();
        assert!(
            started > now - 86_400.0 * 365.0 && started <= now + 5.0,
            "{started} vs {now}"
        );
    }
}
