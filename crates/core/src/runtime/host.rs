//! What a server binary learns from the host it runs on: its name and the default work directory.

use std::path::PathBuf;

/// The kernel's host name, or `fallback` where it cannot be read.
pub fn hostname(fallback: &str) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}

/// An instance id unique across restarts: `<prefix>-<8 random hex digits>`.
pub fn instance_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// `$HOME/.meshplane`, or `/var/lib/meshplane/.meshplane` for a user without a home.
pub fn default_work_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/lib/meshplane".into())
        .join(".meshplane")
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_ids_differ_and_keep_their_prefix() {
        let (a, b) = (super::instance_id("east-h"), super::instance_id("east-h"));
        assert_ne!(a, b);
        assert!(
            a.starts_with("east-h-") && a.len() == "east-h-".len() + 8,
            "{a}"
        );
    }
}
