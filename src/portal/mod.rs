//! The portal: server-rendered pages in pt-BR. Pages arrive with their issues; this holds the
//! layout and the home page.

use actix_web::{HttpResponse, web};
use maud::{DOCTYPE, Markup, html};

use crate::startup::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home));
}

/// The page frame every portal page uses.
pub fn layout(title: &str, body: Markup) -> Markup {
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
                    span.brand { "CertHub" }
                }
                main { (body) }
                footer { "CertHub " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

async fn home(state: web::Data<AppState>) -> HttpResponse {
    let page = layout(
        "Início",
        html! {
            h1 { "Cofre de certificados A1" }
            p { "Os certificados digitais do escritório " strong { (state.org_name) } " ficam guardados aqui, criptografados." }
            p { "Peça a instalação de um certificado no seu computador; um administrador aprova e o agente instala. Tudo o que for instalado é removido às 18:00." }
        },
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.into_string())
}
