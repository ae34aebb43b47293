//! The dashboard's static shell: one HTML page, a script and a style
//! sheet from `assets/dashboard/`, embedded in the binary (it works
//! offline and loads nothing from elsewhere). Each asset is served under a
//! name carrying its content hash, so browsers may cache it forever and a
//! new build is never mixed with an old one; all are gzip-compressed once,
//! at first use. The shell holds no data: everything it shows comes from
//! the JSON endpoints behind a root key.

use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, VARY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Response, StatusCode};
use http_body_util::Full;

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
/// `(name, content type, source)`; the page names them `{{name}}`.
const ASSETS: [(&str, &str, &str); 2] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/style.css"),
    ),
];
/// Only the admin listener itself: no inline script, no other origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file as served: both encodings and the headers that go with them.
struct File {
    path: String,
    content_type: &'static str,
    plain: Bytes,
    gzip: Bytes,
}

struct Bundle {
    index: File,
    assets: Vec<File>,
}

fn bundle() -> &'static Bundle {
    static BUNDLE: OnceLock<Bundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let assets: Vec<File> = ASSETS
            .iter()
            .map(|(name, content_type, source)| {
                let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
                let digest = ring::digest::digest(&ring::digest::SHA256, source.as_bytes());
                let hash: String = digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
                file(format!("/assets/{stem}.{hash}.{extension}"), content_type, source)
            })
            .collect();
        let mut page = INDEX.to_string();
        for ((name, _, _), asset) in ASSETS.iter().zip(&assets) {
            page = page.replace(&format!("{{{{{name}}}}}"), &asset.path);
        }
        Bundle {
            index: file("/".into(), "text/html; charset=utf-8", &page),
            assets,
        }
    })
}

fn file(path: String, content_type: &'static str, source: &str) -> File {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to memory cannot fail; an empty gzip body is never served
    // because `accepts_gzip` answers plain when compression produced nothing.
    let gzip = encoder
        .write_all(source.as_bytes())
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    File {
        path,
        content_type,
        plain: Bytes::copy_from_slice(source.as_bytes()),
        gzip: Bytes::from(gzip),
    }
}

/// Whether `path` is the dashboard's: the page (`/`, `/ui`, `/ui/`) or an asset.
pub fn owns(path: &str) -> bool {
    matches!(path, "/" | "/ui" | "/ui/") || path.starts_with("/assets/")
}

/// The page or asset at `path`, compressed when the client accepts gzip;
/// `None` for an unknown asset.
pub fn serve(path: &str, accept_encoding: Option<&str>) -> Option<Response<Full<Bytes>>> {
    let bundle = bundle();
    let (file, cache) = if path.starts_with("/assets/") {
        (
            bundle.assets.iter().find(|f| f.path == path)?,
            "public, max-age=31536000, immutable",
        )
    } else {
        (&bundle.index, "no-cache")
    };
    let gzip = accept_encoding.is_some_and(accepts_gzip) && !file.gzip.is_empty();
    let body = if gzip { file.gzip.clone() } else { file.plain.clone() };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Some(response)
}

/// `Accept-Encoding` lists gzip with a non-zero weight.
fn accepts_gzip(header: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        parts.next().is_some_and(|coding| coding.eq_ignore_ascii_case("gzip"))
            && parts.all(|p| {
                p.strip_prefix("q=")
                    .is_none_or(|q| q.parse::<f32>().is_ok_and(|q| q > 0.0))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_by_content_hash() {
        let page = String::from_utf8(bundle().index.plain.to_vec()).unwrap();
        assert!(!page.contains("{{"), "every placeholder replaced");
        for asset in &bundle().assets {
            assert!(page.contains(&asset.path), "{} referenced", asset.path);
            assert!(serve(&asset.path, None).is_some());
        }
        assert!(
            serve("/assets/app.000000000000.js", None).is_none(),
            "an old build's asset is gone"
        );
    }

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip("br, gzip;q=0.8"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        let compressed = serve("/", Some("gzip")).unwrap();
        assert_eq!(compressed.headers()[CONTENT_ENCODING], "gzip");
        assert!(serve("/", Some("identity"))
            .unwrap()
            .headers()
            .get(CONTENT_ENCODING)
            .is_none());
    }
}
