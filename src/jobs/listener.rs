//! Wake-ups from other server processes sharing the PostgreSQL database: one dedicated
//! connection `LISTEN`s on the job channels (into the [`JobHub`]) and the device channel
//! (forgetting rows in the [`DeviceCache`]).

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::hub::{CHANGED_CHANNEL, CHANNEL, JobHub};
use crate::devices::cache::{CHANNEL as DEVICE_CHANNEL, DeviceCache};

/// Relays announced devices to `hub` until `stop` turns true, over a dedicated PostgreSQL
/// connection (not one of the pool's). When that connection drops, notifications sent
/// meanwhile are lost: once it is back, every local waiter is woken to look at the database.
pub async fn listen(
    url: String,
    hub: Arc<JobHub>,
    devices: Arc<DeviceCache>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut backoff = Duration::from_millis(500);
    loop {
        let connected = async {
            let mut listener = PgListener::connect(&url).await?;
            listener
                .listen_all([CHANNEL, CHANGED_CHANNEL, DEVICE_CHANNEL])
                .await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            r = connected => match r {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "job wake-up listener cannot connect to PostgreSQL");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    // Capped low: until the listener is back, approvals made through another
                    // process reach this one's agents only when their long-polls end.
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        backoff = Duration::from_millis(500);
        // Anything announced before LISTEN took effect is in the database: look again.
        hub.notify_all();
        hub.changed();
        devices.forget_all();
        tracing::debug!(channel = CHANNEL, "listening for job wake-ups");
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                _ = stop.changed() => return,
            };
            match next {
                Ok(Some(n)) if n.channel() == CHANGED_CHANNEL => hub.changed(),
                Ok(Some(n)) => match (n.channel(), n.payload().parse::<Uuid>()) {
                    (DEVICE_CHANNEL, Ok(device)) => devices.forget(device),
                    (_, Ok(device)) => hub.notify(device),
                    (channel, Err(_)) => {
                        tracing::warn!(
                            channel,
                            payload = n.payload(),
                            "ignored a malformed notification"
                        );
                        if channel == DEVICE_CHANNEL {
                            devices.forget_all();
                        }
                    }
                },
                // Reconnected (eagerly) after a lost connection.
                Ok(None) => {
                    tracing::warn!("job wake-up listener reconnected; waking every waiter");
                    hub.notify_all();
                    hub.changed();
                    devices.forget_all();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job wake-up listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}
