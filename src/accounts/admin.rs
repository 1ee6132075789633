//! `/api/v1/admin/users`: user administration for ADMIN/DEV within their own office.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, PaginatorTrait, QueryOrder};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::UserView;
use super::user::{self, Users};
use super::{NewUser, password_set, session};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::{Email, Role};
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthUser};
use crate::state::AppState;

/// The users of `org` by e-mail.
pub async fn list_users<C: ConnectionTrait>(
    db: &C,
    org: crate::domain::OrgId,
) -> Result<Vec<UserView>, AppError> {
    let users = Users::find()
        .filter(user::entity::Column::OrgId.eq(org.0))
        .order_by_asc(user::entity::Column::Email)
        .all(db)
        .await?;
    Ok(users.iter().map(UserView::from).collect())
}

/// `GET /api/v1/admin/users`
pub async fn list(state: web::Data<AppState>, admin: AdminUser) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(list_users(&state.db, admin.0.org).await?))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[schemars(rename = "CreateUserBody")]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub email: String,
    pub nome: String,
    pub role_global: String,
    #[serde(default)]
    pub auto_approve_install_jobs: bool,
    #[serde(default)]
    pub ad_username: Option<String>,
}

/// A new user and their one-time password-set link (shown once).
pub struct Created {
    pub user: UserView,
    pub link: super::password_set::PasswordSetLink,
}

fn parse_role(raw: &str) -> Result<Role, AppError> {
    raw.parse::<Role>()
        .map_err(|e| AppError::Validation(format!("role_global: {e}")))
}

fn may_grant(admin: &AuthUser, role: Role) -> Result<(), AppError> {
    if role == Role::Dev && admin.role != Role::Dev {
        return Err(AppError::Forbidden(
            "only a DEV can grant the DEV role".into(),
        ));
    }
    Ok(())
}

/// `POST /api/v1/admin/users`: creates the user and returns their one-time password-set link.
pub async fn create(
    state: web::Data<AppState>,
    admin: AdminUser,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let created = create_user(&state, &admin.0, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(CreatedResponse {
        user: created.user,
        password_set_link: created.link.url.expose().to_owned(),
        expires_at: created.link.expires_at,
    }))
}

/// Response of `POST /api/v1/admin/users`: the user and their one-time password-set link.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct CreatedResponse {
    pub user: UserView,
    pub password_set_link: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Creates a user of the admin's office and issues their password-set link.
pub async fn create_user(
    state: &AppState,
    admin: &AuthUser,
    body: CreateBody,
) -> Result<Created, AppError> {
    admin.require_admin()?;
    let email =
        Email::parse(&body.email).map_err(|e| AppError::Validation(format!("email: {e}")))?;
    let role = parse_role(&body.role_global)?;
    may_grant(admin, role)?;
    let actor = Actor::User(admin.user.id);
    let txn = crate::db::begin_write(&state.db).await?;
    let created = user::create(
        &txn,
        admin.org,
        &NewUser {
            email,
            nome: body.nome,
            role,
        },
        actor,
    )
    .await?;
    let ad_username = body.ad_username.filter(|s| !s.trim().is_empty());
    let created = if body.auto_approve_install_jobs || ad_username.is_some() {
        Users::update(user::entity::ActiveModel {
            id: Set(created.id),
            auto_approve_install_jobs: Set(body.auto_approve_install_jobs),
            ad_username: Set(ad_username),
            ..Default::default()
        })
        .exec(&txn)
        .await?
    } else {
        created
    };
    let link = password_set::issue(
        &txn,
        &state.settings.public_url,
        state.settings.password_set_ttl_hours,
        &created,
        actor,
    )
    .await?;
    txn.commit().await?;
    Ok(Created {
        user: UserView::from(&created),
        link,
    })
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[schemars(rename = "PatchUserBody")]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    pub auto_approve_install_jobs: Option<bool>,
    pub role_global: Option<String>,
    pub is_active: Option<bool>,
    pub ad_username: Option<String>,
    pub email: Option<String>,
    pub nome: Option<String>,
}

/// `PATCH /api/v1/admin/users/{id}`
pub async fn patch(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, AppError> {
    let view = update_user(&state, &admin.0, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Changes user `id` of the admin's office: role, auto-approve, activation, names. Deactivation
/// ends their sessions, cancels their waiting requests and removes what is installed for them.
pub async fn update_user(
    state: &AppState,
    admin: &AuthUser,
    id: Uuid,
    body: PatchBody,
) -> Result<UserView, AppError> {
    admin.require_admin()?;
    let txn = crate::db::begin_write(&state.db).await?;
    let target = Users::find_by_id(id)
        .filter(user::entity::Column::OrgId.eq(admin.org.0))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user in this office".into()))?;
    let target_role = target.role()?;
    if !admin.role.may_administer(target_role) {
        return Err(AppError::Forbidden("only a DEV can change a DEV".into()));
    }

    let mut active = user::entity::ActiveModel {
        id: Set(target.id),
        ..Default::default()
    };
    let mut before = Map::new();
    let mut after = Map::new();
    let mut note = |field: &str, old: Value, new: Value| {
        if old != new {
            before.insert(field.to_owned(), old);
            after.insert(field.to_owned(), new);
        }
    };

    let new_role = match &body.role_global {
        Some(raw) => {
            let role = parse_role(raw)?;
            may_grant(admin, role)?;
            role
        }
        None => target_role,
    };
    let new_active = body.is_active.unwrap_or(target.is_active);
    if target.is_active && target_role == Role::Admin && (!new_active || new_role != Role::Admin) {
        // Two admins demoting each other at once must not both see the other still active.
        crate::organizations::lock(&txn, target.org_id).await?;
        let other_admins = Users::find()
            .filter(user::entity::Column::OrgId.eq(target.org_id))
            .filter(user::entity::Column::RoleGlobal.eq(Role::Admin.as_str()))
            .filter(user::entity::Column::IsActive.eq(true))
            .filter(user::entity::Column::Id.ne(target.id))
            .count(&txn)
            .await?;
        if other_admins == 0 {
            return Err(AppError::Conflict(
                "the office must keep at least one active ADMIN".into(),
            ));
        }
    }
    if new_role != target_role {
        note(
            "role_global",
            json!(target_role.as_str()),
            json!(new_role.as_str()),
        );
        active.role_global = Set(new_role.as_str().to_owned());
    }
    if new_active != target.is_active {
        note("is_active", json!(target.is_active), json!(new_active));
        active.is_active = Set(new_active);
    }
    if let Some(v) = body.auto_approve_install_jobs {
        note(
            "auto_approve_install_jobs",
            json!(target.auto_approve_install_jobs),
            json!(v),
        );
        active.auto_approve_install_jobs = Set(v);
    }
    if let Some(v) = body.ad_username {
        let v = Some(v.trim().to_owned()).filter(|s| !s.is_empty());
        note("ad_username", json!(target.ad_username), json!(v));
        active.ad_username = Set(v);
    }
    if let Some(nome) = body.nome {
        let nome = nome.trim().to_owned();
        if nome.is_empty() || nome.chars().count() > 200 {
            return Err(AppError::Validation(
                "nome: between 1 and 200 characters".into(),
            ));
        }
        note("nome", json!(target.nome), json!(nome));
        active.nome = Set(nome);
    }
    if let Some(raw) = body.email {
        let email = Email::parse(&raw).map_err(|e| AppError::Validation(format!("email: {e}")))?;
        if email.as_str() != target.email {
            let taken = Users::find()
                .filter(user::entity::Column::Email.eq(email.as_str()))
                .count(&txn)
                .await?
                > 0;
            if taken {
                return Err(AppError::Conflict(
                    "a user with that e-mail already exists".into(),
                ));
            }
            note("email", json!(target.email), json!(email.as_str()));
            active.email = Set(email.as_str().to_owned());
        }
    }
    if after.is_empty() {
        txn.rollback().await?;
        return Ok(UserView::from(&target));
    }
    active.updated_at = Set(Utc::now());
    let updated = Users::update(active).exec(&txn).await?;
    let mut wake = Vec::new();
    if !updated.is_active && target.is_active {
        session::revoke_all_for_user(&txn, updated.id).await?;
        // Access ends with the account: waiting requests are cancelled and what is installed
        // for this user is removed from the PCs.
        let actor = Actor::User(admin.user.id);
        crate::jobs::permission::cancel_open_installs(
            &txn,
            admin.org,
            crate::jobs::permission::Whose::Requester(updated.id),
            actor,
            admin.ip.clone(),
            "user_deactivated",
        )
        .await?;
        wake = crate::jobs::permission::remove_installations_of(
            &txn,
            admin.org,
            updated.id,
            actor,
            admin.ip.clone(),
            "user_deactivated",
        )
        .await?;
    }
    audit::append(
        &txn,
        Entry::new(
            admin.org,
            AuditAction::UserUpdated,
            Actor::User(admin.user.id),
        )
        .entity("user", updated.id)
        .meta(json!({"before": before, "after": after}))
        .ip(admin.ip.clone()),
    )
    .await?;
    txn.commit().await?;
    state.job_hub.changed();
    for device in wake {
        state.job_hub.notify(device);
    }
    Ok(UserView::from(&updated))
}
