//! Applies a route's header filters, computed by `routing`, to the request
//! an instance receives and to the response the client receives.

use http::{HeaderName, HeaderValue};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::routing::filters::HeaderFilter;

/// The header edits pingora's request and response heads both offer.
pub trait EditHeaders {
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()>;
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()>;
    fn remove(&mut self, name: &HeaderName);
}

impl EditHeaders for RequestHeader {
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.insert_header(name.clone(), value.clone())
    }
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.append_header(name.clone(), value.clone()).map(drop)
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl EditHeaders for ResponseHeader {
    fn set(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.insert_header(name.clone(), value.clone())
    }
    fn add(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<()> {
        self.append_header(name.clone(), value.clone()).map(drop)
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

/// Applies `filters` in order.
pub fn apply(filters: &[HeaderFilter], head: &mut impl EditHeaders) -> Result<()> {
    for filter in filters {
        for name in &filter.remove {
            head.remove(name);
        }
        for (name, value) in &filter.set {
            head.set(name, value)?;
        }
        for (name, value) in &filter.add {
            head.add(name, value)?;
        }
    }
    Ok(())
}
