//! The portal: server-rendered pages in pt-BR. The layout and the navigation live here; each
//! area of the office has its module, and every page calls the same domain functions as the
//! API (one rule, two doors).

mod accounts;
mod audit;
mod certificates;
pub mod components;
mod dashboard;
mod devices;
pub mod error;
mod installations;
mod requests;
pub mod session;
mod users;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use maud::{DOCTYPE, Markup, html};

use error::PageError;
use session::Staff;

macro_rules! portal_routes {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every portal page as `(method, path)`: the access-matrix test walks them.
        pub fn routes() -> Vec<(&'static str, &'static str)> {
            vec![$((stringify!($method), $path),)*]
        }

        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

portal_routes! {
    get "/" => dashboard::home;
    get "/entrar" => accounts::login_page;
    post "/entrar" => accounts::login_submit;
    post "/sair" => accounts::logout;
    get "/definir-senha" => accounts::set_password_page;
    post "/definir-senha" => accounts::set_password_submit;
    get "/primeiro-acesso" => accounts::first_access_page;
    post "/primeiro-acesso" => accounts::first_access_submit;
    get "/certificados" => certificates::list;
    get "/certificados/enviar" => certificates::upload_page;
    post "/certificados/enviar" => certificates::upload_submit;
    get "/certificados/{id}" => certificates::detail;
    post "/certificados/{id}/instalar" => certificates::request_install;
    post "/certificados/{id}/senha" => certificates::set_password;
    post "/certificados/{id}/caminho" => certificates::reveal_path;
    get "/solicitacoes" => requests::list;
    get "/solicitacoes/eventos" => requests::events;
    post "/solicitacoes/{id}/aprovar" => requests::approve;
    post "/solicitacoes/{id}/negar" => requests::deny;
    post "/solicitacoes/{id}/cancelar" => requests::cancel;
    get "/instalacoes" => installations::list;
    post "/instalacoes/{id}/remover" => installations::remove;
    get "/dispositivos" => devices::list;
    post "/dispositivos" => devices::provision;
    get "/dispositivos/{id}" => devices::detail;
    post "/dispositivos/{id}" => devices::update;
    post "/dispositivos/{id}/token" => devices::rotate;
    post "/dispositivos/{id}/bloquear" => devices::block;
    post "/dispositivos/{id}/desbloquear" => devices::unblock;
    get "/usuarios" => users::list;
    post "/usuarios" => users::create;
    post "/usuarios/{id}" => users::update;
    post "/usuarios/{id}/link" => users::password_link;
    get "/auditoria" => audit::page;
    get "/auditoria/export.csv" => audit::export;
    get "/static/{path:.*}" => crate::http::assets::get;
}

/// The areas of the portal, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Painel,
    Certificados,
    Solicitacoes,
    Instalacoes,
    Dispositivos,
    Usuarios,
    Auditoria,
}

impl Section {
    const ALL: [Section; 7] = [
        Section::Painel,
        Section::Certificados,
        Section::Solicitacoes,
        Section::Instalacoes,
        Section::Dispositivos,
        Section::Usuarios,
        Section::Auditoria,
    ];

    fn label(self) -> &'static str {
        match self {
            Section::Painel => "Painel",
            Section::Certificados => "Certificados",
            Section::Solicitacoes => "Solicitações",
            Section::Instalacoes => "Instalações",
            Section::Dispositivos => "Dispositivos",
            Section::Usuarios => "Usuários",
            Section::Auditoria => "Auditoria",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Section::Painel => "/",
            Section::Certificados => "/certificados",
            Section::Solicitacoes => "/solicitacoes",
            Section::Instalacoes => "/instalacoes",
            Section::Dispositivos => "/dispositivos",
            Section::Usuarios => "/usuarios",
            Section::Auditoria => "/auditoria",
        }
    }

    /// Devices, users and the audit log are for ADMIN/DEV only.
    fn admin_only(self) -> bool {
        matches!(
            self,
            Section::Dispositivos | Section::Usuarios | Section::Auditoria
        )
    }
}

/// The page frame every portal page uses.
pub fn layout(
    title: &str,
    user: Option<&crate::accounts::User>,
    csrf: Option<&str>,
    body: Markup,
) -> Markup {
    shell(title, user, csrf, None, body)
}

/// The frame of a logged-in page: the navigation shows only what the role may open.
pub fn frame(staff: &Staff, section: Section, title: &str, body: Markup) -> Markup {
    let nav = html! {
        nav.sections aria-label="Seções" {
            @for s in Section::ALL {
                @if !s.admin_only() || staff.is_admin() {
                    @if s == section {
                        a href=(s.href()) aria-current="page" { (s.label()) }
                    } @else {
                        a href=(s.href()) { (s.label()) }
                    }
                }
            }
        }
    };
    shell(
        title,
        Some(&staff.user.user),
        Some(&staff.csrf.value),
        Some(nav),
        body,
    )
}

fn shell(
    title: &str,
    user: Option<&crate::accounts::User>,
    csrf: Option<&str>,
    nav: Option<Markup>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="pt-BR" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · CertHub" }
                link rel="stylesheet" href="/static/app.css";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
                script src="/static/portal.js" defer {}
            }
            body {
                a.skip href="#conteudo" { "Pular para o conteúdo" }
                header.topbar {
                    a.brand href="/" { "CertHub" }
                    @if let Some(nav) = nav { (nav) }
                    span.spacer {}
                    @if let (Some(u), Some(csrf)) = (user, csrf) {
                        span.who { (u.nome) " · " (u.role_global) }
                        form method="post" action="/sair" {
                            input type="hidden" name="csrf" value=(csrf);
                            button.link type="submit" { "Sair" }
                        }
                    } @else {
                        a href="/entrar" { "Entrar" }
                    }
                }
                main id="conteudo" tabindex="-1" { (body) }
                footer { "CertHub " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// An HTML response (sets the CSRF cookie when the page minted one).
pub fn page(
    status: actix_web::http::StatusCode,
    markup: Markup,
    csrf: &session::Csrf,
) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"));
    if let Some(c) = &csrf.new_cookie {
        res.cookie(c.clone());
    }
    res.body(markup.into_string())
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// A logged-in page, `200 OK`.
pub fn staff_page(staff: &Staff, section: Section, title: &str, body: Markup) -> HttpResponse {
    page(
        actix_web::http::StatusCode::OK,
        frame(staff, section, title, body),
        &staff.csrf,
    )
}

/// After a form: back to `to` with a notice code (see [`components::notice`]).
pub fn done(to: &str, notice: &str) -> HttpResponse {
    let sep = if to.contains('?') { '&' } else { '?' };
    redirect(&format!("{to}{sep}ok={notice}"))
}

/// A form whose only field is its CSRF token (a button that acts).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// The CSRF check of every portal form, as a page error.
pub fn check_csrf(req: &actix_web::HttpRequest, submitted: &str) -> Result<(), PageError> {
    session::Csrf::verify(req, submitted).map_err(PageError::from)
}
