//! User administration by ADMIN/DEV within their own office: the users as the office sees
//! them, creating one (with their password-set link), changing one (role, auto-approve,
//! activation, names), and issuing a new password-set link.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, PaginatorTrait, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::password_set::{self, PasswordSetLink};
use super::session;
use super::user::{self, NewUser, User, Users};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::{Email, OrgId, Role};
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

/// A user as the API shows it (no password hash).
#[derive(Serialize, schemars::JsonSchema)]
pub struct UserView {
    pub id: Uuid,
    pub org_id: i64,
    pub email: String,
    pub nome: String,
    pub role_global: String,
    pub is_active: bool,
    pub auto_approve_install_jobs: bool,
    pub ad_username: Option<String>,
    pub has_password: bool,
    pub created_at: chrono::DateTime<Utc>,
    /// Until when wrong passwords lock the account out (absent: not locked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<chrono::DateTime<Utc>>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            org_id: u.org_id,
            email: u.email.clone(),
            nome: u.nome.clone(),
            role_global: u.role_global.clone(),
            is_active: u.is_active,
            auto_approve_install_jobs: u.auto_approve_install_jobs,
            ad_username: u.ad_username.clone(),
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
            locked_until: None,
        }
    }
}

/// The user of `org` with e-mail `raw`.
pub async fn find_by_email<C: ConnectionTrait>(
    db: &C,
    org: OrgId,
    raw: &str,
) -> Result<User, AppError> {
    let email = Email::parse(raw).map_err(AppError::Validation)?;
    Users::find()
        .filter(user::entity::Column::Email.eq(email.as_str()))
        .filter(user::entity::Column::OrgId.eq(org.0))
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound("no user with that e-mail in this office".into()))
}

/// The users of `org` by e-mail.
pub async fn list_users<C: ConnectionTrait>(db: &C, org: OrgId) -> Result<Vec<UserView>, AppError> {
    let users = Users::find()
        .filter(user::entity::Column::OrgId.eq(org.0))
        .order_by_asc(user::entity::Column::Email)
        .all(db)
        .await?;
    Ok(users.iter().map(UserView::from).collect())
}

/// The users of `org` by e-mail, with who is locked out by wrong passwords and until when.
pub async fn list_users_with_locks(
    state: &AppState,
    org: OrgId,
) -> Result<Vec<UserView>, AppError> {
    let mut users = list_users(&state.db, org).await?;
    let locked = super::lockout::locked_among(
        &state.db,
        users.iter().map(|u| u.email.clone()).collect(),
        state.settings.lockout_threshold,
        state.settings.lockout_window_min,
    )
    .await?;
    for u in &mut users {
        u.locked_until = locked.get(&u.email).copied();
    }
    Ok(users)
}

/// User `id` of the admin's office (another office's user is "not found", like a missing one).
async fn target_in_org<C: ConnectionTrait>(
    conn: &C,
    admin: &AuthUser,
    id: Uuid,
) -> Result<User, AppError> {
    Users::find_by_id(id)
        .filter(user::entity::Column::OrgId.eq(admin.org.0))
        .one(conn)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user in this office".into()))
}

/// Ends the lockout of user `id` (an ADMIN for VIEW/ADMIN, a DEV for all), audited
/// `USER_UNLOCKED`. Unlocking an account that is not locked changes nothing and says so.
pub async fn unlock_user(state: &AppState, admin: &AuthUser, id: Uuid) -> Result<bool, AppError> {
    admin.require_admin()?;
    let txn = crate::db::begin_write(&state.db).await?;
    let target = target_in_org(&txn, admin, id).await?;
    if !admin.role.may_administer(target.role()?) {
        return Err(AppError::Forbidden("only a DEV can unlock a DEV".into()));
    }
    super::lockout::lock_account(&txn, &target.email).await?;
    let was_locked = super::lockout::locked_until(
        &txn,
        &target.email,
        state.settings.lockout_threshold,
        state.settings.lockout_window_min,
    )
    .await?;
    let Some(until) = was_locked else {
        txn.rollback().await?;
        return Ok(false);
    };
    let forgotten = super::lockout::clear(&txn, &target.email).await?;
    audit::append(
        &txn,
        Entry::new(
            admin.org,
            AuditAction::UserUnlocked,
            Actor::User(admin.user.id),
        )
        .entity("user", target.id)
        .meta(json!({
            "email": target.email,
            "locked_until": until.to_rfc3339(),
            "failed_attempts_cleared": forgotten,
        }))
        .ip(admin.ip.clone()),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
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
    pub link: PasswordSetLink,
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
    let target = target_in_org(&txn, admin, id).await?;
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
            crate::jobs::permission::Whose::Requester(updated.id),
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

/// A one-time password-set link for `target` (a user of the admin's office), issued by an
/// ADMIN/DEV who may administer them; a refusal is audited `PASSWORD_SET_DENIED`.
pub async fn issue_password_link(
    state: &AppState,
    admin: &AuthUser,
    target: &User,
) -> Result<PasswordSetLink, AppError> {
    admin.require_admin()?;
    if target.org_id != admin.org.0 {
        return Err(AppError::NotFound("no such user in this office".into()));
    }
    if !admin.role.may_administer(target.role()?) {
        // Setting a DEV's password would let an ADMIN log in as the DEV and grant itself DEV.
        audit::record(
            &state.db,
            Entry::new(
                admin.org,
                AuditAction::PasswordSetDenied,
                Actor::User(admin.user.id),
            )
            .entity("user", target.id)
            .meta(json!({"reason": "target_is_dev"}))
            .ip(admin.ip.clone()),
        )
        .await?;
        return Err(AppError::Forbidden(
            "only a DEV can issue a password link for a DEV".into(),
        ));
    }
    let txn = crate::db::begin_write(&state.db).await?;
    let link = password_set::issue(
        &txn,
        &state.settings.public_url,
        state.settings.password_set_ttl_hours,
        target,
        Actor::User(admin.user.id),
    )
    .await?;
    txn.commit().await?;
    Ok(link)
}
