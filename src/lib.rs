//! keygate: a self-hosted API gateway. See `docs/architecture.md` for the
//! layers: `cli` → `app` → `proxy`, `admin`, `providers` → `runtime` (the
//! compiled snapshot) → `policy`, `routing`, `upstream`, `tls`, `openapi` →
//! `keys`, `ratelimit` → `telemetry`, `state`, `net`, `http_client` →
//! `config`, `errors`. Nothing imports upward.

pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod errors;
pub mod http_client;
pub mod keys;
pub mod net;
pub mod openapi;
pub mod platform;
pub mod policy;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod routing;
pub mod runtime;
pub mod stack_text;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
