//! The in-process worker and the periodic jobs, started by `serve` and stopped in order: a
//! push in this process wakes the worker at once, else it looks every [`POLL_INTERVAL`]; a
//! worker whose storage failed under it is started again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apalis::prelude::*;

use super::periodic;
use super::registry::Registry;
use super::storage::{Queue, Storage, WakeSignal};
use super::tasks;

/// When the worker looks for tasks: at once after a push in this process, else every
/// [`POLL_INTERVAL`] (tasks pushed by another process, retries).
struct Wakeups {
    signal: Arc<WakeSignal>,
    tick: tokio::time::Interval,
}

impl Wakeups {
    fn new(signal: Arc<WakeSignal>) -> Self {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { signal, tick }
    }
}

impl futures_util::Stream for Wakeups {
    type Item = ();

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<()>> {
        self.signal.waker.register(cx.waker());
        if self.signal.pending.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(Some(()));
        }
        self.tick.poll_tick(cx).map(|_| Some(()))
    }
}

/// How often the worker looks for new tasks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long a failed queue worker waits before it starts again.
const WORKER_RESTART_DELAY: Duration = Duration::from_secs(1);

/// The worker and the periodic jobs of `registry`, run with `ctx`, ready to run until shutdown.
pub fn monitor<Ctx: Clone + Send + Sync + 'static>(
    ctx: Ctx,
    queue: Queue,
    registry: Registry<Ctx>,
    tz: chrono_tz::Tz,
) -> Monitor {
    // A worker stops when its storage fails under it (a full disk, a database gone): without
    // a restart the queue would stay dead after the storage came back. It is started again a
    // second later, so that storage still failing costs one attempt a second, not a spin; the
    // wait moves this runtime thread's other tasks elsewhere (`block_in_place`).
    let monitor = Monitor::new().should_restart(|worker, error| {
        tracing::warn!(
            worker = worker.name(),
            restarts = worker.restarts(),
            %error,
            "queue worker stopped; starting it again in {} s",
            WORKER_RESTART_DELAY.as_secs()
        );
        tokio::task::block_in_place(|| std::thread::sleep(WORKER_RESTART_DELAY));
        true
    });
    // Unique per process: after a crash the dead worker's row stays "alive" until it misses
    // its heartbeats, and apalis refuses a second worker of the same name (the queue would
    // stay dead after a quick restart). Its tasks are re-enqueued once it is seen dead.
    let worker_name = format!("certhub-worker-{}", uuid::Uuid::new_v4().simple());
    let monitor = periodic::register(monitor, &registry, ctx.clone(), tz);
    let registry = Arc::new(registry);
    let wake = queue.wake.clone();
    let handle = queue.clone();
    match queue.storage {
        Storage::Sqlite(storage) => monitor.register(move |_| {
            WorkerBuilder::new(worker_name.clone())
                .backend(storage.clone().poll_with_stream(Wakeups::new(wake.clone())))
                .data(ctx.clone())
                .data(registry.clone())
                .data(handle.clone())
                .build(tasks::run::<Ctx>)
        }),
        Storage::Postgres(storage) => monitor.register(move |_| {
            WorkerBuilder::new(worker_name.clone())
                .backend(storage.clone().poll_with_stream(Wakeups::new(wake.clone())))
                .data(ctx.clone())
                .data(registry.clone())
                .data(handle.clone())
                .build(tasks::run::<Ctx>)
        }),
    }
}

/// Runs the monitor until `shutdown` resolves, then lets running jobs finish (up to
/// `grace`) before returning.
pub async fn run_until(
    monitor: Monitor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let result = monitor
        // Lazy: the grace period starts when shutdown does, not when the monitor starts.
        .with_terminator(async move { tokio::time::sleep(grace).await })
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "job queue stopped with an error");
    }
}
