//! Leveled logging for daemons and tools.
//!
//! The level comes from the caller (a `--log-level` flag or the conf file)
//! and can be refined with the `KALMAR_LOG` environment variable, which takes
//! tracing's filter syntax (`info,kalmar_osd=debug`).

use std::path::Path;

/// Initialises the global logger once; later calls are ignored. Logs go to
/// `file` (appended) when given, else to stderr.
pub fn init(default_level: &str, file: Option<&Path>) -> std::io::Result<()> {
    let filter = std::env::var("KALMAR_LOG").unwrap_or_else(|_| default_level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_thread_names(true)
        .with_target(true);
    let result = match file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    // Already initialised (tests, or a binary that calls twice): fine.
    let _ = result;
    Ok(())
}
