//! The first access: while the database has no user, `serve` prints a one-time link (its
//! token's hash is kept in memory only) with which the office creates its first ADMIN.

use sea_orm::{EntityTrait, PaginatorTrait};

use super::password::{self, Password};
use super::user::{self, NewUser, Users};
use crate::audit::Actor;
use crate::crypto::TokenHash;
use crate::domain::{Email, OrgId, Role};
use crate::error::AppError;
use crate::state::AppState;

fn is_setup_token(stored: Option<&TokenHash>, presented: &str) -> bool {
    stored.is_some_and(|h| TokenHash::of(presented).matches(h.as_str()))
}

/// Whether `presented` is the first-access link's token.
pub fn setup_token_matches(state: &AppState, presented: &str) -> bool {
    let guard = state.setup_token.lock().unwrap_or_else(|p| p.into_inner());
    is_setup_token(guard.as_ref(), presented)
}

/// Takes the first-access token out of the state when `presented` matches it.
fn take_setup_token(state: &AppState, presented: &str) -> Option<TokenHash> {
    let mut guard = state.setup_token.lock().unwrap_or_else(|p| p.into_inner());
    if is_setup_token(guard.as_ref(), presented) {
        guard.take()
    } else {
        None
    }
}

fn invalid_link() -> AppError {
    AppError::NotFound("first-access link is not valid".into())
}

/// Creates the office's first ADMIN with the link's `token`, once: the link is consumed
/// before anything is written (two submissions cannot both succeed), and given back if
/// nothing was created.
pub async fn create_first_admin(
    state: &AppState,
    token: &str,
    nome: String,
    email: Email,
    password: Password,
    ip: Option<String>,
) -> Result<(), AppError> {
    if !setup_token_matches(state, token) {
        return Err(invalid_link());
    }
    let cost = state.settings.bcrypt_cost;
    let hash = password::blocking(move || password.hash(cost)).await??;
    let Some(token_hash) = take_setup_token(state, token) else {
        return Err(invalid_link());
    };
    let created = async {
        let txn = crate::db::begin_write(&state.db).await?;
        if Users::find().count(&txn).await? > 0 {
            txn.rollback().await?;
            return Err(AppError::Conflict(
                "the first administrator already exists".into(),
            ));
        }
        let new = NewUser {
            email,
            nome,
            role: Role::Admin,
        };
        let created = user::create(&txn, OrgId(state.settings.org_id), &new, Actor::System).await?;
        user::store_password(&txn, &created, hash, ip).await?;
        txn.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = created {
        // Nothing was created: the link stays usable.
        *state.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token_hash);
        return Err(e);
    }
    Ok(())
}
