//! Small helpers about the process a host, a provider or a tool runs in: the
//! machine's name, executables on `$PATH`, and waiting for SIGINT/SIGTERM.
//! Shared here, in the light crate every binary already depends on (with its
//! `client` feature; actors built for wasm do not get this module).

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
};

/// The machine's host name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
/// `unknown`. Never fails; used for labels and provider locations.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// The first executable file called `name` in the directories of `$PATH`;
/// `None` when `$PATH` is unset or no directory has one.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in_path(name, &std::env::var_os("PATH")?)
}

/// The first executable file called `name` in the directories of `path`, a list
/// in the form of `$PATH`. Files without an execute bit are skipped, as a shell
/// would.
pub fn find_in_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves at the first SIGINT or SIGTERM and says which (`"SIGINT"` or
/// `"SIGTERM"`). When SIGTERM cannot be listened for (logged as a warning),
/// only SIGINT ends the wait.
pub async fn shutdown_signal() -> String {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT".into();
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT".into(),
        _ = term.recv() => "SIGTERM".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_executables() {
        let dir = std::env::temp_dir().join(format!("lattice-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, "").unwrap();
        let tool = dir.join("tool");
        std::fs::write(&tool, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), &dir]).unwrap();
        assert_eq!(find_in_path("tool", &path), Some(tool));
        assert_eq!(find_in_path("plain", &path), None);
        assert_eq!(find_in_path("missing", &path), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!hostname().is_empty());
    }
}
