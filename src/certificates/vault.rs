//! An admin's vault operations on one certificate of their office: typing the password no
//! file name gave, and revealing the raw source path. Both are audited with the admin as actor.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use serde_json::json;

use super::catalogue::{self, CertificateView};
use super::entity::{self, Column, Entity as Certificates};
use super::ingest;
use super::pkcs12;
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::SecretString;
use crate::domain::OrgId;
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

/// Longer passwords are not typed by people; PBKDF2 over them would only cost CPU.
pub const MAX_PASSWORD_CHARS: usize = 1024;

async fn find(state: &AppState, org: OrgId, id: Uuid) -> Result<entity::Model, AppError> {
    Certificates::find_by_id(id)
        .filter(Column::OrgId.eq(org.0))
        .one(&state.db)
        .await?
        .ok_or_else(catalogue::not_found)
}

/// Stores the password an admin typed for a certificate of their office, only once it opens
/// the stored file; the row then shows what the file holds. The one rule behind the API's
/// password route and the upload (a file whose name gave no working password).
pub async fn store_password(
    state: &AppState,
    admin: &AuthUser,
    id: Uuid,
    password: SecretString,
) -> Result<CertificateView, AppError> {
    if !admin.is_admin() {
        return Err(AppError::Forbidden("requires the ADMIN or DEV role".into()));
    }
    if password.expose().chars().count() > MAX_PASSWORD_CHARS {
        return Err(AppError::Validation(format!(
            "password: at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let row = find(state, admin.org, id).await?;
    let sealed = row.pfx_sealed.as_ref().ok_or_else(|| {
        AppError::Conflict("the certificate's file is not stored; ingest the folder again".into())
    })?;
    let pfx = state
        .master_key
        .open(sealed, &format!("certificates.pfx:{id}"))
        .map_err(|e| AppError::Internal(format!("certificate {id}: sealed file: {e}")))?;
    let opened = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || pkcs12::open(&pfx, password.expose()))
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?
    };
    let actor = Actor::User(admin.user.id);
    let info = match opened {
        Ok(info) => info,
        Err(e) => {
            audit::record(
                &state.db,
                Entry::new(admin.org, AuditAction::CertPasswordRejected, actor)
                    .entity("certificate", id)
                    .meta(json!({"reason": e.to_string()}))
                    .ip(admin.ip.clone()),
            )
            .await?;
            tracing::info!(certificate = %id, reason = %e, "certificate password rejected");
            return Err(AppError::Validation(e.to_string()));
        }
    };

    let txn = crate::db::begin_write(&state.db).await?;
    // Dedup is by thumbprint: a second row for the same certificate would be installed twice.
    if let Some(other) = Certificates::find()
        .filter(Column::OrgId.eq(admin.org.0))
        .filter(Column::Sha1.eq(info.sha1.as_str()))
        .filter(Column::Id.ne(id))
        .one(&txn)
        .await?
    {
        return Err(AppError::Conflict(format!(
            "this file holds the same certificate (thumbprint {}) as certificate {} \"{}\"; remove the duplicate file",
            info.sha1, other.id, other.name
        )));
    }
    let mut update = entity::ActiveModel {
        id: Set(id),
        password_sealed: Set(Some(state.master_key.seal(
            password.expose().as_bytes(),
            &format!("certificates.password:{id}"),
        ))),
        name_search: Set(Some(catalogue::name_search(&row.name, Some(&info)))),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    ingest::set_metadata(&mut update, &info);
    Certificates::update(update).exec(&txn).await?;
    ingest::refresh_supersession_of(&txn, admin.org, &info).await?;
    audit::append(
        &txn,
        Entry::new(admin.org, AuditAction::CertUpdated, actor)
            .entity("certificate", id)
            .meta(json!({"password_set": true, "sha1": info.sha1}))
            .ip(admin.ip.clone()),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(certificate = %id, "certificate password set by an admin");
    catalogue::find_view(&state.db, admin.org, id).await
}

/// The raw source path of certificate `id` (ADMIN/DEV), audited `CERT_PATH_REVEALED`.
pub async fn reveal_source_path(
    state: &AppState,
    admin: &AuthUser,
    id: Uuid,
) -> Result<String, AppError> {
    admin.require_admin()?;
    let row = find(state, admin.org, id).await?;
    let sealed = row.source_path_sealed.as_ref().ok_or_else(|| {
        AppError::Conflict("no source path is stored for this certificate".into())
    })?;
    let raw = state
        .master_key
        .open(sealed, &format!("certificates.source_path:{id}"))
        .map_err(|e| AppError::Internal(format!("certificate {id}: sealed path: {e}")))?;
    audit::record(
        &state.db,
        Entry::new(
            admin.org,
            AuditAction::CertPathRevealed,
            Actor::User(admin.user.id),
        )
        .entity("certificate", id)
        .meta(json!({"name": row.name}))
        .ip(admin.ip.clone()),
    )
    .await?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}
