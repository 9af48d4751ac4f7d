//! Logging: `tracing-subscriber` with an env filter (`LATTICE_LOG`), human or JSON.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogConfig;

/// Installs the global subscriber. `default_filter` applies when `LATTICE_LOG`
/// (or the config's `log`) is unset. Logs go to stderr so stdout stays for output.
pub fn init(cfg: &LogConfig, default_filter: &str) {
    let filter = cfg
        .log
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if cfg.log_json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    // Already installed (tests, embedding): keep the existing one.
    let _ = result;
}
