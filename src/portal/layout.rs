//! The page frame every portal page uses: the head, the top bar with the navigation (only what
//! the role may open) and the logout form, the main landmark and the footer.

use maud::{DOCTYPE, Markup, html};

use crate::accounts::User;

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

    /// The section a portal path belongs to (the Painel for anything else).
    pub fn of_path(path: &str) -> Section {
        Section::ALL
            .into_iter()
            .filter(|s| *s != Section::Painel)
            .find(|s| path == s.href() || path.starts_with(&format!("{}/", s.href())))
            .unwrap_or(Section::Painel)
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
pub fn layout(title: &str, user: Option<&User>, csrf: Option<&str>, body: Markup) -> Markup {
    shell(title, user, csrf, None, body)
}

/// The frame of a logged-in page for `user` (ADMIN/DEV or not), whose forms carry `csrf`: the
/// navigation shows only what the role may open.
pub fn frame(
    user: &User,
    is_admin: bool,
    csrf: &str,
    section: Section,
    title: &str,
    body: Markup,
) -> Markup {
    let nav = html! {
        nav.sections aria-label="Seções" {
            @for s in Section::ALL {
                @if !s.admin_only() || is_admin {
                    @if s == section {
                        a href=(s.href()) aria-current="page" { (s.label()) }
                    } @else {
                        a href=(s.href()) { (s.label()) }
                    }
                }
            }
        }
    };
    shell(title, Some(user), Some(csrf), Some(nav), body)
}

fn shell(
    title: &str,
    user: Option<&User>,
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
