//! The accounts area's periodic job: expired one-time tokens and old login attempts go.

use apalis::prelude::BoxDynError;
use futures_util::FutureExt;

use crate::queue::{Periodic, Registry};
use crate::state::AppState;

pub fn register(registry: &mut Registry<AppState>) {
    // Hourly: deletes expired one-time tokens and month-old login attempts.
    registry.periodic(Periodic {
        name: "maintenance",
        schedule: "0 7 * * * *",
        run: |state| maintenance(state).boxed(),
    });
}

async fn maintenance(state: AppState) -> Result<(), BoxDynError> {
    let tokens = super::password_set::purge_expired(&state.db).await?;
    let attempts = super::lockout::purge_old(&state.db).await?;
    tracing::info!(
        tokens,
        attempts,
        "maintenance: expired tokens and old login attempts removed"
    );
    Ok(())
}
