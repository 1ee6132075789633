//! Pieces every portal page shares: Brazilian dates in the office's time zone, status badges,
//! CNPJ/CPF formatting, the pager, empty states, notices and the CSRF field.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};

use crate::certificates::document::{Cnpj, Cpf};
use crate::jobs::JobStatus;
use crate::paging::Page;

/// `02/12/2026 17:45` in the office's time zone.
pub fn when(tz: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&tz).format("%d/%m/%Y %H:%M").to_string()
}

/// `02/12/2026` in the office's time zone.
pub fn day(tz: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&tz).format("%d/%m/%Y").to_string()
}

/// A `<time>` element: the Brazilian form shown, the instant in its `datetime`.
pub fn time(tz: Tz, at: Option<DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => html! { time datetime=(at.to_rfc3339()) { (when(tz, at)) } },
        None => html! { span.muted { "—" } },
    }
}

/// "2 h 15 min", "2 h", "40 min".
pub fn minutes_text(m: i64) -> String {
    match m {
        m if m < 60 => format!("{m} min"),
        m if m % 60 == 0 => format!("{} h", m / 60),
        m => format!("{} h {} min", m / 60, m % 60),
    }
}

/// "2 h 15 min", "40 min", "menos de 1 min"; `None` once `until` has passed.
pub fn time_left(now: DateTime<Utc>, until: DateTime<Utc>) -> Option<String> {
    let minutes = (until - now).num_minutes();
    if until <= now {
        return None;
    }
    Some(match minutes {
        0 => "menos de 1 min".to_owned(),
        m => minutes_text(m),
    })
}

/// `1 pedido`, `2 pedidos`, `0 pedidos`: a count with the word that agrees with it.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A moment as the office says it: `17:45` today, `09:06 de amanhã`, `24/12 às 09:07`.
pub fn clock(tz: Tz, at: DateTime<Utc>) -> String {
    crate::schedule::local_time(at, Utc::now(), tz)
}

/// The issuer as people name it: its common name (`AC SOLUTI Multipla v5`), not the whole
/// distinguished name; the whole name when it has no CN.
pub fn issuer_name(dn: &str) -> &str {
    dn.split(", ")
        .filter_map(|part| part.strip_prefix("CN="))
        .last()
        .map(str::trim)
        .filter(|cn| !cn.is_empty())
        .unwrap_or(dn)
}

/// A CNPJ or CPF as people write it (`12.345.678/0001-95`), as stored when it is neither.
pub fn document(cnpj: Option<&str>, cpf: Option<&str>) -> String {
    if let Some(c) = cnpj.and_then(Cnpj::parse) {
        return c.to_string();
    }
    if let Some(c) = cpf.and_then(Cpf::parse) {
        return c.to_string();
    }
    cnpj.or(cpf).unwrap_or("—").to_owned()
}

/// The pt-BR name of a job status.
pub fn status_label(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Requested => "Aguardando aprovação",
        JobStatus::Pending => "Aprovada — aguardando o agente",
        JobStatus::InProgress => "Instalando",
        JobStatus::Done => "Concluída",
        JobStatus::Failed => "Falhou",
        JobStatus::Denied => "Negada",
        JobStatus::Expired => "Expirada",
        JobStatus::Cancelled => "Cancelada",
        JobStatus::Timeout => "Sem resposta do agente",
    }
}

fn status_tone(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Requested | JobStatus::Pending | JobStatus::InProgress => "badge wait",
        JobStatus::Done => "badge ok",
        JobStatus::Failed | JobStatus::Timeout => "badge bad",
        JobStatus::Denied | JobStatus::Expired | JobStatus::Cancelled => "badge muted",
    }
}

pub fn status_badge(status: JobStatus) -> Markup {
    html! { span class=(status_tone(status)) data-status=(status.as_str()) { (status_label(status)) } }
}

/// Days until `not_after` as a badge: red once expired or within 7 days, amber within 30.
/// Calendar days in the office's time zone: a certificate ending tomorrow at 09:00 "vence
/// amanhã" at 18:00 today, though fewer than 24 hours are left.
pub fn expiry_badge(tz: Tz, now: DateTime<Utc>, not_after: Option<DateTime<Utc>>) -> Markup {
    let Some(end) = not_after else {
        return html! { span.badge.muted { "validade desconhecida" } };
    };
    let days =
        (end.with_timezone(&tz).date_naive() - now.with_timezone(&tz).date_naive()).num_days();
    if end <= now {
        return html! { span.badge.bad { "vencido" } };
    }
    let class = match days {
        d if d <= 7 => "badge bad",
        d if d <= 30 => "badge wait",
        _ => "badge ok",
    };
    let text = match days {
        0 => "vence hoje".to_owned(),
        1 => "vence amanhã".to_owned(),
        d => format!("vence em {d} dias"),
    };
    html! { span class=(class) { (text) } }
}

/// A line to paste (a command, a link) with its "Copiar" button (`static/portal.js`).
pub fn copyable(text: &str) -> Markup {
    html! {
        div.copyable {
            pre.command { code { (text) } }
            button.small.secondary.copy type="button" aria-label="Copiar para a área de transferência" { "Copiar" }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// An empty state: what the list would show and what to do about it.
pub fn empty(text: &str) -> Markup {
    html! { p.empty data-empty { (text) } }
}

/// A notice after an action (`?ok=`), from a fixed table so no text comes from the URL.
pub fn notice(code: Option<&str>) -> Markup {
    let text = match code.unwrap_or_default() {
        "solicitado" => "Pedido enviado. Acompanhe o andamento abaixo.",
        "aprovado" => "Pedido aprovado: o agente do computador vai instalar o certificado.",
        "negado" => "Pedido negado.",
        "cancelado" => "Pedido cancelado.",
        "remocao" => "Remoção pedida: o agente vai remover o certificado do computador.",
        "bloqueado" => "Dispositivo bloqueado.",
        "desbloqueado" => "Dispositivo desbloqueado.",
        "salvo" => "Alterações salvas.",
        "senha" => "Senha do certificado guardada.",
        "conta_desbloqueada" => "Conta desbloqueada: a pessoa já pode entrar com a senha dela.",
        "conta_nao_bloqueada" => "Esta conta não estava bloqueada.",
        "quebra_ciente" => "Ciência registrada na auditoria.",
        "computador_removido" => {
            "Computador removido. Se havia certificados nele, o agente vai removê-los; o histórico continua na auditoria."
        }
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// Previous / next links for a page of `total` items; `base` is the query without `page`.
pub fn pager<T>(page: &Page<T>, base: &str) -> Markup {
    let pages = page.total.div_ceil(page.page_size).max(1);
    if pages <= 1 {
        return html! {};
    }
    let link = |p: u64| {
        if base.is_empty() {
            format!("?page={p}")
        } else {
            format!("?{base}&page={p}")
        }
    };
    html! {
        nav.pager aria-label="Paginação" {
            @if page.page > 1 {
                a href=(link(page.page - 1)) rel="prev" { "‹ Anterior" }
            }
            span { "Página " (page.page) " de " (pages) " · " (page.total) " no total" }
            @if page.page < pages {
                a href=(link(page.page + 1)) rel="next" { "Próxima ›" }
            }
        }
    }
}

/// A query string from `(name, value)` pairs, leaving empty values out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn brazilian_dates_in_the_office_zone() {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 20, 45, 0).unwrap();
        assert_eq!(when(chrono_tz::America::Sao_Paulo, at), "02/12/2026 17:45");
        assert_eq!(day(chrono_tz::America::Sao_Paulo, at), "02/12/2026");
    }

    #[test]
    fn time_left_reads_naturally() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let at = |m| now + chrono::Duration::minutes(m);
        assert_eq!(time_left(now, at(135)).as_deref(), Some("2 h 15 min"));
        assert_eq!(time_left(now, at(120)).as_deref(), Some("2 h"));
        assert_eq!(time_left(now, at(40)).as_deref(), Some("40 min"));
        assert_eq!(time_left(now, at(-1)), None);
    }

    #[test]
    fn expiry_counts_calendar_days_in_the_office_zone() {
        let tz = chrono_tz::America::Sao_Paulo;
        // 18:00 in São Paulo; the certificate ends at 09:00 tomorrow, 15 hours away.
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 21, 0, 0).unwrap();
        let badge =
            |h: i64| expiry_badge(tz, now, Some(now + chrono::Duration::hours(h))).into_string();
        assert!(badge(15).contains("vence amanhã"), "{}", badge(15));
        assert!(badge(2).contains("vence hoje"), "{}", badge(2));
        assert!(badge(15 + 24).contains("vence em 2 dias"), "{}", badge(39));
        assert!(badge(-1).contains("vencido"));
    }

    #[test]
    fn issuers_are_named_by_their_common_name() {
        assert_eq!(
            issuer_name(
                "C=BR, O=ICP-Brasil, OU=Secretaria da Receita Federal do Brasil - RFB, CN=AC SOLUTI Multipla v5"
            ),
            "AC SOLUTI Multipla v5"
        );
        assert_eq!(issuer_name("O=Sem Nome"), "O=Sem Nome");
    }

    #[test]
    fn counts_agree_with_their_words() {
        assert_eq!(count(1, "pedido", "pedidos"), "1 pedido");
        assert_eq!(count(0, "pedido", "pedidos"), "0 pedidos");
        assert_eq!(count(2, "pedido", "pedidos"), "2 pedidos");
    }

    #[test]
    fn documents_are_punctuated() {
        assert_eq!(document(Some("11222333000181"), None), "11.222.333/0001-81");
        assert_eq!(document(None, Some("52998224725")), "529.982.247-25");
        assert_eq!(document(None, None), "—");
    }

    #[test]
    fn query_strings_are_encoded() {
        assert_eq!(
            query(&[("q", "a b&c"), ("status", ""), ("x", "1")]),
            "q=a%20b%26c&x=1"
        );
    }
}
