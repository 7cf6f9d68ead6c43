//! Structured logs with `tracing`, as text or JSON, on stderr.
//!
//! Nothing logged carries a secret: targets are logged by `addr`, and
//! passwords live in `Secret`, whose formatting is redacted.

use crate::config::LogFormat;

pub fn init(level: &str, format: LogFormat) {
    // The level applies to our crate; dependencies stay at warn unless the
    // operator asks for more with RUST_LOG.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| format!("warn,redis_vitals={level}"));
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
