//! A real headless Chromium driven over the W3C WebDriver protocol: the
//! system's `chromedriver` on a free loopback port, spoken to with plain
//! JSON over HTTP (the protocol is small enough that a client crate would
//! add nothing). Killed on drop.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::net::free_port;
use super::wait::{poll_until, wait_for, WAIT};

/// The W3C name of an element reference in answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group: dropping the browser kills Chromium with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install chromium chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let status = format!("{base}/status");
        wait_for("chromedriver ready", WAIT, || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                match http.get(&status).send().await {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true),
                    Err(_) => false,
                }
            }
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("create a WebDriver session")
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The element `css` selects (the first), once it exists.
    pub async fn find(&self, css: &str) -> String {
        poll_until(format!("element {css}"), WAIT, || async {
            let exists = self
                .run("return document.querySelector(arguments[0]) !== null", json!([css]))
                .await;
            exists.as_bool().unwrap_or(false).then_some(())
        })
        .await;
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {found}"))
            .to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Accepts the open `confirm()` dialog.
    pub async fn accept_dialog(&self) {
        poll_until("a dialog", WAIT, || async {
            let url = format!("{}/session/{}/alert/text", self.base, self.session);
            let answer: Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
            answer["value"].is_string().then_some(())
        })
        .await;
        self.command(reqwest::Method::POST, "/alert/accept", Some(json!({})))
            .await;
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.run("return document.body.innerText", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (bounded by `timeout`) until the page's text contains `wanted`.
    pub async fn wait_for_text(&self, wanted: &str, timeout: Duration) {
        poll_until(format!("page text containing {wanted:?}"), timeout, || async {
            self.text().await.contains(wanted).then_some(())
        })
        .await;
    }

    /// The whole document as the browser holds it now.
    pub async fn html(&self) -> String {
        self.run("return document.documentElement.outerHTML", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every URL the page has loaded or fetched.
    pub async fn requested_urls(&self) -> Vec<String> {
        let urls = self
            .run(
                "return performance.getEntries().map(e => e.name).filter(n => n.includes('://'))",
                json!([]),
            )
            .await;
        urls.as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// The browser console's messages at level SEVERE (errors).
    pub async fn console_errors(&self) -> Vec<String> {
        let logs = self
            .command(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"})))
            .await;
        logs.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG of the viewport as `target/test-artifacts/dashboard/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let encoded = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("..")
            .join("test-artifacts")
            .join("dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Debian's Chromium.
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/usr/bin/chromium")
}
