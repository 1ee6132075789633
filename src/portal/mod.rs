//! The portal: server-rendered pages in pt-BR. The layout, the home page and the account pages
//! (login, logout, choosing a password, first access) live here; each area adds its pages.

mod accounts;
pub mod session;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use maud::{DOCTYPE, Markup, html};

use crate::startup::AppState;
use session::PortalUser;

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
    get "/" => home;
    get "/entrar" => accounts::login_page;
    post "/entrar" => accounts::login_submit;
    post "/sair" => accounts::logout;
    get "/definir-senha" => accounts::set_password_page;
    post "/definir-senha" => accounts::set_password_submit;
    get "/primeiro-acesso" => accounts::first_access_page;
    post "/primeiro-acesso" => accounts::first_access_submit;
    get "/static/{path:.*}" => crate::http::assets::get;
}

/// The page frame every portal page uses.
pub fn layout(
    title: &str,
    user: Option<&crate::accounts::User>,
    csrf: Option<&str>,
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
            }
            body {
                header.topbar {
                    a.brand href="/" { "CertHub" }
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
                main { (body) }
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

async fn home(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    user: PortalUser,
) -> HttpResponse {
    let csrf = session::Csrf::for_request(&req, &state);
    let body = html! {
        h1 { "Cofre de certificados A1" }
        @match &user.0 {
            Some(u) => {
                p { "Olá, " strong { (u.nome) } "." }
                p { "Os certificados digitais do escritório " strong { (state.org_name) } " ficam guardados aqui, criptografados." }
            }
            None => {
                p { "Os certificados digitais do escritório " strong { (state.org_name) } " ficam guardados aqui, criptografados." }
                p { a.button href="/entrar" { "Entrar" } }
            }
        }
        p { "Peça a instalação de um certificado no seu computador; um administrador aprova e o agente instala. Tudo o que for instalado é removido às 18:00." }
    };
    page(
        actix_web::http::StatusCode::OK,
        layout("Início", user.0.as_ref(), Some(&csrf.value), body),
        &csrf,
    )
}
