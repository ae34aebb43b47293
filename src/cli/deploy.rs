//! `keygate deploy create|list|get|promote|rollback`: the Deployments API
//! from a terminal or a CI job, through the running gateway's admin API.
//! `create --wait` prints each status change until the deployment is ready
//! (exit 0) or failed (exit 1).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::table::print_table;
use super::target::{ClientArgs, Target};

/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Create a deployment of a project (its id, d_…, is printed).
    Create {
        /// The project's id (`projects[].id`).
        #[arg(long)]
        project: String,
        /// The environment.
        #[arg(long = "env", default_value = "production")]
        environment: String,
        /// The git branch it was built from.
        #[arg(long, default_value = "main")]
        branch: String,
        /// The commit SHA (its first 7 characters name the commit domain).
        #[arg(long)]
        commit: Option<String>,
        /// An instance, ip:port (repeat for several).
        #[arg(long = "instance", value_name = "IP:PORT")]
        instances: Vec<String>,
        /// The image it runs, for the record.
        #[arg(long)]
        image: Option<String>,
        /// Print each status change until ready (exit 0) or failed (exit 1).
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this long (exit 1).
        #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
        wait_timeout: Duration,
    },
    /// A project's deployments, newest first.
    List {
        /// The project's id.
        #[arg(long)]
        project: String,
        /// Only this environment's.
        #[arg(long = "env")]
        environment: Option<String>,
    },
    /// One deployment: status, domains, instances.
    Get {
        /// Its id (d_…).
        deployment_id: String,
    },
    /// Make a deployment its environment's live one.
    Promote {
        /// Its id (d_…).
        deployment_id: String,
    },
    /// Make the environment's previous live deployment live again.
    Rollback {
        /// The project's id.
        #[arg(long)]
        project: String,
        /// The environment.
        #[arg(long = "env", default_value = "production")]
        environment: String,
    },
}

pub async fn main(config_path: &Path, args: DeployArgs) -> ExitCode {
    let target = match Target::authenticated(config_path, &args.client) {
        Ok(target) => target,
        Err(message) => return fail(&message),
    };
    match run(&target, &args).await {
        Ok(code) => code,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("keygate: {message}");
    ExitCode::FAILURE
}

async fn call(target: &Target, operation: &str, body: Value) -> Result<Value, String> {
    target
        .client
        .call(Method::POST, &format!("/v2/{operation}"), Some(&body))
        .await
        .map_err(|e| e.to_string())
}

async fn run(target: &Target, args: &DeployArgs) -> Result<ExitCode, String> {
    let print = |document: &Value| {
        if args.json {
            println!("{}", serde_json::to_string_pretty(document).unwrap_or_default());
        }
    };
    match &args.command {
        DeployCommand::Create {
            project,
            environment,
            branch,
            commit,
            instances,
            image,
            wait,
            wait_timeout,
        } => {
            let mut body = json!({"projectId": project, "environmentSlug": environment, "branch": branch,
                                  "instances": instances});
            if let Some(sha) = commit {
                body["gitCommit"] = json!({"commitSha": sha});
            }
            if let Some(image) = image {
                body["dockerImage"] = json!(image);
            }
            let created = call(target, "deploy.createDeployment", body).await?;
            let id = created["data"]["deploymentId"].as_str().unwrap_or_default().to_string();
            print(&created);
            if !args.json {
                println!("{id}");
            }
            if *wait {
                return wait_until_settled(target, &id, *wait_timeout, args.json).await;
            }
        }
        DeployCommand::List { project, environment } => {
            let mut body = json!({"projectId": project});
            if let Some(environment) = environment {
                body["environmentSlug"] = json!(environment);
            }
            let listed = call(target, "deploy.listDeployments", body).await?;
            print(&listed);
            if !args.json {
                let rows: Vec<[String; 6]> = listed["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        [
                            text(&d["id"]),
                            text(&d["environmentSlug"]),
                            text(&d["branch"]),
                            text(&d["gitCommit"]["commitSha"]).chars().take(7).collect(),
                            status(d),
                            if d["live"] == true {
                                "live".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect();
                print_table(&["ID", "ENV", "BRANCH", "COMMIT", "STATUS", ""], &rows);
            }
        }
        DeployCommand::Get { deployment_id } => {
            let got = call(target, "deploy.getDeployment", json!({"deploymentId": deployment_id})).await?;
            print(&got);
            if !args.json {
                describe(&got["data"]);
            }
        }
        DeployCommand::Promote { deployment_id } => {
            let done = call(target, "deploy.promote", json!({"deploymentId": deployment_id})).await?;
            print(&done);
            if !args.json {
                println!("promoted {deployment_id}");
            }
        }
        DeployCommand::Rollback { project, environment } => {
            let done = call(
                target,
                "deploy.rollback",
                json!({"projectId": project, "environmentSlug": environment}),
            )
            .await?;
            print(&done);
            if !args.json {
                println!("live: {}", text(&done["data"]["deploymentId"]));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls until the deployment is ready (0) or failed (1), printing each change.
async fn wait_until_settled(target: &Target, id: &str, timeout: Duration, as_json: bool) -> Result<ExitCode, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let got = call(target, "deploy.getDeployment", json!({"deploymentId": id})).await?;
        let status = status(&got["data"]);
        if status != last {
            if as_json {
                println!("{}", serde_json::to_string(&got["data"]).unwrap_or_default());
            } else {
                println!("status: {status}");
            }
            last = status.clone();
        }
        match status.as_str() {
            "ready" | "standby" => {
                if !as_json {
                    describe(&got["data"]);
                }
                return Ok(ExitCode::SUCCESS);
            }
            "failed" | "archived" => {
                if !as_json {
                    eprintln!("keygate: {id} {status}: {}", text(&got["data"]["error"]));
                }
                return Ok(ExitCode::FAILURE);
            }
            _ if Instant::now() >= deadline => {
                return Err(format!("{id} is still {status} after {timeout:?}"));
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

fn describe(deployment: &Value) {
    println!("id:      {}", text(&deployment["id"]));
    println!(
        "status:  {}{}",
        status(deployment),
        if deployment["live"] == true { " (live)" } else { "" }
    );
    for domain in deployment["domains"].as_array().into_iter().flatten() {
        println!("domain:  {}", text(domain));
    }
    for instance in deployment["instances"].as_array().into_iter().flatten() {
        println!("instance: {}", text(&instance["address"]));
    }
}

/// The deployment's status in keygate's lower-case names (the API sends
/// it upper-case, as Unkey's internal API does).
fn status(deployment: &Value) -> String {
    text(&deployment["status"]).to_ascii_lowercase()
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_default()
}
