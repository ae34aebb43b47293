//! `keygate reload`: the gateway reloads its configuration file now.

use std::path::Path;
use std::process::ExitCode;

use http::Method;

use super::client::CallError;
use super::target::{ClientArgs, Target};

pub async fn reload(config_path: &Path, args: &ClientArgs) -> ExitCode {
    let target = match Target::authenticated(config_path, args) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("keygate: {message}");
            return ExitCode::FAILURE;
        }
    };
    match target.client.call(Method::POST, "/v1/admin.reload", None).await {
        Ok(_) => {
            println!("reloaded the gateway at {}", target.client.url().unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(CallError::Failed(error)) => {
            eprintln!("keygate: not reloaded, the gateway keeps its previous configuration: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("keygate: {error}");
            ExitCode::FAILURE
        }
    }
}
