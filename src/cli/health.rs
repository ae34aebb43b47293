//! `keygate health`: is a gateway ready to serve? For the Docker
//! `HEALTHCHECK` and scripts: one line, exit 0 only when `/readyz` answers 200.

use std::path::Path;
use std::process::ExitCode;

use http::StatusCode;

use super::target::{AdminArgs, Target};

pub async fn health(config_path: &Path, args: &AdminArgs) -> ExitCode {
    let target = match Target::unauthenticated(config_path, args) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("keygate: {message}");
            return ExitCode::FAILURE;
        }
    };
    match target.client.probe("/readyz").await {
        Ok((StatusCode::OK, _)) => {
            println!("ready");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            // The gateway's own answer already starts with "not ready: ".
            let reason = body.trim();
            let reason = reason.strip_prefix("not ready: ").unwrap_or(reason);
            eprintln!(
                "not ready: {}",
                if reason.is_empty() { status.as_str() } else { reason }
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
