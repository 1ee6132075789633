//! The portal as a browser with a cookie jar sees it (reqwest, no JavaScript), and the office
//! the portal tests look at: certificates and names that are markup.

use super::{Office, TestApp, TestDb};

/// Markup where people type text (a PC's name, a user's name).
pub const XSS_SCRIPT: &str = "<script>alert(1)</script>";
/// Markup in a certificate's file name (which cannot hold the slash of `</script>`).
pub const XSS_ATTR: &str = "\"><img src=x onerror=alert(1)>";

/// A client with a cookie jar that does not follow redirects, like a browser whose answers are
/// looked at one by one.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        // The test's own server, which may answer HTTPS with the certificate it made itself.
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The text of the page at `url`.
pub async fn page_text(b: &reqwest::Client, url: &str) -> String {
    b.get(url).send().await.unwrap().text().await.unwrap()
}

/// Submits the login form (`/entrar`) with `csrf`.
pub async fn post_login(
    b: &reqwest::Client,
    app: &TestApp,
    csrf: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    b.post(app.url("/entrar"))
        .form(&[("csrf", csrf), ("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// The CSRF value embedded in a page's form.
pub fn csrf_of(html: &str) -> String {
    let at =
        html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// A browser that has opened the login page (so it holds the pre-login CSRF cookie), and its
/// CSRF token.
pub async fn anonymous(app: &TestApp) -> (reqwest::Client, String) {
    let b = browser();
    let page = b.get(app.url("/entrar")).send().await.unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    (b, csrf)
}

/// A browser logged in to the portal as `email`, and the CSRF token of its session.
pub async fn session(app: &TestApp, email: &str, password: &str) -> (reqwest::Client, String) {
    let (b, csrf) = anonymous(app).await;
    let res = post_login(&b, app, &csrf, email, password).await;
    assert_eq!(res.status(), 303, "portal login as {email}");
    let home = b.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    let csrf = csrf_of(&home.text().await.unwrap());
    (b, csrf)
}

/// The portal tests' [`Office`]: besides EMPRESA X LTDA, a renewal whose file name is markup
/// and a file whose name has the wrong password (it does not open until an admin types one);
/// PC-JOANA, owned by the VIEW and not paired yet; and markup as a PC's and a user's name.
pub struct PortalOffice {
    office: Office,
    /// PC-JOANA.
    pub device_id: String,
    pub device_token: String,
}

impl std::ops::Deref for PortalOffice {
    type Target = Office;

    fn deref(&self) -> &Office {
        &self.office
    }
}

impl PortalOffice {
    /// The office, for a test that takes its server (to stop it).
    pub fn into_office(self) -> Office {
        self.office
    }
}

pub async fn portal_office(db: &TestDb) -> PortalOffice {
    let office = Office::builder()
        .certificate(&format!("{XSS_ATTR} Senha 1234.pfx"), "ecnpj-renewed.pfx")
        .certificate("JOSÉ DA SILVA senha errada.pfx", "ecpf-utf8.pfx")
        .start(db)
        .await;
    let device = office
        .provision_with(
            serde_json::json!({"hostname": "PC-JOANA", "owner_user_id": office.view_id}),
        )
        .await;
    office.provision(XSS_SCRIPT).await;
    let (status, user) = office
        .call(
            "POST",
            "/api/v1/admin/users",
            Some(serde_json::json!({"email": "xss@escritorio.com.br", "nome": XSS_SCRIPT, "role_global": "VIEW"})),
            &office.admin.access,
        )
        .await;
    assert_eq!(status, 201, "{user}");
    PortalOffice {
        device_id: device["id"].as_str().unwrap().to_owned(),
        device_token: device["device_token"].as_str().unwrap().to_owned(),
        office,
    }
}
