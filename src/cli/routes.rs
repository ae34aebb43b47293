//! `keygate routes`: the routing table the running gateway uses — or, when
//! no gateway answers, the one the config file describes, saying so.

use std::path::Path;
use std::process::ExitCode;

use http::Method;
use serde_json::Value;

use super::table::print_table;
use super::target::{ClientArgs, Target};
use crate::config::ConfigError;

pub async fn routes(config_path: &Path, args: &ClientArgs) -> ExitCode {
    let target = match Target::authenticated(config_path, args) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("keygate: {message}");
            return ExitCode::FAILURE;
        }
    };
    let table = match target.client.call(Method::GET, "/v1/routes", None).await {
        Ok(document) => document["data"].clone(),
        Err(error) if error.no_gateway_answered() => {
            target.notes.say(&error);
            let snapshot = match target
                .config
                .get()
                .map_err(ConfigError::clone)
                .and_then(super::compile_offline)
            {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    eprintln!("keygate: {error}\n{e}");
                    return ExitCode::FAILURE;
                }
            };
            let whom = match target.client.url() {
                Some(url) => format!("no gateway answered at {url}"),
                None => "listen.admin is off".to_string(),
            };
            println!("({whom}; showing the routes of {})", target.config.path.display());
            crate::admin::routes::describe(&snapshot)
        }
        Err(error) => {
            eprintln!("keygate: {error}");
            return ExitCode::FAILURE;
        }
    };
    print_routes(&table);
    ExitCode::SUCCESS
}

/// One deployment by name; a weighted split as `a 90%, b 10%`.
fn describe_backends(route: &Value) -> String {
    let backends: Vec<(&str, u64)> = route["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                b["deployment"].as_str().unwrap_or(""),
                b["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let total: u64 = backends.iter().map(|(_, weight)| weight).sum();
    match backends.as_slice() {
        [] => String::new(),
        [(only, _)] => only.to_string(),
        _ => backends
            .iter()
            .map(|(id, weight)| format!("{id} {}%", weight * 100 / total.max(1)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn print_routes(table: &Value) {
    let rows: Vec<[String; 5]> = table["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let path = r["path_prefix"].as_str().unwrap_or("/");
            let mut notes = Vec::new();
            if r["strip_prefix"].as_bool().unwrap_or(false) {
                notes.push("strip prefix".to_string());
            }
            if r["conditional"].as_bool().unwrap_or(false) {
                notes.push("when matched".to_string());
            }
            if r["redirect"].as_bool().unwrap_or(false) {
                notes.push("redirects".to_string());
            }
            if let Some(code) = r["refusal"].as_str() {
                notes.push(format!("answers {code}"));
            }
            // nginx's notation for exact (Kubernetes `pathType: Exact`) and regex locations.
            let path = match r["path_regex"].as_str() {
                Some(regex) => format!("~ {regex}"),
                None if r["exact"].as_bool().unwrap_or(false) => format!("= {path}"),
                None => path.to_string(),
            };
            [
                r["host"].as_str().unwrap_or("").to_string(),
                path,
                describe_backends(r),
                r["provider"].as_str().unwrap_or("").to_string(),
                notes.join(", "),
            ]
        })
        .collect();
    print_table(&["HOST", "PATH", "DEPLOYMENT", "PROVIDER", "NOTES"], &rows);
    println!();
    let rows: Vec<[String; 4]> = table["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let instances: Vec<String> = d["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let state = match (i["healthy"].as_bool(), i["available"].as_bool()) {
                        (Some(false), _) => "unhealthy",
                        (_, Some(false)) => "ejected",
                        _ => "up",
                    };
                    format!("{} ({state})", i["address"].as_str().unwrap_or("?"))
                })
                .collect();
            [
                d["id"].as_str().unwrap_or("").to_string(),
                d["environment"].as_str().unwrap_or("").to_string(),
                format!(
                    "{}/{}",
                    d["protocol"].as_str().unwrap_or(""),
                    d["selection"].as_str().unwrap_or("")
                ),
                instances.join(", "),
            ]
        })
        .collect();
    print_table(
        &["DEPLOYMENT", "ENVIRONMENT", "PROTOCOL/SELECTION", "INSTANCES (STATE)"],
        &rows,
    );
}
