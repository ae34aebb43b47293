//! The Principal v1 JSON (docs/api.md) for a key, forwarded to instances
//! as `X-Unkey-Principal`. Everything but the credit balance is fixed per
//! key (and role catalogue), so it is rendered once into two halves when
//! the key is loaded; a request only splices in its balance.

use serde_json::{json, Value};

use super::model::KeyRecord;

/// A key's Principal, pre-rendered around the `credits` field.
#[derive(Debug, Clone)]
pub struct PrincipalTemplate {
    /// Everything before `"credits"` (ends with a comma).
    head: String,
    /// From `"meta"` to the end.
    tail: String,
}

impl PrincipalTemplate {
    /// The Principal of `record`, whose permissions (its own and its roles') are `permissions`.
    pub fn new(record: &KeyRecord, permissions: &[String]) -> Self {
        let subject = record
            .identity
            .as_ref()
            .map_or_else(|| record.id.clone(), |i| i.external_id.clone());
        let mut head = format!(r#"{{"version":"v1","subject":{},"type":"API_KEY","#, quote(&subject));
        if let Some(identity) = &record.identity {
            let identity = json!({"externalId": identity.external_id, "meta": Value::Object(identity.meta.clone())});
            head.push_str(&format!(r#""identity":{identity},"#));
        }
        head.push_str(&format!(
            r#""source":{{"key":{{"keyId":{},"keySpaceId":{},"#,
            quote(&record.id),
            quote(&record.keyspace_id)
        ));
        if let Some(name) = record.name.as_deref().filter(|n| !n.is_empty()) {
            head.push_str(&format!(r#""name":{},"#, quote(name)));
        }
        if let Some(expires) = record.expires {
            head.push_str(&format!(r#""expiresAt":{expires},"#));
        }
        let mut tail = format!(r#""meta":{}"#, Value::Object(record.meta.clone()));
        for (field, list) in [("roles", record.roles.as_slice()), ("permissions", permissions)] {
            if !list.is_empty() {
                let mut sorted = list.to_vec();
                sorted.sort();
                tail.push_str(&format!(r#","{field}":{}"#, json!(sorted)));
            }
        }
        tail.push_str("}}}");
        Self { head, tail }
    }

    /// The compact JSON with `credits` (the balance after this request) when the key is limited.
    pub fn render(&self, credits: Option<i64>) -> String {
        let mut out = String::with_capacity(self.head.len() + self.tail.len() + 24);
        out.push_str(&self.head);
        if let Some(credits) = credits {
            out.push_str(r#""credits":"#);
            out.push_str(&credits.to_string());
            out.push(',');
        }
        out.push_str(&self.tail);
        out
    }
}

fn quote(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::Identity;
    use serde_json::Map;

    fn record() -> KeyRecord {
        KeyRecord {
            id: "key_3x".into(),
            keyspace_id: "ks_main".into(),
            start: "sk_ab".into(),
            name: None,
            meta: Map::new(),
            identity: None,
            roles: vec![],
            permissions: vec![],
            expires: None,
            enabled: true,
            credits: None,
            ratelimits: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn minimal_principal() {
        let p = PrincipalTemplate::new(&record(), &[]);
        assert_eq!(
            p.render(None),
            r#"{"version":"v1","subject":"key_3x","type":"API_KEY","source":{"key":{"keyId":"key_3x","keySpaceId":"ks_main","meta":{}}}}"#
        );
    }

    #[test]
    fn full_principal_matches_the_spec_example() {
        let mut r = record();
        r.name = Some("ACME prod".into());
        r.expires = Some(1717200000000);
        r.roles = vec!["admin".into()];
        r.permissions = vec!["api.read".into()];
        let mut identity = Identity::new("user_42".into());
        identity.meta.insert("plan".into(), json!("pro"));
        r.identity = Some(identity);
        let p = PrincipalTemplate::new(&r, &r.permissions);
        assert_eq!(
            p.render(Some(4900)),
            r#"{"version":"v1","subject":"user_42","type":"API_KEY","identity":{"externalId":"user_42","meta":{"plan":"pro"}},"source":{"key":{"keyId":"key_3x","keySpaceId":"ks_main","name":"ACME prod","expiresAt":1717200000000,"credits":4900,"meta":{},"roles":["admin"],"permissions":["api.read"]}}}"#
        );
    }
}
