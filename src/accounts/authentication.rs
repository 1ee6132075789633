//! Whether a user's bearer token is good: a USER access token of an active user whose login
//! (session family) is still live. Loaded on every request, so deactivation, logout and role
//! changes apply at once.

use sea_orm::EntityTrait;

use super::access_token::Subject;
use super::user::Users;
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::state::AppState;

pub async fn user_for_token(
    state: &AppState,
    token: Option<String>,
    ip: Option<String>,
) -> Result<AuthUser, AppError> {
    let token = token.ok_or(AppError::Unauthorized)?;
    let claims = state.tokens.decode(&token)?;
    if claims.kind != Subject::User {
        return Err(AppError::Forbidden(
            "this endpoint is for users, not devices".into(),
        ));
    }
    let user = Users::find_by_id(claims.sub)
        .one(&state.db)
        .await?
        .filter(|u| u.is_active && u.org_id == claims.org)
        .ok_or(AppError::Unauthorized)?;
    // Logout, a password change or deactivation ends the login behind the token at once.
    let sid = claims.sid.ok_or(AppError::Unauthorized)?;
    if !super::session::family_is_live(&state.db, sid, user.id).await? {
        return Err(AppError::Unauthorized);
    }
    AuthUser::new(user, ip)
}
