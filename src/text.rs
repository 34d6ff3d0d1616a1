//! Words for counts and sizes, shared by the engine's messages and both faces: `plural`
//! and `bytes_text`. Pure functions of their arguments; nothing here reads or writes.

/// `n` and the noun, in the singular for one: "1 tile", "2 tiles".
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if ["s", "x", "ch", "sh"].iter().any(|end| noun.ends_with(end)) {
        format!("{n} {noun}es")
    } else {
        format!("{n} {noun}s")
    }
}

/// Bytes as people read them (powers of 1000): "999 B", "1.5 KB", "2.0 GB".
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_words() {
        assert_eq!(plural(1, "tile"), "1 tile");
        assert_eq!(plural(0, "tile"), "0 tiles");
        assert_eq!(plural(3, "batch"), "3 batches");
        assert_eq!(plural(2, "new commit"), "2 new commits");
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(999), "999 B");
        assert_eq!(bytes_text(1500), "1.5 KB");
        assert_eq!(bytes_text(2_340_000_000), "2.3 GB");
    }
}
