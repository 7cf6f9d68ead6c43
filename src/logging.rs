//! Structured logs with `tracing`, as text or JSON, on stderr. Text is
//! coloured only when stderr is a terminal and `NO_COLOR` is unset
//! (no-color.org): escape codes are noise in files and the journal.
//!
//! Nothing logged carries a secret: targets are logged by `addr`, and
//! passwords live in `Secret`, whose formatting is redacted.

use std::io::IsTerminal as _;

use crate::config::LogFormat;

pub fn init(level: &str, format: LogFormat) {
    // The level applies to our crate; dependencies stay at warn unless the
    // operator asks for more with RUST_LOG.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| format!("warn,redis_vitals={level}"));
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether text logs are coloured: on a terminal, unless `NO_COLOR` is set
/// to a non-empty value.
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
