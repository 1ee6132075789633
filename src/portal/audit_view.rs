//! The audit log as an office reads it: every action grouped by what people look for, each row's
//! actor and subject by their names (with a link), and the row's details (the deny reason, the
//! file sent, the e-mail behind a failed login, the removal mode) in words. The page and its
//! CSV render rows through this one module.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::Value;
use uuid::Uuid;

use crate::audit::AuditAction;
use crate::audit::query::AuditItem;
use crate::jobs::entity::Column as JobColumn;
use crate::jobs::lease::Column as LeaseColumn;
use crate::jobs::names::Names;

/// The filter's groups, in the order of the select.
pub const GROUPS: [&str; 7] = [
    "Pedidos e instalações",
    "Remoções",
    "Certificados",
    "Computadores",
    "Usuários e acesso",
    "Auditoria",
    "Servidor",
];

/// The filter group of `action`.
pub fn group_of(action: AuditAction) -> &'static str {
    use AuditAction as A;
    match action {
        A::InstallRequested
        | A::InstallApproved
        | A::InstallDenied
        | A::InstallCancelled
        | A::InstallExpired
        | A::InstallClaimed
        | A::PayloadIssued
        | A::PayloadDenied
        | A::PayloadRateLimited
        | A::InstallDone
        | A::InstallFailed
        | A::InstallTimeout
        | A::ResultDuplicate => GROUPS[0],
        A::CertRemoved18h
        | A::RemoveRequested
        | A::RemoveClaimed
        | A::RemoveDone
        | A::RemoveFailed
        | A::RemoveTimeout
        | A::RemoveCancelled
        | A::LeaseOverdue
        | A::CertRemovedLeaseEnd
        | A::CertRemovedOnRequest
        | A::CertRemovedDeviceBlocked
        | A::CertRemovedUserDeactivated
        | A::CertRemovedOverdue
        | A::CertRemovedUninstall => GROUPS[1],
        A::CertIngested
        | A::CertUpdated
        | A::CertRemovedFromSource
        | A::CertParseFailed
        | A::CertPasswordRejected
        | A::CertPathRevealed
        | A::CertUploaded
        | A::CertExpiring => GROUPS[2],
        A::DeviceProvisioned
        | A::DeviceUpdated
        | A::DeviceTokenRotated
        | A::DeviceBlocked
        | A::DeviceUnblocked
        | A::DeviceRemoved
        | A::DeviceUninstalled
        | A::DeviceAuthRateLimited
        | A::DeviceAuthFailed
        | A::DeviceEnrolled
        | A::DeviceEnrollDenied
        | A::DeviceKeyRegistered
        | A::DeviceKeyRejected => GROUPS[3],
        A::LoginOk
        | A::LoginFailed
        | A::LoginLocked
        | A::Logout
        | A::UserCreated
        | A::UserUpdated
        | A::UserUnlocked
        | A::PasswordSetInitiated
        | A::PasswordSet
        | A::PasswordSetDenied => GROUPS[4],
        A::AuditBreakAcknowledged => GROUPS[5],
        A::MasterKeyCreated | A::QueueProbeStarted | A::QueueProbeFinished => GROUPS[6],
    }
}

/// What a page of rows refers to: the names of its certificates, computers and users, and the
/// certificate and computer of each request and installation it names.
pub struct Subjects {
    names: Names,
    /// Request or installation id -> (certificate, computer).
    of: HashMap<Uuid, (Uuid, Uuid)>,
}

/// The [`Subjects`] of `rows`, in five queries for the whole page.
pub async fn names_for<C: sea_orm::ConnectionTrait>(
    db: &C,
    rows: &[AuditItem],
) -> Result<Subjects, crate::error::AppError> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let id_of = |kind: &'static str| {
        rows.iter()
            .filter(move |r| r.entity_type.as_deref() == Some(kind))
            .filter_map(|r| r.entity_id.as_deref()?.parse::<Uuid>().ok())
    };
    let jobs: Vec<(Uuid, Uuid, Uuid)> = crate::jobs::entity::InstallJobs::find()
        .select_only()
        .columns([JobColumn::Id, JobColumn::CertId, JobColumn::DeviceId])
        .filter(JobColumn::Id.is_in(id_of("install_job").collect::<Vec<_>>()))
        .into_tuple()
        .all(db)
        .await?;
    let leases: Vec<(Uuid, Uuid, Uuid)> = crate::jobs::lease::Leases::find()
        .select_only()
        .columns([LeaseColumn::Id, LeaseColumn::CertId, LeaseColumn::DeviceId])
        .filter(LeaseColumn::Id.is_in(id_of("installation").collect::<Vec<_>>()))
        .into_tuple()
        .all(db)
        .await?;
    let of: HashMap<Uuid, (Uuid, Uuid)> = jobs
        .into_iter()
        .chain(leases)
        .map(|(id, cert, device)| (id, (cert, device)))
        .collect();
    let meta_id = |key: &'static str| {
        rows.iter()
            .filter_map(move |r| r.meta.get(key)?.as_str()?.parse::<Uuid>().ok())
    };
    let actor = |kind: &'static str| {
        rows.iter()
            .filter(move |r| r.actor_type == kind)
            .filter_map(|r| r.actor_id)
    };
    let names = Names::load(
        db,
        id_of("certificate")
            .chain(meta_id("cert_id"))
            .chain(of.values().map(|(c, _)| *c)),
        id_of("device")
            .chain(meta_id("device_id"))
            .chain(actor("device"))
            .chain(of.values().map(|(_, d)| *d)),
        id_of("user").chain(actor("user")),
    )
    .await?;
    Ok(Subjects { names, of })
}

/// A name, or what stands for one nobody knows any more.
fn or_unknown(name: String, id: impl std::fmt::Display) -> String {
    if name.is_empty() {
        format!("(removido: {id})")
    } else {
        name
    }
}

/// Who did it, as text.
pub fn actor_text(row: &AuditItem, subjects: &Subjects) -> String {
    let names = &subjects.names;
    match (row.actor_type, row.actor_id) {
        ("user", Some(id)) => {
            or_unknown(names.user(Some(id)).map(|u| u.name).unwrap_or_default(), id)
        }
        ("device", Some(id)) => format!("PC {}", or_unknown(names.device(id).hostname, id)),
        _ => "sistema".to_owned(),
    }
}

/// Who did it, with a link to their rows (a user) or their page (a computer).
pub fn actor_cell(row: &AuditItem, subjects: &Subjects) -> Markup {
    let text = actor_text(row, subjects);
    match (row.actor_type, row.actor_id) {
        ("user", Some(id)) => html! { a href={ "/auditoria?user_id=" (id) } { (text) } },
        ("device", Some(id)) => html! { a href={ "/dispositivos/" (id) } { (text) } },
        _ => html! { (text) },
    }
}

/// What the row is about: `(text, link)`. A job names its certificate and computer.
fn subject(row: &AuditItem, subjects: &Subjects) -> Option<(String, Option<String>)> {
    let names = &subjects.names;
    let id = row.entity_id.as_deref()?;
    let uuid = id.parse::<Uuid>().ok();
    let known = uuid.and_then(|u| subjects.of.get(&u).copied());
    let meta_uuid = |key: &str| row.meta.get(key)?.as_str()?.parse::<Uuid>().ok();
    let cert = known.map(|(c, _)| c).or_else(|| meta_uuid("cert_id"));
    let device = known.map(|(_, d)| d).or_else(|| meta_uuid("device_id"));
    let what = || {
        let cert = cert.map(|c| names.cert(c).name).filter(|c| !c.is_empty());
        let device = device
            .map(|d| names.device(d).hostname)
            .filter(|d| !d.is_empty());
        match (cert, device) {
            (Some(c), Some(d)) => Some(format!("{c} em {d}")),
            (Some(c), None) => Some(c),
            _ => None,
        }
    };
    Some(match (row.entity_type.as_deref()?, uuid) {
        ("certificate", Some(u)) => (
            format!("Certificado {}", or_unknown(names.cert(u).name, u)),
            Some(format!("/certificados/{u}")),
        ),
        ("device", Some(u)) => (
            format!("Computador {}", or_unknown(names.device(u).hostname, u)),
            Some(format!("/dispositivos/{u}")),
        ),
        ("user", Some(u)) => (
            format!(
                "Usuário {}",
                or_unknown(names.user(Some(u)).map(|n| n.name).unwrap_or_default(), u)
            ),
            Some(format!("/auditoria?user_id={u}")),
        ),
        ("install_job", _) => (
            what()
                .map(|w| format!("Pedido: {w}"))
                .unwrap_or_else(|| format!("Pedido {}", short(id))),
            Some(format!("/auditoria?entity_id={id}")),
        ),
        ("installation", _) => (
            what()
                .map(|w| format!("Instalação: {w}"))
                .unwrap_or_else(|| format!("Instalação {}", short(id))),
            Some(format!("/auditoria?entity_id={id}")),
        ),
        (kind, _) => (format!("{kind} {}", short(id)), None),
    })
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub fn subject_text(row: &AuditItem, subjects: &Subjects) -> String {
    subject(row, subjects).map(|(t, _)| t).unwrap_or_default()
}

pub fn subject_cell(row: &AuditItem, subjects: &Subjects) -> Markup {
    match subject(row, subjects) {
        Some((text, Some(href))) => html! { a href=(href) { (text) } },
        Some((text, None)) => html! { (text) },
        None => html! {},
    }
}

fn text_of<'a>(meta: &'a Value, key: &str) -> Option<&'a str> {
    meta.get(key)?.as_str().filter(|s| !s.trim().is_empty())
}

/// The removal modes and causes, in words.
fn mode_pt(mode: &str) -> &str {
    match mode {
        "scheduled" => "limpeza das 18:00",
        "manual" => "limpeza manual",
        "startup" => "limpeza ao iniciar o agente",
        "remove_job" | "requested" => "pedido de remoção",
        "lease_end" => "fim do prazo",
        "device_blocked" => "computador bloqueado",
        "user_deactivated" => "usuário desativado",
        "overdue" => "remoção atrasada",
        "uninstall" => "agente desinstalado",
        other => other,
    }
}

/// The row's details in words: what the office looks for in it.
pub fn details(row: &AuditItem) -> String {
    let m = &row.meta;
    let mut out: Vec<String> = Vec::new();
    if let Some(r) = text_of(m, "reason") {
        out.push(format!("motivo: {r}"));
    }
    if let Some(f) = text_of(m, "file") {
        out.push(format!("arquivo: {f}"));
    }
    if let Some(e) = text_of(m, "email") {
        out.push(format!("e-mail: {e}"));
    }
    if let Some(mode) = text_of(m, "mode").or_else(|| text_of(m, "removal_cause")) {
        out.push(format!("como: {}", mode_pt(mode)));
    }
    if let Some(d) = m.get("duration_minutes").and_then(Value::as_i64) {
        out.push(format!("duração pedida: {d} min"));
    }
    if let Some(e) = text_of(m, "error").or_else(|| text_of(m, "error_message")) {
        out.push(format!("erro: {e}"));
    }
    if let Some(d) = text_of(m, "detail") {
        out.push(super::certificates::problem_pt(d));
    }
    if let Some(h) = text_of(m, "reported_hostname") {
        out.push(format!("nome no PC: {h}"));
    }
    if let (Some(before), Some(after)) = (m.get("before"), m.get("after"))
        && let Some(after) = after.as_object()
    {
        for (field, new) in after {
            let old = before.get(field).cloned().unwrap_or(Value::Null);
            out.push(format!("{field}: {} → {}", plain(&old), plain(new)));
        }
    }
    out.join("; ")
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// The action in words, with its code for the runbook's SQL.
pub fn action_text(code: &str) -> String {
    code.parse::<AuditAction>()
        .map(action_label)
        .map(str::to_owned)
        .unwrap_or_else(|_| code.to_owned())
}

/// What an audited action means, in the office's words (the code stays beside it for the
/// runbook's SQL).
pub fn action_label(action: AuditAction) -> &'static str {
    use AuditAction as A;
    match action {
        A::InstallRequested => "Instalação solicitada",
        A::InstallApproved => "Instalação aprovada",
        A::InstallDenied => "Instalação negada",
        A::InstallCancelled => "Instalação cancelada",
        A::InstallExpired => "Solicitação expirada",
        A::InstallClaimed => "Instalação iniciada pelo agente",
        A::PayloadIssued => "Certificado entregue ao agente",
        A::PayloadDenied => "Entrega ao agente recusada",
        A::PayloadRateLimited => "Entregas ao agente limitadas",
        A::InstallDone => "Certificado instalado",
        A::InstallFailed => "Instalação falhou",
        A::InstallTimeout => "Instalação sem resposta do agente",
        A::ResultDuplicate => "Resultado repetido do agente",
        A::CertRemoved18h => "Removido na limpeza diária",
        A::RemoveRequested => "Remoção pedida",
        A::RemoveClaimed => "Remoção iniciada pelo agente",
        A::RemoveDone => "Remoção concluída",
        A::RemoveFailed => "Remoção falhou",
        A::RemoveTimeout => "Remoção sem resposta do agente",
        A::RemoveCancelled => "Remoção cancelada",
        A::LeaseOverdue => "Remoção atrasada",
        A::CertRemovedLeaseEnd => "Removido no fim do prazo",
        A::CertRemovedOnRequest => "Removido a pedido (Remover agora)",
        A::CertRemovedDeviceBlocked => "Removido: computador bloqueado",
        A::CertRemovedUserDeactivated => "Removido: usuário desativado",
        A::CertRemovedOverdue => "Removido por atraso",
        A::CertRemovedUninstall => "Removido na desinstalação do agente",
        A::LoginOk => "Entrada no portal",
        A::LoginFailed => "Entrada recusada",
        A::LoginLocked => "Conta bloqueada por tentativas",
        A::Logout => "Saída do portal",
        A::UserCreated => "Usuário criado",
        A::UserUpdated => "Usuário alterado",
        A::UserUnlocked => "Conta desbloqueada",
        A::PasswordSetInitiated => "Link de senha gerado",
        A::PasswordSet => "Senha definida",
        A::PasswordSetDenied => "Link de senha recusado",
        A::DeviceProvisioned => "Computador cadastrado",
        A::DeviceUpdated => "Computador alterado",
        A::DeviceTokenRotated => "Credencial do computador trocada",
        A::DeviceBlocked => "Computador bloqueado",
        A::DeviceUnblocked => "Computador desbloqueado",
        A::DeviceRemoved => "Computador removido",
        A::DeviceUninstalled => "Agente desinstalado do computador",
        A::DeviceAuthRateLimited => "Autenticações do agente limitadas",
        A::DeviceAuthFailed => "Autenticação do agente recusada",
        A::DeviceEnrolled => "Computador pareado",
        A::DeviceEnrollDenied => "Pareamento recusado",
        A::DeviceKeyRegistered => "Chave do agente registrada",
        A::DeviceKeyRejected => "Chave do agente recusada",
        A::CertIngested => "Certificado cadastrado",
        A::CertUpdated => "Certificado atualizado",
        A::CertRemovedFromSource => "Arquivo saiu da pasta",
        A::CertParseFailed => "Arquivo não abriu",
        A::CertPasswordRejected => "Senha do certificado recusada",
        A::CertPathRevealed => "Caminho do arquivo mostrado",
        A::CertUploaded => "Arquivo enviado pelo portal",
        A::CertExpiring => "Certificado perto do vencimento",
        A::MasterKeyCreated => "Chave mestra criada",
        A::QueueProbeStarted => "Teste da fila iniciado",
        A::QueueProbeFinished => "Teste da fila concluído",
        A::AuditBreakAcknowledged => "Quebra da auditoria reconhecida",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_group() {
        for a in AuditAction::ALL {
            assert!(GROUPS.contains(&group_of(*a)), "{a}");
        }
    }

    #[test]
    fn details_read_like_the_office_speaks() {
        let row = |meta: Value| AuditItem {
            seq: 1,
            at: chrono::Utc::now(),
            action: "INSTALL_DENIED".into(),
            actor_type: "system",
            actor_id: None,
            entity_type: None,
            entity_id: None,
            ip: None,
            meta,
        };
        assert_eq!(
            details(&row(serde_json::json!({"reason": "sem autorização"}))),
            "motivo: sem autorização"
        );
        assert_eq!(
            details(&row(serde_json::json!({"mode": "scheduled"}))),
            "como: limpeza das 18:00"
        );
        assert_eq!(
            details(&row(
                serde_json::json!({"before": {"role_global": "VIEW"}, "after": {"role_global": "ADMIN"}})
            )),
            "role_global: VIEW → ADMIN"
        );
    }
}
