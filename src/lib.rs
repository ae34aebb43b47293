//! keygate: a self-hosted API gateway. Requests flow
//! `proxy` → `routing` → `policy` → `upstream`; `config` is compiled into a
//! `snapshot` that `reload` swaps atomically, with the routes of the other
//! `providers` (Kubernetes) merged in; `errors` owns every error code.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod errors;
pub mod http_get;
pub mod keys;
pub mod openapi;
pub mod policy;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod routing;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
