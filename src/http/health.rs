use actix_web::{HttpResponse, web};

use crate::protocol::Health;
use crate::state::AppState;

/// `GET /health`: 200 `{"status":"ok"}`, or 503 with the reason when the database is unreachable.
pub async fn get(state: web::Data<AppState>) -> HttpResponse {
    match tokio::time::timeout(
        std::time::Duration::from_secs(3),
        crate::db::ping(&state.db),
    )
    .await
    {
        Ok(Ok(())) => HttpResponse::Ok().json(Health {
            status: "ok".into(),
            reason: None,
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            unavailable("database unreachable")
        }
        Err(_) => unavailable("database did not answer within 3 s"),
    }
}

fn unavailable(reason: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(Health {
        status: "unavailable".into(),
        reason: Some(reason.into()),
    })
}
