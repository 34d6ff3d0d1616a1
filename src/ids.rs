//! Identities: new random ids (plans, cubes, runs) and a process's start time, which with
//! its pid names one process across pid reuse. Reads only the clock and `/proc`.

use std::hash::BuildHasher;

/// A new id (of a plan, a cube or a run): 12 hex digits, random.
pub fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// A process's start time in clock ticks since boot, if it exists.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "pid (comm) ": state is field 3, starttime field 22.
    let rest = stat.rsplit_once(") ")?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}
