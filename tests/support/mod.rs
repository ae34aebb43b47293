//! Shared helpers for keygate's integration tests, one module per role.
//!
//! Tests drive the real `keygate` binary as a subprocess and talk to it only
//! over loopback. Every wait here is bounded; nothing synchronises on a bare
//! sleep.
//!
//! Each test binary compiles this tree on its own and uses only part of it,
//! hence the crate-wide `dead_code` allowance below.
#![allow(dead_code)]

pub mod collector;
pub mod gateway;
pub mod load_errors;
pub mod metrics;
pub mod net;
pub mod pebble;
pub mod postgres;
pub mod problem;
pub mod raw_http;
pub mod recording_upstream;
pub mod redis;
pub mod tls;
pub mod upstreams;
pub mod wait;
pub mod webdriver;
pub mod websocket;
