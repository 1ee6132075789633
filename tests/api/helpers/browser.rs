//! A real headless Chromium driven over the W3C WebDriver protocol (chromedriver, through the
//! `fantoccini` client), for the portal's pages. Without chromedriver the test is skipped on a
//! laptop and fails in CI.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// One chromedriver and its one session: a Chromium with a fresh profile of its own.
pub struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find_chromedriver() -> Option<String> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

/// Fails the test with what WebDriver said about `what`.
fn ok<T>(what: &str, result: Result<T, fantoccini::error::CmdError>) -> T {
    result.unwrap_or_else(|e| panic!("webdriver {what}: {e}"))
}

impl Browser {
    /// `None` (and a SKIPPED line) when chromedriver is not installed outside CI.
    pub async fn start() -> Option<Browser> {
        let Some(driver_bin) = find_chromedriver() else {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI requires chromium and chromium-driver for the portal tests");
            }
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: browser test (install Debian's chromium and chromium-driver to run it)"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let status = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(res) = status.get(format!("{base}/status")).send().await
                && res.status().is_success()
            {
                break;
            }
            if Instant::now() >= deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("chromedriver did not start");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".to_owned(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let client = match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&base)
            .await
        {
            Ok(client) => client,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("webdriver session: {e}");
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        ok(&format!("goto {url}"), self.client.goto(url).await);
    }

    async fn element(&self, css: &str) -> Element {
        ok(
            &format!("find {css}"),
            self.client.find(Locator::Css(css)).await,
        )
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        ok(&format!("type into {css}"), e.send_keys(text).await);
    }

    pub async fn click(&self, css: &str) {
        let e = self.element(css).await;
        ok(&format!("click {css}"), e.click().await);
    }

    pub async fn source(&self) -> String {
        ok("source", self.client.source().await)
    }

    pub async fn url(&self) -> String {
        ok("url", self.client.current_url().await).to_string()
    }

    pub async fn script(&self, script: &str) -> Value {
        ok("execute", self.client.execute(script, Vec::new()).await)
    }

    /// Waits (up to 10 s) until the page source contains `text`; returns the source.
    pub async fn wait_for_text(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let source = self.source().await;
            if source.contains(text) || Instant::now() > deadline {
                return source;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to 10 s) until the URL ends with `suffix`; returns the URL.
    pub async fn wait_for_url(&self, suffix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.ends_with(suffix) || Instant::now() > deadline {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The window's size, in CSS pixels.
    pub async fn set_size(&self, width: u32, height: u32) {
        ok(
            "window size",
            self.client.set_window_size(width, height).await,
        );
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = ok("screenshot", self.client.screenshot().await);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Sends keys (WebDriver codes: `\u{E004}` Tab, `\u{E007}` Enter) to the focused element.
    pub async fn press(&self, keys: &str) {
        let active = ok("active element", self.client.active_element().await);
        ok("send keys", active.send_keys(keys).await);
    }

    /// Presses Tab until the focused element matches `css` (at most 60 times); `false` if it
    /// never does. Every stop must show a visible focus ring.
    pub async fn tab_to(&self, css: &str) -> bool {
        for _ in 0..60 {
            self.press("\u{E004}").await;
            let focus = self
                .script(&format!(
                    "const e = document.activeElement; const s = getComputedStyle(e); \
                     return [e.matches({css:?}), s.outlineStyle !== 'none' && s.outlineWidth !== '0px', e.outerHTML.slice(0, 120)];"
                ))
                .await;
            assert!(
                focus[1].as_bool().unwrap_or(false),
                "no visible focus on {}",
                focus[2]
            );
            if focus[0].as_bool().unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// axe-core's serious and critical WCAG 2.1 A/AA violations on the current page (`None`
    /// when axe-core is not installed: `.ci/run` installs it, a laptop may skip it).
    pub async fn axe(&self) -> Option<Vec<Value>> {
        let path = std::env::var("CERTHUB_AXE_JS").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/axe/node_modules/axe-core/axe.min.js"
            )
            .to_owned()
        });
        let Ok(source) = std::fs::read_to_string(&path) else {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI requires axe-core at {path} (.ci/run installs it with npm)");
            }
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: axe-core checks (npm install --prefix target/axe axe-core@4)"
            );
            return None;
        };
        self.script(&format!("{source}\nreturn true;")).await;
        let found = ok(
            "axe",
            self.client
                .execute_async(
                    "const done = arguments[arguments.length - 1]; \
                    axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}) \
                    .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical') \
                    .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.html)})))) \
                    .catch(e => done([{id: 'axe-error', help: String(e)}]));",
                    Vec::new(),
                )
                .await,
        );
        Some(found.as_array().cloned().unwrap_or_default())
    }

    /// Ends the WebDriver session: Chromium closes.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }
}
