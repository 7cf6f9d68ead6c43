//! The `redis-vitals` binary: parse configuration, bind, run until a signal.
#![forbid(unsafe_code)]

use redis_vitals::{config, daemon, logging};

fn main() -> std::process::ExitCode {
    let cfg = match config::Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redis-vitals: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    logging::init(&cfg.log_level, cfg.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redis-vitals: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let addr = match config::resolve_listen(&cfg.listen_address) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("redis-vitals: configuration error: web.listen-address: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let bound = addr
            .parse()
            .map_err(std::io::Error::other)
            .and_then(redis_vitals::web::bind);
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                eprintln!("redis-vitals: cannot listen on {addr}: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        tracing::info!(listen = %addr, nodes = cfg.targets.len(), "redis-vitals started");
        daemon::run(cfg, listener, shutdown_signal()).await;
        std::process::ExitCode::SUCCESS
    })
}

/// SIGTERM (service managers) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
