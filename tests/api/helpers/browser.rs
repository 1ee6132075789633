//! A real headless Chromium driven over the W3C WebDriver protocol (chromedriver), for the
//! portal's pages. Without chromedriver the test is skipped on a laptop and fails in CI.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    client: reqwest::Client,
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
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(res) = browser
                .client
                .get(format!("{}/status", browser.base))
                .send()
                .await
                && res.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ]
            }
        }}});
        let session = browser.call("POST", "/session", Some(caps)).await;
        let id = session["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        Some(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        assert!(
            res["value"].get("error").is_none(),
            "webdriver {method} {path}: {res}"
        );
        res["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().expect("element id").to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    pub async fn source(&self) -> String {
        self.call("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
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
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("screenshot"))
            .expect("base64 PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Sends keys (WebDriver codes: `\u{E004}` Tab, `\u{E007}` Enter) to the focused element.
    pub async fn press(&self, keys: &str) {
        let active = self.call("GET", "/element/active", None).await;
        let id = active[ELEMENT]
            .as_str()
            .expect("a focused element")
            .to_owned();
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": keys})),
        )
        .await;
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
        let found = self
            .call(
                "POST",
                "/execute/async",
                Some(json!({"script": "const done = arguments[arguments.length - 1]; \
                    axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}) \
                    .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical') \
                    .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.html)})))) \
                    .catch(e => done([{id: 'axe-error', help: String(e)}]));", "args": []})),
            )
            .await;
        Some(found.as_array().cloned().unwrap_or_default())
    }

    pub async fn quit(self) {
        let _ = self.client.delete(&self.base).send().await;
    }
}
