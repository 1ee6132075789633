//! The audit area's periodic job: every office's chain walked in full once an hour, so a row
//! altered behind the server's back shows on the Painel without anyone asking for a check.

use apalis::prelude::BoxDynError;
use futures_util::FutureExt;

use super::breaks::FoundBy;
use crate::queue::{Periodic, Registry};
use crate::state::AppState;

pub fn register(registry: &mut Registry<AppState>) {
    registry.periodic(Periodic {
        name: "audit-walk",
        schedule: "0 37 * * * *",
        run: |state| walk(state).boxed(),
    });
}

async fn walk(state: AppState) -> Result<(), BoxDynError> {
    let broken = super::verification::walk_all(&state.db, FoundBy::Scheduled).await?;
    tracing::info!(
        broken = broken.len(),
        "audit walk: every office's chain checked"
    );
    Ok(())
}
