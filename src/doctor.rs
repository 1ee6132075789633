//! `certhub doctor`: looks at a deployment the way its first week would, and names each
//! problem with its fix. The same findings are on the ADMIN/DEV Painel. Nothing here writes:
//! no migration is applied, no key is made, no file is changed.

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::settings::{Settings, TlsSettings};

/// A problem and what fixes it (pt-BR: the office reads them, in the console and the Painel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was looked at, in a word or two (`banco de dados`, `chave mestra`).
    pub check: &'static str,
    pub problem: String,
    pub fix: String,
}

impl Finding {
    /// The configuration does not load: nothing else can be looked at.
    pub fn configuration(e: &dyn std::fmt::Display) -> Self {
        Self::new(
            "configuração",
            e.to_string(),
            "corrija o config.toml (ou a variável CERTHUB_* citada) e rode `certhub doctor` de novo",
        )
    }

    fn new(check: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            check,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Free space below which the data folder's disk is a problem.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024 * 1024;
/// Open-files limit below which a busy office runs out (long polls, SQLite, the watcher).
pub const MIN_OPEN_FILES: u64 = 4096;
/// A TLS certificate that ends sooner than this is a problem.
pub const TLS_WARN_DAYS: i64 = 30;
/// The database's clock and this machine's may differ by this much.
pub const MAX_CLOCK_SKEW_SECS: i64 = 120;

/// Whether `public_url` is tried over the network (the console does; the Painel, served by
/// that very address, does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Try,
    Skip,
}

/// Everything found wrong with the deployment `settings` describes, `db` its database (or why
/// it could not be opened). Empty: all is well.
pub async fn examine(
    settings: &Settings,
    db: Result<&DatabaseConnection, String>,
    reach: Reach,
) -> Vec<Finding> {
    let mut found = Vec::new();
    match db {
        Ok(db) => found.extend(database(settings, db).await),
        Err(why) => found.push(Finding::new(
            "banco de dados",
            format!("o banco {} não responde: {why}", settings.database.redacted()),
            "confira database_url e se o PostgreSQL está no ar (ou a pasta do SQLite tem permissão de escrita)",
        )),
    }
    found.extend(certs_root(settings));
    found.extend(disk(&settings.data_dir));
    found.extend(open_files());
    found.extend(tls(settings));
    found.extend(public_url(settings, reach).await);
    if let Some(why) = crate::devices::distribution::agent_missing(settings) {
        found.push(Finding::new(
            "agente",
            format!("a instalação por uma linha não funciona: {why}"),
            "compile o certhub-agent.exe (README) e aponte agent_exe_file para ele",
        ));
    }
    found
}

async fn database(settings: &Settings, db: &DatabaseConnection) -> Vec<Finding> {
    use certhub_migrations::{Migrator, MigratorTrait};
    let mut found = Vec::new();
    match Migrator::get_pending_migrations(db).await {
        Ok(pending) if pending.is_empty() => {}
        Ok(pending) => found.push(Finding::new(
            "banco de dados",
            format!(
                "o esquema está desatualizado: {} migração(ões) pendente(s)",
                pending.len()
            ),
            "rode `certhub migrate` (o `certhub serve` também aplica ao iniciar)",
        )),
        Err(e) => found.push(Finding::new(
            "banco de dados",
            format!("não foi possível ler as migrações: {e}"),
            "confira database_url e as permissões do usuário do banco",
        )),
    }
    if let Err(e) = crate::crypto::keystore::check(settings, db).await {
        found.push(Finding::new(
            "chave mestra",
            e.to_string(),
            format!(
                "faça o que a mensagem indica; se a chave se perdeu, restaure {} do backup (modo 600) ou defina CERTHUB_MASTER_KEY",
                settings.master_key_file.display()
            ),
        ));
    }
    match database_clock(settings, db).await {
        Ok(skew) if skew.abs() > MAX_CLOCK_SKEW_SECS => found.push(Finding::new(
            "relógio",
            format!("o relógio desta máquina difere {skew} s do relógio do banco"),
            "ative a sincronização de horário (NTP) nas duas máquinas: a limpeza das 18:00 e os prazos dependem dela",
        )),
        Ok(_) => {}
        Err(e) => found.push(Finding::new(
            "relógio",
            format!("não foi possível ler o relógio do banco: {e}"),
            "confira o banco de dados",
        )),
    }
    found
}

/// This machine's clock minus the database's, in seconds.
async fn database_clock(settings: &Settings, db: &DatabaseConnection) -> Result<i64, String> {
    let sql = if settings.database.is_postgres() {
        "SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) AS t"
    } else {
        "SELECT CAST(strftime('%s','now') AS INTEGER) AS t"
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no row")?;
    let theirs: i64 = row.try_get("", "t").map_err(|e| e.to_string())?;
    Ok(chrono::Utc::now().timestamp() - theirs)
}

fn certs_root(settings: &Settings) -> Vec<Finding> {
    let Some(root) = &settings.certs_root else {
        return vec![Finding::new(
            "pasta dos certificados",
            "certs_root não está configurado: nenhum certificado é lido da pasta",
            "defina certs_root com a pasta compartilhada dos .pfx (ex.: C:\\certs ou /srv/certs)",
        )];
    };
    let shown = root.display();
    if let Err(e) = std::fs::read_dir(root) {
        return vec![Finding::new(
            "pasta dos certificados",
            format!("{shown} não pode ser lida: {e}"),
            "crie a pasta ou corrija certs_root, e dê leitura ao usuário do serviço",
        )];
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(root)
            && meta.permissions().mode() & 0o007 != 0
        {
            return vec![Finding::new(
                "pasta dos certificados",
                format!(
                    "{shown} pode ser lida por qualquer usuário da máquina (modo {:o}): os nomes dos arquivos trazem senhas",
                    meta.permissions().mode() & 0o777
                ),
                format!("rode `chmod o-rwx {shown}`"),
            )];
        }
    }
    Vec::new()
}

fn disk(data_dir: &Path) -> Vec<Finding> {
    match free_bytes(data_dir) {
        Some(free) if free < MIN_FREE_BYTES => vec![Finding::new(
            "disco",
            format!(
                "restam {} MB livres no disco de {}",
                free / (1024 * 1024),
                data_dir.display()
            ),
            "libere espaço (pelo menos 1 GB): sem espaço o banco e os backups param",
        )],
        _ => Vec::new(),
    }
}

#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    // The data dir may not exist yet (a fresh install): its nearest existing parent.
    let existing = dir.ancestors().find(|d| d.exists())?;
    let path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a struct to fill.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    // why: the field types differ between unixes (u32 on some), so the casts stay.
    #[allow(clippy::unnecessary_cast)]
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

fn open_files() -> Vec<Finding> {
    match open_files_limit() {
        Some(limit) if limit < MIN_OPEN_FILES => vec![Finding::new(
            "limite de arquivos abertos",
            format!("o processo pode abrir só {limit} arquivos (conexões dos agentes incluídas)"),
            format!(
                "aumente para pelo menos {MIN_OPEN_FILES}: LimitNOFILE=65536 no serviço systemd, ou `ulimit -n 65536`"
            ),
        )],
        _ => Vec::new(),
    }
}

#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a struct to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // why: rlim_t is not u64 on every unix.
    #[allow(clippy::unnecessary_cast)]
    Some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

fn tls(settings: &Settings) -> Vec<Finding> {
    use crate::http::tls;
    let Some(mode) = &settings.tls else {
        return Vec::new();
    };
    let files = tls::files_of(mode, &settings.data_dir);
    if *mode == TlsSettings::Auto && !files.cert_file.exists() {
        // Made at the first start.
        return Vec::new();
    }
    if let Err(e) = tls::ServedCertificate::load(files.clone(), None) {
        return vec![Finding::new(
            "certificado TLS",
            e.to_string(),
            "confira tls_cert_file e tls_key_file (PEM, o certificado e a sua chave)",
        )];
    }
    match tls::not_after(&files.cert_file) {
        Ok(end) => {
            let left = (end - chrono::Utc::now()).num_days();
            if left < TLS_WARN_DAYS {
                let when = end.format("%d/%m/%Y");
                let problem = if left < 0 {
                    format!("o certificado TLS venceu em {when}")
                } else {
                    format!("o certificado TLS vence em {left} dia(s), em {when}")
                };
                return vec![Finding::new(
                    "certificado TLS",
                    problem,
                    "renove-o; anuncie o novo aos agentes antes com tls_next_cert_file",
                )];
            }
            Vec::new()
        }
        Err(e) => vec![Finding::new(
            "certificado TLS",
            e.to_string(),
            "confira tls_cert_file",
        )],
    }
}

async fn public_url(settings: &Settings, reach: Reach) -> Vec<Finding> {
    let mut found = Vec::new();
    if settings.plain_http_beyond_localhost() {
        found.push(Finding::new(
            "public_url",
            format!(
                "{} é http:// sem criptografia: quem estiver na rede pode roubar sessões e trocar o agente baixado",
                settings.public_url
            ),
            "ative o HTTPS: tls = \"auto\" no config.toml (ou o certificado do escritório) e public_url com https://",
        ));
    }
    if reach == Reach::Try {
        let host = crate::settings::url_host(&settings.public_url).to_owned();
        let port = port_of(&settings.public_url);
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let connect = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(target.clone()),
        )
        .await;
        let why = match connect {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("sem resposta em 3 s".to_owned()),
        };
        if let Some(why) = why {
            found.push(Finding::new(
                "public_url",
                format!("{} não responde daqui ({target}: {why})", settings.public_url),
                "inicie o servidor (certhub serve) e confira public_url, o nome na rede e o firewall (porta liberada)",
            ));
        }
    }
    found
}

/// The port of `url` (its scheme's default when none is written).
fn port_of(url: &str) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let written = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once("]:").map(|(_, p)| p),
        None => authority.rsplit_once(':').map(|(_, p)| p),
    };
    let default = if url.starts_with("https://") { 443 } else { 80 };
    written.and_then(|p| p.parse().ok()).unwrap_or(default)
}

/// The fingerprint of the certificate the server serves (or will serve) HTTPS with, for the
/// console: what agents pin and the admin compares.
pub fn served_fingerprint(settings: &Settings) -> Option<crate::protocol::Fingerprint> {
    use crate::http::tls;
    let files = tls::files_of(settings.tls.as_ref()?, &settings.data_dir);
    tls::ServedCertificate::load(files, None)
        .ok()
        .map(|served| served.fingerprint())
}

/// `certhub doctor`: the findings, each with its fix; exit code 0 when there are none.
pub fn print(found: &[Finding]) {
    if found.is_empty() {
        println!("certhub doctor: tudo certo.");
        return;
    }
    println!("certhub doctor: {} problema(s)", found.len());
    for f in found {
        println!("\nPROBLEMA [{}]: {}", f.check, f.problem);
        println!("  Como corrigir: {}", f.fix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_url_or_its_scheme() {
        assert_eq!(port_of("http://certhub:8010"), 8010);
        assert_eq!(port_of("https://certhub.escritorio.local"), 443);
        assert_eq!(port_of("http://certhub/"), 80);
        assert_eq!(port_of("https://[fd00::5]:8443/x"), 8443);
        assert_eq!(port_of("https://[fd00::5]"), 443);
    }
}
