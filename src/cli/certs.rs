//! `keygate certs list`: the certificates the running gateway serves.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::Value;

use super::table::print_table;
use super::target::{ClientArgs, Target};

pub async fn list(config_path: &Path, args: &ClientArgs) -> ExitCode {
    let answer = match Target::authenticated(config_path, args) {
        Ok(target) => target
            .client
            .call(Method::GET, "/v1/certs", None)
            .await
            .map_err(|e| e.to_string()),
        Err(message) => Err(message),
    };
    match answer {
        Ok(document) => {
            print_certificates(&document["data"]["certificates"]);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("keygate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_certificates(certificates: &Value) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let rows: Vec<[String; 5]> = certificates
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let not_after = c["not_after"].as_i64().unwrap_or(0);
            let expires = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64));
            [
                c["host"].as_str().unwrap_or("").to_string(),
                c["source"].as_str().unwrap_or("").to_string(),
                c["issuer"].as_str().unwrap_or("").to_string(),
                expires.to_string(),
                ((not_after - now) / 86_400).to_string(),
            ]
        })
        .collect();
    print_table(&["HOST", "SOURCE", "ISSUER", "NOT AFTER", "DAYS LEFT"], &rows);
}
