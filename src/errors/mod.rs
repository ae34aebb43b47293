//! The one place that knows keygate's error codes: the gateway's own
//! answers (`err:frontline:*`) and the admin API's (`err:unkey:*`) share one
//! code table, one error type ([`GatewayError`]) and one renderer
//! ([`render`]). Everything else returns a code; only this module turns it
//! into a status, a title, a docs URL and a response body.

mod render;

pub use render::{render, RenderedError, Representation};

/// Every error keygate answers with, one variant per code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // The gateway's answers to proxied requests.
    ConfigNotFound,
    DeploymentNotFound,
    NoRunningInstances,
    MissingCredentials,
    InvalidKey,
    InsufficientPermissions,
    RateLimited,
    UsageExceeded,
    FirewallDenied,
    OpenapiValidationFailed,
    RequestTooLarge,
    BadRequest,
    RequestTimeout,
    InvalidConfiguration,
    ServiceUnavailable,
    BadGateway,
    GatewayTimeout,
    InternalServerError,
    StoreUnavailable,
    // The admin API's answers (Unkey's codes).
    AuthenticationMissing,
    AuthenticationKeyNotFound,
    AuthorizationForbidden,
    InvalidInput,
    UnexpectedError,
    RouteNotFound,
    MethodNotAllowed,
    KeyNotFound,
    ApiNotFound,
    IdentityNotFound,
    PermissionNotFound,
    RoleNotFound,
    RatelimitNamespaceNotFound,
    RatelimitOverrideNotFound,
    DataConflict,
    IdentityAlreadyExists,
    PermissionAlreadyExists,
    RoleAlreadyExists,
    ProtectedResource,
    AdminStoreUnavailable,
    ProjectNotFound,
    AdminDeploymentNotFound,
    ActionNotAvailable,
}

impl ErrorCode {
    /// `(code, status)`: the code table.
    const fn entry(self) -> (&'static str, u16) {
        use ErrorCode::*;
        match self {
            ConfigNotFound => ("err:frontline:routing:config_not_found", 404),
            DeploymentNotFound => ("err:frontline:routing:deployment_not_found", 404),
            NoRunningInstances => ("err:frontline:capacity:no_running_instances", 503),
            MissingCredentials => ("err:frontline:client:missing_credentials", 401),
            InvalidKey => ("err:frontline:client:invalid_key", 401),
            InsufficientPermissions => ("err:frontline:client:insufficient_permissions", 403),
            RateLimited => ("err:frontline:client:rate_limited", 429),
            UsageExceeded => ("err:frontline:client:usage_exceeded", 429),
            FirewallDenied => ("err:frontline:client:firewall_denied", 403),
            OpenapiValidationFailed => ("err:frontline:client:openapi_validation_failed", 400),
            RequestTooLarge => ("err:frontline:client:request_too_large", 413),
            BadRequest => ("err:frontline:client:bad_request", 400),
            RequestTimeout => ("err:frontline:client:request_timeout", 408),
            InvalidConfiguration => ("err:frontline:config:invalid_configuration", 422),
            ServiceUnavailable => ("err:frontline:upstream:service_unavailable", 503),
            BadGateway => ("err:frontline:upstream:bad_gateway", 502),
            GatewayTimeout => ("err:frontline:upstream:gateway_timeout", 504),
            InternalServerError => ("err:frontline:platform:internal_server_error", 500),
            StoreUnavailable => ("err:frontline:platform:store_unavailable", 503),
            AuthenticationMissing => ("err:unkey:authentication:missing", 401),
            AuthenticationKeyNotFound => ("err:unkey:authentication:key_not_found", 401),
            AuthorizationForbidden => ("err:unkey:authorization:forbidden", 403),
            InvalidInput => ("err:unkey:application:invalid_input", 400),
            UnexpectedError => ("err:unkey:application:unexpected_error", 500),
            RouteNotFound => ("err:unkey:application:route_not_found", 404),
            MethodNotAllowed => ("err:unkey:application:method_not_allowed", 405),
            KeyNotFound => ("err:unkey:data:key_not_found", 404),
            ApiNotFound => ("err:unkey:data:api_not_found", 404),
            IdentityNotFound => ("err:unkey:data:identity_not_found", 404),
            PermissionNotFound => ("err:unkey:data:permission_not_found", 404),
            RoleNotFound => ("err:unkey:data:role_not_found", 404),
            RatelimitNamespaceNotFound => ("err:unkey:data:ratelimit_namespace_not_found", 404),
            RatelimitOverrideNotFound => ("err:unkey:data:ratelimit_override_not_found", 404),
            DataConflict => ("err:unkey:data:conflict", 409),
            IdentityAlreadyExists => ("err:unkey:data:identity_already_exists", 409),
            PermissionAlreadyExists => ("err:unkey:data:permission_already_exists", 409),
            RoleAlreadyExists => ("err:unkey:data:role_already_exists", 409),
            ProtectedResource => ("err:unkey:application:protected_resource", 412),
            AdminStoreUnavailable => ("err:unkey:application:service_unavailable", 503),
            ProjectNotFound => ("err:unkey:data:project_not_found", 404),
            AdminDeploymentNotFound => ("err:unkey:data:deployment_not_found", 404),
            ActionNotAvailable => ("err:unkey:application:precondition_failed", 412),
        }
    }

    pub const fn status(self) -> u16 {
        self.entry().1
    }

    /// The full code, e.g. `err:frontline:routing:config_not_found`; also the
    /// `error_code` metric label.
    pub const fn code(self) -> &'static str {
        self.entry().0
    }

    /// The HTTP reason phrase of the status.
    pub fn title(self) -> &'static str {
        http::StatusCode::from_u16(self.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
    }

    fn default_detail(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ConfigNotFound => "No route is configured for this host and path.",
            DeploymentNotFound => "The route points to a deployment that does not exist.",
            NoRunningInstances => "The deployment has no running instance.",
            MissingCredentials => "No credentials were found in the request.",
            InvalidKey => "The API key is invalid, disabled or expired.",
            InsufficientPermissions => "The credentials lack the permissions this request needs.",
            RateLimited => "Too many requests: a rate limit was exceeded.",
            UsageExceeded => "The key has no credits left.",
            FirewallDenied => "The request was denied by a firewall rule.",
            OpenapiValidationFailed => "The request does not match the API specification.",
            RequestTooLarge => "The request body is larger than this gateway accepts.",
            BadRequest => "The request is malformed (framing, headers or body encoding).",
            RequestTimeout => "The request body was not received in time.",
            InvalidConfiguration => "The deployment's policy configuration cannot be used.",
            ServiceUnavailable => "No instance of the deployment could be reached.",
            BadGateway => "The instance closed the connection or sent an invalid response.",
            GatewayTimeout => "The instance did not answer in time.",
            InternalServerError => "The gateway failed unexpectedly.",
            StoreUnavailable => "The key store cannot be reached and this key is not cached; try again.",
            AuthenticationMissing => "Authorization: Bearer <root key> is required.",
            AuthenticationKeyNotFound => "The root key is not valid.",
            AuthorizationForbidden => "The key is not allowed to use the admin API.",
            InvalidInput => "The request body is invalid.",
            UnexpectedError => "The request failed unexpectedly.",
            RouteNotFound => "The admin API has no such endpoint.",
            MethodNotAllowed => "The endpoint does not accept this method.",
            KeyNotFound => "The key does not exist.",
            ApiNotFound => "The API does not exist.",
            IdentityNotFound => "The identity does not exist.",
            PermissionNotFound => "The permission does not exist.",
            RoleNotFound => "The role does not exist.",
            RatelimitNamespaceNotFound => "The rate-limit namespace does not exist.",
            RatelimitOverrideNotFound => "The rate-limit override does not exist.",
            DataConflict => "The resource already exists.",
            IdentityAlreadyExists => "An identity with this externalId already exists.",
            PermissionAlreadyExists => "A permission with this slug already exists.",
            RoleAlreadyExists => "A role with this name already exists.",
            ProtectedResource => "The resource is defined in the config file and is read-only here; change it there.",
            AdminStoreUnavailable => "The database cannot be reached; nothing was changed. Try again.",
            ProjectNotFound => "The project does not exist.",
            AdminDeploymentNotFound => "The deployment does not exist.",
            ActionNotAvailable => "The deployment's state does not allow this action now (see its availableActions).",
        }
    }

    /// Where the code is documented: `<docs base>/<category>/<name>`. The
    /// gateway's codes live under `docs_base` (configurable, Unkey's by
    /// default); the admin API's under Unkey's API error docs.
    pub fn docs_url(self, docs_base: &str) -> String {
        let code = self.code();
        let (base, rest) = match code.strip_prefix("err:frontline:") {
            Some(rest) => (docs_base.trim_end_matches('/'), rest),
            None => (UNKEY_DOCS_BASE, code.trim_start_matches("err:")),
        };
        format!("{base}/{}", rest.replace(':', "/"))
    }
}

/// Where the gateway's codes are documented unless `errors.docs_base` says otherwise.
pub const DEFAULT_DOCS_BASE: &str = "https://unkey.com/docs/errors/frontline";
/// Where the admin API's `err:unkey:*` codes are documented.
const UNKEY_DOCS_BASE: &str = "https://unkey.com/docs/errors";

/// One of several problems behind an error (an OpenAPI violation, an
/// invalid admin API field), rendered in `error.errors[]`: where
/// (`body/items/2/price`, `body.credits.refill`), what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorItem {
    pub location: String,
    pub message: String,
    pub fix: Option<String>,
}

impl ErrorItem {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
            fix: None,
        }
    }
}

/// A failure keygate answers itself, with an optional specific detail and
/// the individual problems behind it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}", code.code(), self.detail())]
pub struct GatewayError {
    pub code: ErrorCode,
    detail: Option<String>,
    items: Vec<ErrorItem>,
}

impl GatewayError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            detail: None,
            items: Vec::new(),
        }
    }

    pub fn with_detail(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: Some(detail.into()),
            items: Vec::new(),
        }
    }

    /// Adds the individual problems, rendered as `error.errors`.
    pub fn with_items(mut self, items: Vec<ErrorItem>) -> Self {
        self.items = items;
        self
    }

    pub fn items(&self) -> &[ErrorItem] {
        &self.items
    }

    pub fn detail(&self) -> &str {
        self.detail.as_deref().unwrap_or_else(|| self.code.default_detail())
    }
}

impl From<ErrorCode> for GatewayError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_statuses_and_titles_follow_the_table() {
        assert_eq!(
            ErrorCode::ConfigNotFound.code(),
            "err:frontline:routing:config_not_found"
        );
        assert_eq!(ErrorCode::ConfigNotFound.status(), 404);
        assert_eq!(ErrorCode::ConfigNotFound.title(), "Not Found");
        assert_eq!(ErrorCode::UsageExceeded.title(), "Too Many Requests");
        assert_eq!(ErrorCode::InvalidConfiguration.title(), "Unprocessable Entity");
        assert_eq!(
            ErrorCode::GatewayTimeout.docs_url(DEFAULT_DOCS_BASE),
            "https://unkey.com/docs/errors/frontline/upstream/gateway_timeout"
        );
    }

    #[test]
    fn admin_codes_are_documented_under_unkeys_api_errors() {
        assert_eq!(ErrorCode::KeyNotFound.status(), 404);
        assert_eq!(ErrorCode::ProtectedResource.title(), "Precondition Failed");
        assert_eq!(
            ErrorCode::KeyNotFound.docs_url(DEFAULT_DOCS_BASE),
            "https://unkey.com/docs/errors/unkey/data/key_not_found"
        );
    }
}
