//! Where the agent keeps its files.

use std::path::PathBuf;

/// `%LOCALAPPDATA%\CertHubAgent`: per-user configuration, DPAPI-sealed secrets, the outbox.
pub fn agent_data_dir() -> Option<PathBuf> {
    known_dir("LOCALAPPDATA").map(|d| d.join("CertHubAgent"))
}

/// `%ProgramData%\CertHubAgent\publish`: where an installer drops a new agent version.
pub fn publish_dir() -> Option<PathBuf> {
    known_dir("ProgramData").map(|d| d.join("CertHubAgent").join("publish"))
}

fn known_dir(variable: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directories_are_absolute_windows_paths() {
        let data = agent_data_dir().unwrap();
        assert!(data.is_absolute(), "{data:?}");
        assert!(data.ends_with("CertHubAgent"));
        let publish = publish_dir().unwrap();
        assert!(publish.is_absolute(), "{publish:?}");
        assert!(publish.ends_with(r"CertHubAgent\publish"));
    }
}
