//! The worker's function: frees the task's unique id, then runs it with the handler its
//! area registered.

use std::sync::Arc;

use apalis::prelude::{BoxDynError, Data, TaskId};

use super::registry::{Queued, Registry};
use super::storage::Queue;

pub(super) async fn run<Ctx: Clone + Send + Sync + 'static>(
    task: Queued,
    ctx: Data<Ctx>,
    registry: Data<Arc<Registry<Ctx>>>,
    queue: Data<Queue>,
    id: TaskId,
) -> Result<(), BoxDynError> {
    // From now on a new change to the same file queues a new job instead of coalescing here.
    if let Err(e) = queue.release_unique(&id).await {
        tracing::warn!(error = %e, "cannot release the job's unique id");
    }
    let kind = task.kind().to_owned();
    let result = registry.run(task, (*ctx).clone()).await;
    if let Err(e) = &result {
        tracing::error!(task = %kind, error = %e, "background task failed");
    }
    result
}
