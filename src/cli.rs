//! The command line: `certhub serve | migrate | admin create-user | audit verify | queue probe |
//! ingest | certificates check-expiry`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::audit::{self, Actor};
use crate::domain::{Email, OrgId, Role};
use crate::settings::Settings;
use crate::startup::StartError;

#[derive(Debug, Parser)]
#[command(
    name = "certhub",
    version,
    about = "CertHub: the office's A1 certificate vault and approval portal"
)]
pub struct Cli {
    /// Configuration file (default: ./config.toml when present). CERTHUB_* variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: portal, APIs, folder watcher and job queue.
    Serve,
    /// Apply database migrations and exit (serve also does this at start-up).
    Migrate,
    /// Check this deployment (configuration, database, master key, folders, disk, clock,
    /// limits, TLS, public_url, agent) and print each problem with its fix; exit code 0 when
    /// all is well.
    Doctor,
    /// Administration tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The job queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// The certificate catalogue.
    #[command(subcommand)]
    Certificates(CertificatesCommand),
    /// Ingest the certificates folder (`certs_root`) now.
    Ingest {
        /// Report what would change, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Look at no more than N files (0: all, and mark files that left as unavailable).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user and print a one-time link with which they choose their password.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["ADMIN", "DEV", "VIEW"]), ignore_case = true)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every organisation's hash chain; exit code 3 at the first broken link.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Enqueue a probe job that a running server audits as started and finished.
    Probe {
        /// How long the job pauses between its two audit entries.
        #[arg(long, default_value_t = 1000)]
        millis: u64,
        /// How many probe jobs to enqueue.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertificatesCommand {
    /// Recompute every certificate's expiry bucket (30/15/7 days, expired) now, as the daily
    /// 06:00 job does; audits CERT_EXPIRING for certificates that moved closer to expiry.
    CheckExpiry,
}

/// Exit code of `audit verify` when the chain is broken.
pub const EXIT_AUDIT_BROKEN: u8 = 3;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) if matches!(cli.command, Command::Doctor) => {
            crate::doctor::print(&[crate::doctor::Finding::configuration(&e)]);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            crate::telemetry::init_fallback();
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    crate::telemetry::init(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, settings: Settings) -> Result<ExitCode, StartError> {
    match command {
        Command::Serve => crate::startup::serve(settings)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Doctor => {
            // Nothing is written: a SQLite file that is not there yet is reported, not made.
            let db = match &settings.database {
                crate::settings::DatabaseUrl::Sqlite { path } if !path.exists() => Err(format!(
                    "{} não existe (o primeiro `certhub serve` o cria)",
                    path.display()
                )),
                _ => crate::db::connect(&settings)
                    .await
                    .map_err(|e| e.to_string()),
            };
            let found = crate::doctor::examine(
                &settings,
                db.as_ref().map_err(Clone::clone),
                crate::doctor::Reach::Try,
            )
            .await;
            if let Some(fingerprint) = crate::doctor::served_fingerprint(&settings) {
                println!("Certificado TLS do servidor (SHA-256): {fingerprint}");
            }
            crate::doctor::print(&found);
            Ok(if found.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Migrate => {
            let db = crate::db::connect(&settings).await?;
            crate::db::migrate(&db, &settings).await?;
            println!("database {} is up to date", settings.database.redacted());
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::CreateUser { email, name, role }) => {
            let (email, role) = match (Email::parse(&email), role.parse::<Role>()) {
                (Ok(e), Ok(r)) => (e, r),
                (Err(why), _) | (_, Err(why)) => {
                    eprintln!("error: {why}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let state = crate::startup::prepare(settings).await?;
            let new = crate::accounts::NewUser {
                email,
                nome: name,
                role,
            };
            let created = async {
                let txn = crate::db::begin_write(&state.db).await?;
                let user = crate::accounts::user::create(
                    &txn,
                    OrgId(state.settings.org_id),
                    &new,
                    Actor::System,
                )
                .await?;
                let link = crate::accounts::password_set::issue(
                    &txn,
                    &state.settings.public_url,
                    state.settings.password_set_ttl_hours,
                    &user,
                    Actor::System,
                )
                .await?;
                txn.commit().await?;
                Ok::<_, crate::error::AppError>((user, link))
            }
            .await;
            match created {
                Ok((user, link)) => {
                    println!("created {} {} ({})", user.role_global, user.email, user.id);
                    println!(
                        "one-time link to choose the password (valid until {}):\n{}",
                        link.expires_at.format("%Y-%m-%d %H:%M UTC"),
                        link.url.expose()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Audit(AuditCommand::Verify) => {
            let db = crate::db::connect(&settings).await?;
            crate::db::migrate(&db, &settings).await?;
            let report = audit::verify(&db).await?;
            match report.first_break {
                None => {
                    println!(
                        "audit log OK: {} rows in {} organisation(s)",
                        report.rows, report.organizations
                    );
                    for (org, seq, head) in report.heads {
                        println!("  org {org}: head seq {seq} hash {head}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    // Kept until acknowledged: the Painel shows it from now on.
                    audit::breaks::keep(&db, &b, audit::breaks::FoundBy::Cli).await?;
                    println!(
                        "audit log BROKEN: organisation {} at seq {}{}: {}",
                        b.org_id,
                        b.seq,
                        b.row_id
                            .map(|id| format!(" (row id {id})"))
                            .unwrap_or_default(),
                        b.reason
                    );
                    Ok(ExitCode::from(EXIT_AUDIT_BROKEN))
                }
            }
        }
        Command::Ingest { dry_run, limit } => {
            let state = crate::startup::prepare(settings).await?;
            match crate::certificates::ingest::scan(&state, dry_run, limit).await {
                Ok(report) => {
                    for item in &report.items {
                        println!(
                            "{:<10} {}{}",
                            format!("{:?}", item.action).to_lowercase(),
                            item.file,
                            item.detail
                                .as_deref()
                                .map(|d| format!(" ({d})"))
                                .unwrap_or_default()
                        );
                    }
                    println!(
                        "{}ingested {}, updated {}, unchanged {}, failed {}, removed {}, skipped {}",
                        if dry_run { "dry run: " } else { "" },
                        report.ingested,
                        report.updated,
                        report.unchanged,
                        report.failed,
                        report.removed,
                        report.skipped
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Certificates(CertificatesCommand::CheckExpiry) => {
            let db = crate::db::connect(&settings).await?;
            crate::db::migrate(&db, &settings).await?;
            match crate::certificates::expiry::check_all(&db, chrono::Utc::now()).await {
                Ok(report) => {
                    println!("{report}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Queue(QueueCommand::Probe { millis, count }) => {
            let state = crate::startup::prepare(settings).await?;
            for _ in 0..count {
                state
                    .queue
                    .push(&crate::audit::probe::Probe {
                        org_id: state.settings.org_id,
                        millis,
                    })
                    .await?;
            }
            println!("{count} probe(s) enqueued ({millis} ms each)");
            Ok(ExitCode::SUCCESS)
        }
    }
}
