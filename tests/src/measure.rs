//! What the benchmarks measure about this process: CPU time and peak memory (Linux).

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the command name;
    // Linux counts them in 100 Hz ticks.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process, in MiB, from `/proc/self/status`.
pub fn peak_memory_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Resets the peak [`peak_memory_mib`] reports to the current resident memory (Linux's
/// `/proc/self/clear_refs`), so that a phase's peak is its own; `false` where not possible.
pub fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Resident memory of this process now, in MiB.
pub fn resident_memory_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A memory line of `/proc/self/status` (in kB there), in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
