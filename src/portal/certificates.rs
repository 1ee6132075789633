//! Certificados: search the catalogue, one certificate with "Instalar no meu computador", and
//! for ADMIN/DEV the files that failed to open, typing their password, and the audited path
//! reveal.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::components::{self as c, csrf_field};
use super::error::{PageError, back_to};
use super::forms::{CsrfForm, Submitted, csrf_form};
use super::layout::Section;
use super::respond::{done, staff_page};
use super::session::{AdminStaff, Staff};
use crate::certificates::catalogue::{self, CertificateView, ListQuery, Listing, StatusFilter};
use crate::certificates::upload::{self, Outcome};
use crate::error::AppError;
use crate::jobs::requests::InstallBody;
use crate::state::AppState;

csrf_form!(InstallForm, PasswordForm);

#[derive(Debug, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: Option<String>,
    dias: Option<i64>,
    page: Option<i64>,
    ok: Option<String>,
}

fn status_of(raw: Option<&str>) -> StatusFilter {
    match raw.unwrap_or_default() {
        "expiring" => StatusFilter::Expiring,
        "expired" => StatusFilter::Expired,
        "unavailable" => StatusFilter::Unavailable,
        "unreadable" => StatusFilter::Unreadable,
        "all" => StatusFilter::All,
        "in_folder" => StatusFilter::Available,
        // "Disponíveis": what can be installed now, never an expired or unreadable file.
        _ => StatusFilter::Installable,
    }
}

const FILTERS: [(&str, &str); 7] = [
    ("available", "Disponíveis"),
    ("in_folder", "Na pasta (inclui vencidos e com erro)"),
    ("expiring", "A vencer"),
    ("expired", "Vencidos"),
    ("unavailable", "Indisponíveis"),
    ("unreadable", "Com erro ao abrir"),
    ("all", "Todos"),
];

fn kind_label(kind: Option<&str>) -> &'static str {
    match kind {
        Some("E_CNPJ") => "Empresa (e-CNPJ)",
        Some("E_CPF") => "Pessoa (e-CPF)",
        Some(_) => "Outro",
        None => "—",
    }
}

pub async fn list(
    state: web::Data<AppState>,
    staff: Staff,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, PageError> {
    let p = params.into_inner();
    let status_key = p.status.as_deref().unwrap_or("available");
    let status = status_of(Some(status_key));
    let listing = Listing::try_from(ListQuery {
        q: Some(p.q.clone()),
        status,
        within_days: p.dias,
        page: p.page,
        page_size: Some(25),
    })?;
    let now = Utc::now();
    let found = catalogue::find_page(&state.db, staff.user.org, &listing, now).await?;
    let tz = state.settings.timezone;
    let dias = p.dias.map(|d| d.to_string()).unwrap_or_default();
    let base = c::query(&[("q", &p.q), ("status", status_key), ("dias", &dias)]);
    let body = html! {
        h1 { "Certificados" }
        (c::notice(p.ok.as_deref()))
        form.filters method="get" action="/certificados" role="search" {
            label { "Buscar por nome ou CNPJ/CPF"
                input type="search" name="q" value=(p.q) placeholder="ex.: Padaria ou 11.222.333/0001-81" maxlength="200";
            }
            label { "Mostrar"
                select name="status" {
                    @for (key, label) in FILTERS {
                        @if key != "unreadable" || staff.is_admin() {
                            option value=(key) selected[key == status_key] { (label) }
                        }
                    }
                }
            }
            @if status == StatusFilter::Expiring {
                label { "Em até (dias)"
                    input type="number" name="dias" min="1" max="365" value=(p.dias.unwrap_or(catalogue::DEFAULT_WITHIN_DAYS));
                }
            }
            button type="submit" { "Buscar" }
        }
        @if found.items.is_empty() {
            (c::empty(if p.q.trim().is_empty() {
                "Nenhum certificado nesta lista. Os certificados chegam pela pasta do escritório."
            } else {
                "Nenhum certificado encontrado para essa busca. Confira o nome ou os números do CNPJ/CPF."
            }))
        } @else {
            table {
                caption.sr { "Certificados encontrados" }
                thead { tr {
                    th scope="col" { "Nome" } th scope="col" { "Tipo" } th scope="col" { "CNPJ/CPF" }
                    th scope="col" { "Emissor" } th scope="col" { "Validade" }
                } }
                tbody {
                    @for cert in &found.items { (row(tz, now, cert, staff.is_admin())) }
                }
            }
            (c::pager(&found, &base))
        }
        @if staff.is_admin() {
            p { a.button.secondary href="/certificados/enviar" { "Enviar certificados pelo navegador" } }
        }
    };
    Ok(staff_page(
        &staff,
        Section::Certificados,
        "Certificados",
        body,
    ))
}

fn row(
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
    cert: &CertificateView,
    admin: bool,
) -> Markup {
    html! {
        tr {
            td {
                a href={ "/certificados/" (cert.id) } { (cert.name) }
                @if !cert.is_available { " " span.badge.muted { "indisponível" } }
                @if admin && cert.parse_error.is_some() { " " span.badge.bad { "não abriu" } }
            }
            td { (kind_label(cert.cert_kind.as_deref())) }
            td.nowrap { (c::document(cert.cnpj.as_deref(), cert.cpf.as_deref())) }
            td { (cert.issuer.as_deref().map(c::issuer_name).unwrap_or("—")) }
            td.nowrap {
                @if let Some(end) = cert.not_after { (c::day(tz, end)) " " }
                (c::expiry_badge(tz, now, cert.not_after))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DetailParams {
    ok: Option<String>,
}

pub async fn detail(
    state: web::Data<AppState>,
    staff: Staff,
    path: web::Path<Uuid>,
    params: web::Query<DetailParams>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    let cert = catalogue::find_view(&state.db, staff.user.org, id)
        .await
        .map_err(back_to("/certificados"))?;
    let devices = crate::devices::targetable(&state.db, &staff.user).await?;
    let tz = state.settings.timezone;
    let now = Utc::now();
    let installable = cert.is_available
        && cert.parse_error.is_none()
        && cert.not_after.is_some_and(|end| end > now);
    let choices = duration_choices(&state.settings, now);
    let closed = state.settings.installs_closed(now);
    let body = html! {
        p { a href="/certificados" { "‹ Certificados" } }
        h1 { (cert.name) }
        (c::notice(params.ok.as_deref()))
        dl.facts {
            dt { "Tipo" } dd { (kind_label(cert.cert_kind.as_deref())) }
            dt { "CNPJ/CPF" } dd { (c::document(cert.cnpj.as_deref(), cert.cpf.as_deref())) }
            @if let Some(r) = &cert.responsible_name { dt { "Responsável" } dd { (r) } }
            dt { "Emissor" } dd title=[cert.issuer.as_deref()] { (cert.issuer.as_deref().map(c::issuer_name).unwrap_or("—")) }
            dt { "Validade" } dd {
                @if let (Some(a), Some(b)) = (cert.not_before, cert.not_after) { (c::day(tz, a)) " a " (c::day(tz, b)) " " }
                (c::expiry_badge(tz, now, cert.not_after))
            }
            dt { "Impressão digital" } dd.mono { (cert.sha1.as_deref().unwrap_or("—")) }
            @if cert.superseded_by.is_some() { dt { "Situação" } dd { "Substituído por uma renovação" } }
        }
        section aria-labelledby="instalar" {
            h2 id="instalar" { "Instalar no meu computador" }
            @if !installable {
                p.muted { "Este certificado não pode ser instalado agora (indisponível, vencido ou o arquivo não abriu)." }
            } @else if closed {
                p.muted {
                    "Fora do horário de instalação: o escritório instala certificados das "
                    (state.settings.agent.workday_start.format("%H:%M")) " às "
                    (state.settings.agent.cleanup_time.format("%H:%M")) "."
                }
            } @else if devices.is_empty() {
                p.empty { "Você ainda não tem um computador cadastrado. Peça a um administrador para cadastrar o seu em Dispositivos e instalar o agente CertHub nele." }
            } @else {
                form.card method="post" action={ "/certificados/" (cert.id) "/instalar" } {
                    (csrf_field(&staff.csrf.value))
                    label { "Computador"
                        select name="device_id" required {
                            @for d in &devices {
                                option value=(d.id) data-paired=(if d.public_key.is_some() { "yes" } else { "no" }) {
                                    (d.hostname)
                                    @if d.owner_user_id == Some(staff.user.user.id) { " (meu)" }
                                    @if d.public_key.is_none() { " — agente ainda não instalado: o pedido espera por ele" }
                                }
                            }
                        }
                    }
                    @if devices.iter().all(|d| d.public_key.is_none()) {
                        p.warn role="status" data-unpaired {
                            "O agente CertHub ainda não foi instalado e pareado "
                            (if devices.len() == 1 { "neste computador" } else { "nestes computadores" })
                            ": o pedido fica esperando até que um administrador termine a instalação."
                        }
                    }
                    label { "Por quanto tempo"
                        select name="duration_minutes" {
                            @for (value, label) in &choices {
                                option value=(value.map(|m| m.to_string()).unwrap_or_default()) { (label) }
                            }
                        }
                    }
                    label { "Motivo (opcional)"
                        input type="text" name="reason" maxlength="500" placeholder="ex.: emitir notas fiscais";
                    }
                    button type="submit" { "Instalar no meu computador" }
                }
            }
        }
        @if staff.is_admin() { (admin_tools(&staff, &cert)) }
    };
    Ok(staff_page(&staff, Section::Certificados, &cert.name, body))
}

/// The durations offered if the certificate were installed `now`, each naming when it would
/// end: "Até as 18:00 de hoje" only while that is true; after hours the longest lease is the
/// cap, and says so. Shorter ones only when they end earlier.
fn duration_choices(
    settings: &crate::settings::Settings,
    now: chrono::DateTime<Utc>,
) -> Vec<(Option<i64>, String)> {
    let rule = settings.lease_rule();
    let tz = rule.cleanup.tz;
    let longest = rule.end(now, None);
    let until = |end| crate::schedule::local_time(end, now, tz);
    let today = |t: chrono::DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let first = if rule.ends_at_cleanup(now) && today(longest) == today(now) {
        format!("Até as {} de hoje", until(longest))
    } else {
        format!("Até as {} (limite de {} h)", until(longest), rule.max_hours)
    };
    let mut choices = vec![(None, first)];
    for hours in [1_i64, 2, 4] {
        let end = rule.end(now, Some(hours * 60));
        if end < longest {
            choices.push((Some(hours * 60), format!("{hours} h (até {})", until(end))));
        }
    }
    choices
}

fn admin_tools(staff: &Staff, cert: &CertificateView) -> Markup {
    html! {
        section aria-labelledby="admin" {
            h2 id="admin" { "Administração" }
            @if let Some(err) = &cert.parse_error {
                p.error { "O arquivo não abriu. " (problem_pt(err)) }
                form.card method="post" action={ "/certificados/" (cert.id) "/senha" } {
                    (csrf_field(&staff.csrf.value))
                    label { "Senha do certificado"
                        input type="password" name="password" required autocomplete="off" maxlength="1024";
                    }
                    button type="submit" { "Guardar senha" }
                }
            }
            p { a href={ "/auditoria?cert_id=" (cert.id) } { "Ver a auditoria deste certificado" } }
            form method="post" action={ "/certificados/" (cert.id) "/caminho" } {
                (csrf_field(&staff.csrf.value))
                button.secondary type="submit" { "Mostrar o caminho do arquivo (fica registrado na auditoria)" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct InstallForm {
    #[serde(default)]
    csrf: String,
    device_id: Uuid,
    #[serde(default)]
    duration_minutes: String,
    #[serde(default)]
    reason: String,
}

pub async fn request_install(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<Staff, InstallForm>,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: staff, form } = submitted;
    let id = path.into_inner();
    let back = format!("/certificados/{id}");
    let duration_minutes = match form.duration_minutes.trim() {
        "" => None,
        m => Some(
            m.parse::<i64>()
                .map_err(|_| AppError::Validation("duração inválida".into()))
                .map_err(back_to(&back))?,
        ),
    };
    crate::jobs::requests::request(
        &state,
        &staff.user,
        id,
        InstallBody {
            device_id: form.device_id,
            reason: Some(form.reason),
            duration_minutes,
        },
    )
    .await
    .map_err(back_to(&back))?;
    Ok(done("/solicitacoes", "solicitado"))
}

pub async fn reveal_path(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let admin = submitted.user;
    let id = path.into_inner();
    let back = format!("/certificados/{id}");
    let raw = crate::certificates::vault::reveal_source_path(&state, &admin.0.user, id)
        .await
        .map_err(back_to(&back))?;
    let body = html! {
        p { a href=(back) { "‹ Voltar ao certificado" } }
        h1 { "Caminho do arquivo" }
        p { "Este acesso foi registrado na auditoria. O caminho pode conter a senha do certificado: não copie para e-mails ou conversas." }
        p.mono.reveal { (raw) }
    };
    Ok(staff_page(
        &admin.0,
        Section::Certificados,
        "Caminho do arquivo",
        body,
    ))
}
#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    password: crate::crypto::SecretString,
}

pub async fn set_password(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, PasswordForm>,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: admin, form } = submitted;
    let id = path.into_inner();
    let back = format!("/certificados/{id}");
    crate::certificates::vault::store_password(&state, &admin.0.user, id, form.password)
        .await
        .map_err(back_to(&back))?;
    Ok(done(&back, "senha"))
}

/// Rows of the "one file, its password" form; more files go in the batch field.
const UPLOAD_ROWS: usize = 5;

fn upload_form(csrf: &str, max_bytes: u64) -> Markup {
    html! {
        form.card.wide method="post" action="/certificados/enviar" enctype="multipart/form-data" {
            (csrf_field(csrf))
            p.muted {
                "Cada arquivo .pfx ou .p12 com a sua senha. Deixe a senha em branco quando ela estiver no nome do arquivo (ex.: “CLIENTE LTDA Senha abc123.pfx”). "
                "Até " (crate::certificates::upload::MAX_FILES) " arquivos por envio, " (max_bytes / 1024) " KiB cada."
            }
            @for i in 1..=UPLOAD_ROWS {
                fieldset.pair {
                    legend { "Arquivo " (i) }
                    label { "Certificado" input type="file" name="file" accept=".pfx,.p12"; }
                    label { "Senha" input type="password" name="password" autocomplete="off" maxlength="1024"; }
                }
            }
            label { "Em lote (senhas nos nomes dos arquivos)"
                input type="file" name="file" accept=".pfx,.p12" multiple;
            }
            button type="submit" { "Enviar" }
        }
    }
}

pub async fn upload_page(
    state: web::Data<AppState>,
    admin: AdminStaff,
) -> Result<HttpResponse, PageError> {
    let staff = &admin.0;
    let body = html! {
        p { a href="/certificados" { "‹ Certificados" } }
        h1 { "Enviar certificados" }
        (upload_form(&staff.csrf.value, state.settings.max_pfx_bytes))
    };
    Ok(staff_page(
        staff,
        Section::Certificados,
        "Enviar certificados",
        body,
    ))
}

/// Why a file did not open or was refused, in the office's words (the API keeps its English
/// text; this reads it). What it cannot name is shown as the server said it.
pub fn problem_pt(detail: &str) -> String {
    let quoted = |s: &str| s.split('"').nth(1).map(str::to_owned).unwrap_or_default();
    let fixed: &[(&str, &str)] = &[
        (
            "wrong password",
            "Senha errada: o arquivo não abriu com essa senha.",
        ),
        (
            "not a readable PKCS#12 file",
            "O arquivo não é um certificado .pfx legível (corrompido, ou de outro tipo).",
        ),
        (
            "the file holds no private key",
            "O arquivo não traz a chave privada do certificado.",
        ),
        (
            "the certificate cannot be read",
            "O certificado dentro do arquivo não pôde ser lido.",
        ),
        (
            "larger than max_pfx_bytes",
            "Arquivo grande demais para um certificado A1.",
        ),
        ("password: at most", "Senha longa demais."),
        (
            "only .pfx and .p12 files are accepted",
            "Só arquivos .pfx e .p12 são aceitos.",
        ),
        ("the file has no name", "O arquivo não tem nome."),
        (
            "the file name",
            "Nome de arquivo inválido: use um nome simples, sem barras, \"..\" ou caracteres de controle.",
        ),
        (
            "the folder already holds a different file with this name",
            "A pasta já tem outro arquivo com este nome: renomeie o arquivo ou remova o antigo antes.",
        ),
        (
            "a file with this name arrived in the folder meanwhile",
            "Um arquivo com este nome chegou à pasta neste meio-tempo: envie de novo.",
        ),
        (
            "cannot write into the certificates folder",
            "Não foi possível gravar na pasta de certificados (veja o registro do servidor).",
        ),
        (
            "cannot read the certificates folder",
            "Não foi possível ler a pasta de certificados (veja o registro do servidor).",
        ),
        (
            "the file could not be stored",
            "O arquivo não pôde ser guardado (veja o registro do servidor).",
        ),
        (
            "the password could not be stored",
            "A senha não pôde ser guardada (veja o registro do servidor).",
        ),
    ];
    if let Some((_, pt)) = fixed.iter().find(|(en, _)| detail.starts_with(en)) {
        return (*pt).to_owned();
    }
    if detail.starts_with("the file holds ") && detail.contains("private keys") {
        return "O arquivo traz mais de uma chave privada: envie um arquivo com um só certificado."
            .into();
    }
    if detail.starts_with("duplicate:") {
        return format!(
            "Repetido: o cofre já tem este certificado, como \"{}\".",
            quoted(detail)
        );
    }
    if detail.starts_with("the folder already holds \"") {
        return format!(
            "A pasta já tem \"{}\", um nome que difere deste só em maiúsculas e minúsculas.",
            quoted(detail)
        );
    }
    if let Some(rest) = detail.strip_prefix("expired on ") {
        let day = rest.split(':').next().unwrap_or_default();
        let shown = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .map(|d| d.format("%d/%m/%Y").to_string())
            .unwrap_or_else(|_| day.to_owned());
        return format!("Vencido em {shown}: guardado, mas não pode ser instalado.");
    }
    detail.to_owned()
}

fn outcome_label(outcome: Outcome) -> Markup {
    match outcome {
        Outcome::Ingested => html! { span.badge.ok { "guardado" } },
        Outcome::Updated => html! { span.badge.ok { "atualizado" } },
        Outcome::Unchanged => html! { span.badge.muted { "já estava guardado" } },
        Outcome::Failed => html! { span.badge.bad { "não abriu" } },
        Outcome::Refused => html! { span.badge.bad { "recusado" } },
    }
}

pub async fn upload_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    admin: AdminStaff,
    payload: web::Payload,
) -> Result<HttpResponse, PageError> {
    let back = "/certificados/enviar";
    let staff = &admin.0;
    // The body (bounded) is read for its CSRF field; nothing is stored before it is checked.
    let (files, csrf) = crate::certificates::upload_form::read_form_with_csrf(
        req.headers(),
        payload,
        state.settings.max_pfx_bytes,
    )
    .await
    .map_err(back_to(back))?;
    super::session::Csrf::verify(&req, csrf.as_deref().unwrap_or_default())
        .map_err(PageError::from)?;
    upload::folder_for(&state, &staff.user).map_err(back_to(back))?;
    // A row left empty sends a part with no name and no bytes (and its password part).
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| !(f.file_name.is_empty() && f.bytes.is_empty()))
        .collect();
    if files.is_empty() {
        return Err(back_to(back)(AppError::Validation(
            "escolha ao menos um arquivo".into(),
        )));
    }
    let results = upload::upload(&state, &staff.user, files)
        .await
        .map_err(back_to(back))?;
    let body = html! {
        p { a href="/certificados" { "‹ Certificados" } }
        h1 { "Resultado do envio" }
        table {
            caption.sr { "Resultado por arquivo" }
            thead { tr { th scope="col" { "Arquivo" } th scope="col" { "Resultado" } th scope="col" { "Detalhe" } } }
            tbody {
                @for r in &results {
                    tr {
                        td {
                            @if let Some(id) = r.certificate_id {
                                a href={ "/certificados/" (id) } { (r.file) }
                            } @else { (r.file) }
                        }
                        td { (outcome_label(r.outcome)) }
                        td { (r.detail.as_deref().map(problem_pt).unwrap_or_default()) }
                    }
                }
            }
        }
        h2 { "Enviar mais" }
        (upload_form(&staff.csrf.value, state.settings.max_pfx_bytes))
    };
    Ok(staff_page(
        staff,
        Section::Certificados,
        "Resultado do envio",
        body,
    ))
}
