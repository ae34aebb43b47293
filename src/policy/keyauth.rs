//! `keyauth`: finds the API key in the request
//! (locations in order, first non-empty wins), verifies it against the
//! policy's keyspaces through [`crate::keys::KeyService`], and on success
//! sets the Principal. Everything from config — locations, the permission
//! query, limits — is compiled here at load; a request only reads headers
//! and runs the verification.

use http::HeaderName;

use super::{CompileError, Credential, Outcome, Policy, PolicyState, Principal, RequestView, Resources};
use crate::config::policy::{KeyAuthSpec, LocationSpec};
use crate::errors::{ErrorCode, GatewayError};
use crate::keys::permissions::PermissionQuery;
use crate::keys::verify::{LimitRef, Verdict, VerifyRequest};
use crate::keys::Keys;

#[derive(Debug)]
enum Location {
    Bearer,
    Header {
        name: HeaderName,
        strip_prefix: Option<String>,
    },
    Query {
        name: String,
    },
}

impl Location {
    /// Where a key found here is, for `strip_credential`.
    fn credential(&self) -> Credential {
        match self {
            Self::Bearer => Credential::Header(http::header::AUTHORIZATION),
            Self::Header { name, .. } => Credential::Header(name.clone()),
            Self::Query { name } => Credential::Query(name.clone()),
        }
    }
}

#[derive(Debug)]
pub struct KeyAuth {
    keys: Keys,
    keyspaces: Vec<String>,
    locations: Vec<Location>,
    permissions: Option<PermissionQuery>,
    cost: i64,
    ratelimits: Vec<LimitRef>,
    strip_credential: bool,
}

impl KeyAuth {
    /// The key from the first location that has one, and that location.
    fn credential<'r>(&'r self, head: &'r http::request::Parts) -> Option<(std::borrow::Cow<'r, str>, &'r Location)> {
        self.locations
            .iter()
            .find_map(|location| Self::read(location, head).map(|key| (key, location)))
    }

    fn read<'r>(location: &'r Location, head: &'r http::request::Parts) -> Option<std::borrow::Cow<'r, str>> {
        match location {
            Location::Bearer => {
                // `Bearer <key>`, the scheme in any case (RFC 6750 §2.1).
                // Field values are ASCII here (`to_str`): ASCII trims suffice.
                let value = head
                    .headers
                    .get(http::header::AUTHORIZATION)?
                    .to_str()
                    .ok()?
                    .trim_ascii();
                let (scheme, key) = value.split_at_checked("bearer".len())?;
                let key = key.strip_prefix(' ')?.trim_ascii();
                (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(std::borrow::Cow::Borrowed(key))
            }
            Location::Header { name, strip_prefix } => head
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|value| match strip_prefix {
                    Some(prefix) => value
                        .get(..prefix.len())
                        .filter(|lead| lead.eq_ignore_ascii_case(prefix))
                        .map(|_| &value[prefix.len()..]),
                    None => Some(value),
                })
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(std::borrow::Cow::Borrowed),
            Location::Query { name } => head
                .uri
                .query()
                .and_then(|query| super::matcher::query_values(query, name).find(|v| !v.is_empty())),
        }
    }
}

fn compile_location(spec: &LocationSpec) -> Result<Location, String> {
    match (&spec.bearer, &spec.header, &spec.query) {
        (Some(_), None, None) => Ok(Location::Bearer),
        (None, Some(header), None) => {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| format!("invalid header name {:?}", header.name))?;
            let strip_prefix = header.strip_prefix.clone().filter(|p| !p.is_empty());
            Ok(Location::Header { name, strip_prefix })
        }
        (None, None, Some(query)) if !query.name.is_empty() => Ok(Location::Query {
            name: query.name.clone(),
        }),
        (None, None, Some(_)) => Err("query.name must not be empty".into()),
        _ => Err("a location is exactly one of bearer, header or query".into()),
    }
}

impl Policy for KeyAuth {
    type Spec = KeyAuthSpec;
    const KIND: &'static str = "keyauth";
    const AUTHENTICATES: bool = true;

    /// Every keyspace must exist in the config or the store.
    fn from_spec(spec: &KeyAuthSpec, resources: &Resources<'_>) -> Result<Self, CompileError> {
        let keys = &resources.keys;
        if spec.keyspaces.is_empty() {
            return Err((".keyspaces".into(), "name at least one keyspace".into()));
        }
        for (i, id) in spec.keyspaces.iter().enumerate() {
            let in_store = keys
                .service
                .store()
                .keyspace(id)
                .map_err(|e| (format!(".keyspaces[{i}]"), e.to_string()))?
                .is_some();
            if keys.statics.keyspace(id).is_none() && !in_store {
                return Err((
                    format!(".keyspaces[{i}]"),
                    format!("unknown keyspace {id:?} (not in `keyspaces` nor created with apis.createApi)"),
                ));
            }
        }
        let mut locations = Vec::with_capacity(spec.locations.len().max(1));
        for (i, location) in spec.locations.iter().enumerate() {
            locations.push(compile_location(location).map_err(|m| (format!(".locations[{i}]"), m))?);
        }
        if locations.is_empty() {
            locations.push(Location::Bearer);
        }
        let permissions = match spec.permission_query.as_deref() {
            Some(text) => PermissionQuery::parse(text).map_err(|e| (".permission_query".to_string(), e.to_string()))?,
            None => None,
        };
        let mut ratelimits = Vec::with_capacity(spec.ratelimits.len());
        for (i, limit) in spec.ratelimits.iter().enumerate() {
            let inline = match (limit.limit, &limit.duration) {
                (None, None) => None,
                (Some(n), Some(d)) if n > 0 && !d.0.is_zero() => Some((n, d.0.as_millis() as u64)),
                _ => {
                    return Err((
                        format!(".ratelimits[{i}]"),
                        "an inline limit needs both `limit` (at least 1) and `duration` (more than 0)".into(),
                    ))
                }
            };
            ratelimits.push(LimitRef {
                name: limit.name.clone(),
                inline,
                cost: 1,
            });
        }
        Ok(Self {
            keys: keys.clone(),
            keyspaces: spec.keyspaces.clone(),
            locations,
            permissions,
            cost: i64::from(spec.credits),
            ratelimits,
            strip_credential: spec.strip_credential,
        })
    }

    async fn evaluate(&self, request: &RequestView<'_>, state: &mut PolicyState) -> Outcome {
        let Some((key, location)) = self.credential(request.head) else {
            return Outcome::Reject(ErrorCode::MissingCredentials.into());
        };
        let verify = VerifyRequest {
            keyspaces: Some(&self.keyspaces),
            cost: self.cost,
            ratelimits: &self.ratelimits,
            permissions: self.permissions.as_ref(),
            at: request.received,
        };
        let result = self.keys.service.verify(&self.keys.statics, &key, &verify).await;
        state.limits.extend(result.limits.iter().map(|l| l.decision));
        let code = match result.verdict {
            Verdict::Valid => {
                if let Some(key) = &result.key {
                    state.principal = Some(Principal {
                        subject: key.subject().to_string(),
                        json: key.principal_json(result.credits),
                    });
                }
                if self.strip_credential {
                    state.credential = Some(location.credential());
                }
                return Outcome::Continue;
            }
            Verdict::NotFound | Verdict::Disabled | Verdict::Expired => ErrorCode::InvalidKey,
            Verdict::UsageExceeded => ErrorCode::UsageExceeded,
            Verdict::RateLimited => ErrorCode::RateLimited,
            Verdict::InsufficientPermissions => ErrorCode::InsufficientPermissions,
            Verdict::UnknownLimit(name) => {
                tracing::error!(limit = %name, "keyauth names a rate limit that neither the key nor its identity has, without inline limit/duration");
                ErrorCode::InternalServerError
            }
            Verdict::Unavailable(_) => ErrorCode::StoreUnavailable,
        };
        Outcome::Reject(GatewayError::new(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_key_is_read_in_any_scheme_case_and_anything_else_is_none() {
        let read = |value: &str| {
            let head = crate::routing::request_head("GET", "/", &[("authorization", value)]);
            KeyAuth::read(&Location::Bearer, &head).map(|key| key.into_owned())
        };
        for (value, key) in [
            ("Bearer k1", Some("k1")),
            ("bearer   k2  ", Some("k2")),
            ("  BEARER k3", Some("k3")),
            ("Bearer", None),
            ("Bearer   ", None),
            ("Bearerk", None),
            ("Bearer\tk", None),
            ("Basic k", None),
            ("Bear k", None),
        ] {
            assert_eq!(read(value).as_deref(), key, "{value:?}");
        }
    }
}
