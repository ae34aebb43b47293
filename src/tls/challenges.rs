//! Pending ACME HTTP-01 challenges (RFC 8555 §8.3): the ACME task publishes
//! a token's key authorization here while an order waits for validation, and
//! the plain-HTTP listener answers `/.well-known/acme-challenge/<token>` from
//! it. With `state.redis`, other replicas' pending tokens are mirrored in
//! too, so whichever replica the CA reaches can answer. Read on the request
//! path without a lock (arc-swapped maps that only the ACME task replaces).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Where the CA fetches HTTP-01 responses.
pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// token → key authorization, for the orders currently being validated.
#[derive(Debug, Default)]
pub struct ChallengeTokens {
    /// This replica's orders.
    pending: ArcSwap<HashMap<String, String>>,
    /// Every replica's, as last read from Redis.
    mirrored: ArcSwap<HashMap<String, String>>,
}

impl ChallengeTokens {
    /// The body to answer `path` with, when it names a pending token.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(PATH_PREFIX)?;
        let local = self.pending.load().get(token).cloned();
        local.or_else(|| self.mirrored.load().get(token).cloned())
    }

    /// Replaces the tokens mirrored from the replicas' shared state.
    pub fn mirror(&self, tokens: HashMap<String, String>) {
        self.mirrored.store(Arc::new(tokens));
    }

    /// Serves `key_authorization` for `token` until [`ChallengeTokens::withdraw`].
    pub fn publish(&self, token: &str, key_authorization: &str) {
        self.pending.rcu(|pending| {
            let mut next = HashMap::clone(pending);
            next.insert(token.to_string(), key_authorization.to_string());
            next
        });
    }

    pub fn withdraw(&self, token: &str) {
        self.pending.rcu(|pending| {
            let mut next = HashMap::clone(pending);
            next.remove(token);
            next
        });
    }
}

/// Withdraws the tokens it published when dropped, so a failed or abandoned
/// order leaves nothing behind.
pub struct Published {
    tokens: Arc<ChallengeTokens>,
    published: Vec<String>,
}

impl Published {
    pub fn new(tokens: Arc<ChallengeTokens>) -> Self {
        Self {
            tokens,
            published: Vec::new(),
        }
    }

    pub fn publish(&mut self, token: &str, key_authorization: &str) {
        self.tokens.publish(token, key_authorization);
        self.published.push(token.to_string());
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        for token in &self.published {
            self.tokens.withdraw(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_pending_tokens_until_withdrawn() {
        let tokens = Arc::new(ChallengeTokens::default());
        {
            let mut published = Published::new(tokens.clone());
            published.publish("tok1", "tok1.thumb");
            assert_eq!(
                tokens.answer("/.well-known/acme-challenge/tok1").as_deref(),
                Some("tok1.thumb")
            );
            assert_eq!(tokens.answer("/.well-known/acme-challenge/other"), None);
            assert_eq!(tokens.answer("/tok1"), None);
        }
        assert_eq!(tokens.answer("/.well-known/acme-challenge/tok1"), None);
        tokens.mirror(HashMap::from([("peer".to_string(), "peer.thumb".to_string())]));
        assert_eq!(
            tokens.answer("/.well-known/acme-challenge/peer").as_deref(),
            Some("peer.thumb")
        );
    }
}
