//! What the runtime's unit tests share: an agent on a temporary data directory with an
//! in-memory store and a fixed clock, talking to a mock server (`mockito`).

use std::sync::{Arc, Mutex};

use chrono::Utc;
use mockito::{Matcher, Mock, Request, ServerGuard};
use serde_json::{Value, json};

use super::config::{Config, DataDir, DeviceSecrets, FileSecrets, ServerUrl, save_identity};
use super::leases::{Clock, FixedClock, Ledger, LedgerEntry};
use super::runtime::Agent;
use super::store::{CertStore, MemoryStore};
use crate::crypto::{DeviceSecretKey, SecretString};
use crate::protocol::{AgentJob, AgentJobStatus, AgentJobType};

pub const AUTH: &str = "/api/v1/agent/auth";

/// The path of one step of a job: `/api/v1/agent/jobs/{id}/{step}`.
pub fn job_route(step: &str) -> Matcher {
    Matcher::Regex(format!("^/api/v1/agent/jobs/[^/]+/{step}"))
}

/// The job id in a job route's path.
pub fn job_id(request: &Request) -> String {
    request.path().split('/').nth(5).unwrap_or("").to_owned()
}

/// The request's JSON body (`null` when it has none).
pub fn body_of(request: &Request) -> Value {
    serde_json::from_str(&request.utf8_lossy_body().unwrap_or_default()).unwrap_or(Value::Null)
}

/// Answers `method path` with `status` and the JSON `answer` builds from the request.
pub fn respond(
    server: &mut ServerGuard,
    method: &str,
    path: impl Into<Matcher>,
    status: usize,
    answer: impl Fn(&Request) -> Value + Send + Sync + 'static,
) -> Mock {
    server
        .mock(method, path)
        .with_status(status)
        .with_header("content-type", "application/json")
        .with_body_from_request(move |r| answer(r).to_string().into_bytes())
        .create()
}

pub fn access_token() -> Value {
    json!({"access_token": "jwt", "token_type": "bearer", "expires_in": 900})
}

pub fn unauthorized() -> Value {
    json!({"error": "unauthorized", "message": "x"})
}

pub struct Rig {
    _home: tempfile::TempDir,
    _server: ServerGuard,
    pub agent: Agent,
    pub clock: Arc<FixedClock>,
    pub store: Arc<MemoryStore>,
    pub key: DeviceSecretKey,
    pub device: uuid::Uuid,
}

/// A paired agent talking to `server`.
pub fn rig(server: ServerGuard) -> Rig {
    let home = tempfile::tempdir().unwrap();
    let dir = DataDir::new(home.path());
    let key = DeviceSecretKey::generate();
    let device = uuid::Uuid::new_v4();
    let secrets = FileSecrets::new(&dir);
    let config = Config {
        server_url: ServerUrl::parse(&server.url()).unwrap(),
        device_id: device,
        portal_url: String::new(),
        paired_at: Utc::now(),
    };
    let identity = DeviceSecrets {
        device_token: SecretString::new("device-token".into()),
        key: key.clone(),
    };
    save_identity(&dir, &secrets, &config, &identity).unwrap();
    let store = Arc::new(MemoryStore::default());
    // 10:00 in São Paulo.
    let clock = Arc::new(FixedClock::at("2026-07-15T13:00:00Z".parse().unwrap()));
    let agent = Agent::open(
        dir,
        Box::new(secrets),
        Box::new(Arc::clone(&store)),
        Arc::clone(&clock) as Arc<dyn Clock>,
    )
    .unwrap();
    Rig {
        _home: home,
        _server: server,
        agent,
        clock,
        store,
        key,
        device,
    }
}

pub fn job(id: uuid::Uuid, thumbprint: &str) -> AgentJob {
    AgentJob {
        id,
        job_type: AgentJobType::Install,
        status: AgentJobStatus::Pending,
        cert_id: uuid::Uuid::new_v4(),
        cert_name: Some("EMPRESA X LTDA".into()),
        thumbprint: Some(thumbprint.into()),
        installation_id: None,
        duration_minutes: Some(30),
        created_at: Utc::now(),
        claimed_at: None,
    }
}

/// What the mock server saw.
#[derive(Default)]
pub struct Seen {
    pub results: Vec<Value>,
    pub claims: usize,
    pub auths: usize,
    /// The ledger held the thumbprint when the DONE arrived.
    pub ledger_first: Vec<bool>,
}

/// Every request a [`recording_server`] answered: method, path, JSON body.
pub type Requests = Arc<Mutex<Vec<(String, String, Value)>>>;

/// An answer that first records the request in `requests`; `answer` gets the job id.
fn recorded(
    requests: &Requests,
    answer: impl Fn(&str) -> Value + Send + Sync + 'static,
) -> impl Fn(&Request) -> Value + Send + Sync + 'static {
    let requests = Arc::clone(requests);
    move |r| {
        requests
            .lock()
            .unwrap()
            .push((r.method().to_owned(), r.path().to_owned(), body_of(r)));
        answer(&job_id(r))
    }
}

/// A server that records every request and answers what an agent expects.
pub fn recording_server(requests: Requests, claim_status: usize) -> ServerGuard {
    let mut server = mockito::Server::new();
    respond(
        &mut server,
        "POST",
        AUTH,
        200,
        recorded(&requests, |_| access_token()),
    );
    respond(
        &mut server,
        "GET",
        "/api/v1/agent/installations",
        200,
        recorded(&requests, |_| json!({"installations": []})),
    );
    respond(
        &mut server,
        "POST",
        "/api/v1/agent/cleanup",
        200,
        recorded(&requests, |_| json!({"closed": 1})),
    );
    respond(
        &mut server,
        "POST",
        job_route("claim"),
        claim_status,
        recorded(&requests, move |id| {
            if claim_status == 200 {
                json!({"job_id": id, "status": "IN_PROGRESS", "job_type": "REMOVE"})
            } else {
                json!({"error": "conflict", "message": "not claimable"})
            }
        }),
    );
    respond(
        &mut server,
        "POST",
        job_route("result"),
        200,
        recorded(
            &requests,
            |id| json!({"job_id": id, "status": "DONE", "error_code": null, "lease_expires_at": null}),
        ),
    );
    server
}

/// Puts `thumbprint` in the store and the ledger, as an install would, leased until `expires_at`.
pub fn installed(r: &Rig, thumbprint: &str, expires_at: &str) {
    let pw = SecretString::new("pw".into());
    let installed = r
        .store
        .install(&MemoryStore::pfx(thumbprint, "pw"), &pw, "x")
        .unwrap();
    let mut ledger = Ledger::load(&r.agent.dir.ledger()).unwrap();
    ledger.upsert(LedgerEntry {
        installed,
        job_id: None,
        installation_id: None,
        cert_name: None,
        installed_at: r.clock.now(),
        expires_at: Some(expires_at.parse().unwrap()),
        server_expires_at: None,
    });
    ledger.save(&r.agent.dir.ledger()).unwrap();
}
