//! Building and running the server: database, master key, queue, HTTP, and the orderly
//! shutdown (stop taking requests, let running jobs finish, close the pool).

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::accounts::access_token::AccessTokens;
use crate::crypto::keystore::{self, KeySource};
use crate::domain::OrgId;
use crate::http::{bodies, middleware, routes};
use crate::queue::{self, Queue};
use crate::settings::Settings;
use crate::state::AppState;
use crate::throttle::Throttle;

/// Errors that stop the server from starting, each with a message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] crate::db::ConnectError),
    #[error(transparent)]
    Key(#[from] keystore::KeyError),
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects, migrates, makes sure the office exists, and checks the master key.
pub async fn prepare(settings: Settings) -> Result<AppState, StartError> {
    let db = crate::db::connect(&settings).await?;
    crate::db::migrate(&db, &settings).await?;
    let org = crate::organizations::ensure(&db, OrgId(settings.org_id), &settings.org_name).await?;
    let (master_key, source) = keystore::load_or_create(&settings, &db).await?;
    match source {
        KeySource::Generated => {
            tracing::warn!(
                key_id = %master_key.id(),
                path = %settings.master_key_file.display(),
                "generated a new master key: back this file up, without it the vault cannot be opened"
            );
            let txn = crate::db::begin_write(&db).await?;
            crate::audit::append(
                &txn,
                crate::audit::Entry::new(
                    OrgId(org.id),
                    crate::audit::AuditAction::MasterKeyCreated,
                    crate::audit::Actor::System,
                )
                .meta(serde_json::json!({"key_id": master_key.id().to_hex()})),
            )
            .await?;
            txn.commit().await?;
        }
        KeySource::File | KeySource::Environment => {
            tracing::info!(key_id = %master_key.id(), source = ?source, "master key loaded")
        }
    }
    let queue = Queue::setup(&db, &settings).await?;
    let per_minute = std::num::NonZeroU32::new(settings.login_per_ip_per_minute)
        .unwrap_or(std::num::NonZeroU32::MIN);
    Ok(AppState {
        db,
        org_name: org.name,
        tokens: Arc::new(AccessTokens::new(
            &master_key,
            settings.access_token_ttl_min,
            settings.agent.device_token_ttl_min,
        )),
        device_auth_limits: Arc::new(crate::devices::limits::AuthLimits::new(
            settings.agent.device_auth_per_minute,
        )),
        payload_limiter: Arc::new(crate::jobs::payload::payload_limiter()),
        login_limiter: Arc::new(Throttle::per_minute(per_minute.get())),
        download_limiter: Arc::new(Throttle::per_minute(
            crate::devices::distribution::DOWNLOADS_PER_MINUTE,
        )),
        setup_token: Arc::new(std::sync::Mutex::new(None)),
        job_hub: Arc::new(crate::jobs::hub::JobHub::new()),
        audit_checkpoints: Arc::default(),
        contacts: Arc::default(),
        device_cache: Arc::default(),
        settings: Arc::new(settings),
        master_key: Arc::new(master_key),
        queue,
        tls: None,
    })
}

/// Every area's background tasks and periodic jobs, for the queue's worker.
pub fn tasks() -> queue::Registry<AppState> {
    let mut registry = queue::Registry::default();
    crate::accounts::tasks::register(&mut registry);
    crate::audit::probe::register(&mut registry);
    crate::audit::tasks::register(&mut registry);
    crate::certificates::tasks::register(&mut registry);
    crate::jobs::tasks::register(&mut registry);
    registry
}

/// How often the keyed rate limiters forget idle keys.
const LIMITER_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Keeps the keyed rate limiters' memory bounded: keys are chosen by clients (IPs, device
/// ids), so idle ones are forgotten every minute.
async fn prune_limiters(state: AppState) {
    let mut every = tokio::time::interval(LIMITER_PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let unaudited = state.login_limiter.prune()
            + state.payload_limiter.prune()
            + state.download_limiter.prune()
            + state.device_auth_limits.prune();
        if unaudited > 0 {
            tracing::warn!(
                refused = unaudited,
                "rate-limited requests answered from memory since their run's audit row"
            );
        }
    }
}

/// The certificate `serve` answers HTTPS with, when it does: made on first start for
/// `tls = "auto"`, else the configured files.
fn served_certificate(
    settings: &Settings,
) -> Result<Option<Arc<crate::http::tls::ServedCertificate>>, StartError> {
    use crate::http::tls;
    let Some(mode) = &settings.tls else {
        return Ok(None);
    };
    let names = tls::names_for(&settings.public_url, &settings.tls_names);
    let (files, made) = tls::files_for(mode, &settings.data_dir, &names)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let served = tls::ServedCertificate::load(files, settings.tls_next_cert_file.clone())
        .map_err(|e| StartError::Tls(e.to_string()))?;
    if made {
        tracing::warn!(
            cert_file = %served.files().cert_file.display(),
            names = ?names,
            fingerprint = %served.fingerprint(),
            "made the server's own TLS certificate (tls = \"auto\"): agents pin this fingerprint"
        );
    }
    Ok(Some(served))
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Lifts the soft open-files limit to the hard one and returns it: every agent's long-poll
/// holds a socket, and a common default soft limit (1,024) stalls the server at about 1,000
/// agents ("Too many open files", `docs/benchmarks.md`).
#[cfg(unix)]
fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(unix))]
fn raise_open_files_limit() -> Option<u64> {
    None
}

/// Below this many open files, warn: each agent holds one, plus the database and the folder.
const FEW_OPEN_FILES: u64 = 4096;

/// `certhub serve`: runs until SIGTERM / Ctrl-C, then shuts down in order.
pub async fn serve(settings: Settings) -> Result<(), StartError> {
    match raise_open_files_limit() {
        Some(n) if n < FEW_OPEN_FILES => tracing::warn!(
            open_files = n,
            "the open-files limit caps the agents this server can hold (one socket each); raise it (LimitNOFILE=65536 under systemd)"
        ),
        Some(n) => tracing::debug!(open_files = n, "open-files limit"),
        None => {}
    }
    let mut state = prepare(settings).await?;
    let settings = state.settings.clone();
    state.tls = served_certificate(&settings)?;
    let tls = state
        .tls
        .as_ref()
        .map(|served| served.server_config())
        .transpose()
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let uses_tls = tls.is_some();

    let app_state = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::Data::new(middleware::Tls(uses_tls)))
            .app_data(bodies::json_config())
            .app_data(bodies::path_config())
            .app_data(bodies::query_config())
            .app_data(web::Data::new(middleware::ErrorPage(
                crate::portal::error::refusal_page,
            )))
            .wrap(from_fn(crate::portal::framing::framed))
            .wrap(from_fn(middleware::refuse_nul_text))
            .wrap(from_fn(middleware::request_context))
            .configure(routes::configure)
            .configure(crate::portal::configure)
            .default_service(web::to(bodies::not_found))
    })
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout_secs);
    let bind_err = |source| StartError::Bind {
        addr: settings.listen.to_string(),
        source,
    };
    let server = match tls {
        Some(cfg) => server
            .bind_rustls_0_23(settings.listen, cfg)
            .map_err(bind_err)?,
        None => server.bind(settings.listen).map_err(bind_err)?,
    };
    let scheme = if uses_tls { "https" } else { "http" };
    for addr in server.addrs() {
        // Tests read this line to find the port when listening on port 0.
        println!("CertHub listening on {scheme}://{addr}");
    }
    if let Some(served) = &state.tls {
        // The fingerprint an admin compares (and an agent pins) at pairing.
        println!(
            "Certificado TLS do servidor (SHA-256): {}",
            served.fingerprint()
        );
    }
    let tls_reload = state.tls.clone().map(|served| tokio::spawn(served.watch()));
    if crate::accounts::user::count_all(&state.db).await? == 0 {
        let token = crate::crypto::Token::generate();
        *state.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.hash());
        // stdout only, never the log: the link creates the first administrator.
        println!(
            "Nenhum usuário ainda. Crie o primeiro administrador neste link (vale uma vez):\n  {}/primeiro-acesso?token={}\n\
             ou pela linha de comando (mostra um link para escolher a senha):\n  \
             certhub admin create-user --email voce@seu-escritorio.com.br --name \"Seu Nome\" --role ADMIN",
            settings.public_url,
            token.expose()
        );
    }
    tracing::info!(
        database = %settings.database.redacted(),
        org_id = settings.org_id,
        public_url = %settings.public_url,
        "CertHub {} started",
        env!("CARGO_PKG_VERSION")
    );

    // Watch first, then reconcile: a change made during the rescan is not missed.
    let (stop_tasks, tasks_stop) = tokio::sync::watch::channel(false);
    let stop_contacts = tasks_stop.clone();
    let watcher = tokio::spawn(crate::certificates::watcher::run(
        state.clone(),
        tasks_stop.clone(),
    ));
    if settings.certs_root.is_some() {
        let org = OrgId(settings.org_id);
        state
            .queue
            .push_unique(
                &crate::certificates::tasks::RescanFolder,
                &crate::certificates::watcher::rescan_job_id(org),
            )
            .await?;
    }
    // Wake-ups from other server processes sharing the PostgreSQL database.
    let listener = match &settings.database {
        crate::settings::DatabaseUrl::Postgres { url } => {
            Some(tokio::spawn(crate::jobs::listener::listen(
                url.clone(),
                state.job_hub.clone(),
                state.device_cache.clone(),
                tasks_stop,
            )))
        }
        crate::settings::DatabaseUrl::Sqlite { .. } => None,
    };
    let limiter_pruning = tokio::spawn(prune_limiters(state.clone()));
    let contact_flush = tokio::spawn(crate::devices::contact::run(
        state.contacts.clone(),
        state.db.clone(),
        Duration::from_secs(settings.device_contact_flush_seconds),
        stop_contacts.clone(),
    ));
    let server = server.run();
    let http = server.handle();
    let server_task = tokio::spawn(server);

    let (stop_jobs, jobs_stopped) = tokio::sync::oneshot::channel::<()>();
    let grace = Duration::from_secs(settings.shutdown_timeout_secs);
    let monitor = queue::monitor(
        state.clone(),
        state.queue.clone(),
        tasks(),
        settings.timezone,
    );
    let jobs = tokio::spawn(queue::run_until(
        monitor,
        async move {
            let _ = jobs_stopped.await;
        },
        grace,
    ));

    shutdown_signal().await;
    tracing::info!("shutdown requested: no new requests; waiting for running requests and jobs");
    state.job_hub.close();
    http.stop(true).await;
    let _ = server_task.await;
    let _ = stop_tasks.send(true);
    limiter_pruning.abort();
    if let Some(reload) = tls_reload {
        reload.abort();
    }
    // After the last request: the contacts they recorded are written.
    let _ = contact_flush.await;
    let _ = watcher.await;
    if let Some(listener) = listener {
        let _ = listener.await;
    }
    let _ = stop_jobs.send(());
    let _ = jobs.await;
    state.queue.close().await;
    state.db.clone().close().await?;
    tracing::info!("shutdown complete");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    #[test]
    fn every_periodic_schedule_parses() {
        let registry = super::tasks();
        let names: Vec<_> = registry.periodic_jobs().iter().map(|j| j.name).collect();
        assert_eq!(
            names,
            ["maintenance", "audit-walk", "expiry-check", "job-sweep"]
        );
        for job in registry.periodic_jobs() {
            assert!(
                cron::Schedule::from_str(job.schedule).is_ok(),
                "{}",
                job.name
            );
        }
    }
}
