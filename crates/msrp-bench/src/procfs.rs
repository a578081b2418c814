//! The measured relay's CPU time and memory, read from /proc: the PID given and every process
//! descended from it (Kamailio forks workers; msrpd is one process with threads, whose time
//! /proc/PID/stat already sums).

use std::collections::HashMap;

/// Clock ticks per second for /proc times (`getconf CLK_TCK`; 100 on Linux everywhere we run).
const CLK_TCK: f64 = 100.0;

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: split after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `pid` and all its descendants.
fn family(pid: u32) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && let Some(f) = stat_fields(p)
                && let Some(pp) = f.get(1).and_then(|v| v.parse().ok())
            {
                parent.insert(p, pp);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// User + system CPU seconds of `pid` and its descendants.
pub fn cpu_seconds(pid: u32) -> f64 {
    family(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| {
            // After the name: state(0) ppid(1) … utime(11) stime(12).
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (t(11) + t(12)) / CLK_TCK
        })
        .sum()
}

/// Proportional resident memory (KiB) of `pid` and its descendants: shared pages (Kamailio's
/// shared memory) are divided among the processes mapping them, not counted once each.
pub fn pss_kib(pid: u32) -> u64 {
    family(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .sum()
}
