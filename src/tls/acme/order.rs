//! One certificate order for one host (RFC 8555 §7.4): HTTP-01 challenges
//! published for the plain-HTTP listener (and, with `state.redis`, for the
//! other replicas'), a CSR with a fresh key, the issued chain. Nothing here
//! touches the store or the disk.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
};

use super::shared::{Shared, MIRROR_GRACE};
use super::AcmeError;
use crate::tls::challenges::{ChallengeTokens, Published};

/// How long the CA may take to validate, and then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(90);
const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(60);

/// An issued certificate, PEM. The key never leaves this struct but to disk
/// and the store.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders a certificate for `host`, answering its HTTP-01 challenge from
/// `tokens` and, through `shared`, from every replica.
pub async fn issue(
    account: &Account,
    host: &str,
    tokens: Arc<ChallengeTokens>,
    shared: Option<&Shared>,
) -> Result<Issued, AcmeError> {
    let mut shared_tokens = Vec::new();
    let issued = issue_publishing(account, host, tokens, shared, &mut shared_tokens).await;
    if let Some(shared) = shared {
        for token in &shared_tokens {
            shared.withdraw_token(token).await;
        }
    }
    issued
}

async fn issue_publishing(
    account: &Account,
    host: &str,
    tokens: Arc<ChallengeTokens>,
    shared: Option<&Shared>,
    shared_tokens: &mut Vec<String>,
) -> Result<Issued, AcmeError> {
    let identifiers = [Identifier::Dns(host.to_string())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    // Withdrawn when this function returns, whatever the outcome.
    let mut published = Published::new(tokens);

    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(AcmeError::Refused(format!(
                    "the authorization for {host} is {status:?}"
                )));
            }
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| AcmeError::Refused(format!("the CA offers no HTTP-01 challenge for {host}")))?;
        let key_authorization = challenge.key_authorization();
        published.publish(&challenge.token, key_authorization.as_str());
        if let Some(shared) = shared {
            match shared.publish_token(&challenge.token, key_authorization.as_str()).await {
                Ok(()) => {
                    shared_tokens.push(challenge.token.clone());
                    // Let every replica's mirror pick it up before the CA asks.
                    tokio::time::sleep(MIRROR_GRACE).await;
                }
                Err(error) => tracing::warn!(host, "only this replica can answer the challenge: {error}"),
            }
        }
        challenge.set_ready().await?;
    }

    let validation = RetryPolicy::new().timeout(VALIDATION_TIMEOUT);
    match order.poll_ready(&validation).await? {
        OrderStatus::Ready => {}
        status => return Err(AcmeError::Refused(invalid_reason(&mut order, host, status).await)),
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order
        .poll_certificate(&RetryPolicy::new().timeout(ISSUANCE_TIMEOUT))
        .await?;
    Ok(Issued { chain_pem, key_pem })
}

/// Why validation failed, from the challenges' errors (what an operator
/// needs to fix DNS or port 80).
async fn invalid_reason(order: &mut Order, host: &str, status: OrderStatus) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        if let Ok(state) = authorization.refresh().await {
            reasons.extend(
                state
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref())
                    .map(ToString::to_string),
            );
        }
    }
    match reasons.is_empty() {
        true => format!("the order for {host} is {status:?}"),
        false => format!("the order for {host} is {status:?}: {}", reasons.join("; ")),
    }
}
