//! The processes a bench is told to watch (`--watch NAME=PID`), sampled
//! from `/proc` while it runs: resident memory and open file descriptors
//! over time, and CPU time over the whole run. A series, not just a peak,
//! because growth without bound is what a long run is there to catch.

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat`'s CPU times: 100 on Linux.
const CLOCK_TICKS: f64 = 100.0;

pub struct Sampler {
    watched: Vec<Watched>,
    /// Seconds from the start of each sample; `Watched::rss` and `fds`
    /// hold one entry per sample.
    times: Vec<f64>,
}

struct Watched {
    name: String,
    pid: u32,
    rss: Vec<Option<u64>>,
    fds: Vec<Option<u64>>,
    cpu_at_start: f64,
    cpu_now: f64,
}

/// A process over the whole run.
#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub name: String,
    pub pid: u32,
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
    /// CPU time over wall time: 2.0 is two cores busy.
    pub cores: f64,
}

/// A process over one interval of the run.
#[derive(Debug, Serialize, Clone)]
pub struct ProcessAt {
    pub name: String,
    /// The highest resident memory sampled within the interval.
    pub rss_mib: f64,
    /// Open file descriptors at the interval's last sample.
    pub fds: Option<u64>,
}

const MIB: f64 = (1 << 20) as f64;

impl Sampler {
    pub fn new(watch: &[(String, u32)]) -> Self {
        let watched = watch
            .iter()
            .map(|(name, pid)| {
                let cpu = cpu_seconds(*pid).unwrap_or(0.0);
                Watched {
                    name: name.clone(),
                    pid: *pid,
                    rss: Vec::new(),
                    fds: Vec::new(),
                    cpu_at_start: cpu,
                    cpu_now: cpu,
                }
            })
            .collect();
        Sampler {
            watched,
            times: Vec::new(),
        }
    }

    /// Samples every watched process, `at` seconds from the start.
    pub fn sample(&mut self, at: f64) {
        self.times.push(at);
        for w in &mut self.watched {
            w.rss.push(rss_bytes(w.pid));
            w.fds.push(open_fds(w.pid));
            if let Some(cpu) = cpu_seconds(w.pid) {
                w.cpu_now = cpu;
            }
        }
    }

    pub fn report(&self, seconds: f64) -> Vec<ProcessReport> {
        self.watched
            .iter()
            .map(|w| {
                let cpu = (w.cpu_now - w.cpu_at_start).max(0.0);
                ProcessReport {
                    name: w.name.clone(),
                    pid: w.pid,
                    peak_rss_mib: w.rss.iter().flatten().max().copied().unwrap_or(0) as f64 / MIB,
                    cpu_seconds: cpu,
                    cores: cpu / seconds.max(1e-9),
                }
            })
            .collect()
    }

    /// Each process over the samples taken in `from..to` (seconds).
    pub fn within(&self, from: f64, to: f64) -> Vec<ProcessAt> {
        let samples: Vec<usize> = (0..self.times.len())
            .filter(|&i| self.times[i] >= from && self.times[i] < to)
            .collect();
        self.watched
            .iter()
            .map(|w| ProcessAt {
                name: w.name.clone(),
                rss_mib: samples.iter().filter_map(|&i| w.rss[i]).max().unwrap_or(0) as f64 / MIB,
                fds: samples.iter().rev().find_map(|&i| w.fds[i]),
            })
            .collect()
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// None where `/proc/PID/fd` is not ours to read (another user's process).
fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: its ')' ends it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((utime + stime) / CLOCK_TICKS)
}

/// `NAME=PID`, for `--watch`.
pub fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=PID"))?;
    let pid = pid.parse().map_err(|_| format!("{pid:?} is not a pid"))?;
    Ok((name.to_string(), pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_watched() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(open_fds(me).unwrap() >= 3);
        assert!(cpu_seconds(me).is_some());
        assert_eq!(parse_watch("gateway=12").unwrap(), ("gateway".into(), 12));
        assert!(parse_watch("gateway").is_err());
    }

    #[test]
    fn an_interval_reports_its_own_samples() {
        let mut s = Sampler::new(&[("me".into(), std::process::id())]);
        s.sample(0.5);
        s.sample(1.5);
        let first = &s.within(0.0, 1.0)[0];
        assert!(first.rss_mib > 0.0 && first.fds.is_some());
        assert_eq!(s.within(2.0, 3.0)[0].rss_mib, 0.0);
    }
}
