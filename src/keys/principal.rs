//! The Principal v1 JSON (docs/api.md) for a key, forwarded to instances
//! as `X-Unkey-Principal`. Everything but the credit balance is fixed per
//! key (and role catalogue), so it is rendered once into two halves when
//! the key is loaded; a request only splices in its balance. A key without
//! a balance forwards one header value made at load, shared by every
//! request.

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{json, Value};

use super::model::KeyRecord;

/// A key's Principal, pre-rendered around the `credits` field.
#[derive(Debug, Clone)]
pub struct PrincipalTemplate {
    /// Everything before `"credits"` (ends with a comma).
    head: String,
    /// From `"meta"` to the end.
    tail: String,
    /// The whole Principal without a balance, as forwarded.
    fixed: HeaderValue,
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
        let fixed = header_json(format!("{head}{tail}"));
        Self { head, tail, fixed }
    }

    /// The compact JSON, as a header value, with `credits` (the balance
    /// after this request) when the key is limited.
    pub fn render(&self, credits: Option<i64>) -> HeaderValue {
        let Some(credits) = credits else {
            return self.fixed.clone();
        };
        let mut out = String::with_capacity(self.head.len() + self.tail.len() + 32);
        out.push_str(&self.head);
        out.push_str(r#""credits":"#);
        out.push_str(itoa::Buffer::new().format(credits));
        out.push(',');
        out.push_str(&self.tail);
        header_json(out)
    }
}

/// Compact JSON as a header value. serde_json escapes every control
/// character but DEL, the one other byte no field may carry; DEL can only
/// stand inside a string, where `\u007f` means the same, so it is escaped
/// here and any Principal can be forwarded.
pub fn header_json(json: String) -> HeaderValue {
    let json = match json.contains('\u{7f}') {
        true => json.replace('\u{7f}', "\\u007f"),
        false => json,
    };
    // Every byte left is one a field may carry; `null` stands for what
    // cannot happen rather than a panic.
    HeaderValue::from_maybe_shared(Bytes::from(json)).unwrap_or_else(|_| HeaderValue::from_static("null"))
}

fn quote(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::Identity;

    fn record() -> KeyRecord {
        KeyRecord::bare("key_3x", "ks_main", "sk_ab")
    }

    #[test]
    fn minimal_principal() {
        let p = PrincipalTemplate::new(&record(), &[]);
        assert_eq!(
            p.render(None).to_str().unwrap(),
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
            p.render(Some(4900)).to_str().unwrap(),
            r#"{"version":"v1","subject":"user_42","type":"API_KEY","identity":{"externalId":"user_42","meta":{"plan":"pro"}},"source":{"key":{"keyId":"key_3x","keySpaceId":"ks_main","name":"ACME prod","expiresAt":1717200000000,"credits":4900,"meta":{},"roles":["admin"],"permissions":["api.read"]}}}"#
        );
    }

    #[test]
    fn a_del_in_a_value_is_escaped_and_every_principal_is_a_header_value() {
        let mut r = record();
        r.meta.insert("odd".into(), json!("a\u{7f}b\tc\u{1}é"));
        let p = PrincipalTemplate::new(&r, &[]);
        for value in [p.render(None), p.render(Some(7))] {
            let json: Value = serde_json::from_slice(value.as_bytes()).unwrap();
            assert_eq!(json["source"]["key"]["meta"]["odd"], "a\u{7f}b\tc\u{1}é");
            assert!(!value.as_bytes().contains(&0x7f));
        }
    }
}
