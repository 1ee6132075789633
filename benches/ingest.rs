//! Ingest figures for the release binary (issue 4): N generated A1 files, half legacy PKCS#12
//! (what `openssl pkcs12 -export -legacy` writes) and half OpenSSL 3 default (AES-256-CBC,
//! PBKDF2-SHA256), from a cold start of `certhub ingest` to all rows committed, on SQLite and
//! PostgreSQL, with the peak resident memory of that process; in the same run the seed's method
//! (one `openssl pkcs12` process per file) on the same corpus, and the in-process PKCS#12
//! decoding time that sets a lower bound on ingest.
//!
//! `cargo bench --bench ingest`; `CERTHUB_BENCH_INGEST_N` chooses the corpus sizes (comma list,
//! default `1000,10000`). PostgreSQL figures when `CERTHUB_TEST_POSTGRES_URL` or the local
//! default server is reachable. Needs the `openssl` 3 command line (corpus and seed method).
//! The corpus is cached in `target/tmp/bench-corpus` and reused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Datelike;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12ImportPolicy,
    PrivateKey, PrivateKeyChain,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256, SanType, SerialNumber,
};
use sea_orm::sqlx::{self, Connection, Executor};
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_certhub");
/// What OpenSSL writes by default (PKCS12_DEFAULT_ITER), for the key bag, the certificate bag
/// and the MAC alike.
const ITERATIONS: u32 = 2048;
/// How many files of the smallest corpus the seed's method and the in-process decoding are
/// timed on (alternating legacy and AES, so half of each).
const SAMPLE: usize = 1000;
/// Passes of the in-process decoding timing (the best one counts).
const PASSES: usize = 3;

struct CorpusFile {
    path: PathBuf,
    password: String,
    legacy: bool,
}

struct Corpus {
    dir: PathBuf,
    files: Vec<CorpusFile>,
}

impl Corpus {
    fn legacy(&self) -> usize {
        self.files.iter().filter(|f| f.legacy).count()
    }
}

/// Odd files are legacy, even files AES.
fn is_legacy(i: usize) -> bool {
    i % 2 == 1
}

fn password(i: usize) -> String {
    hex::encode(Sha256::digest(format!("certhub bench password {i}")))[..8].to_owned()
}

fn file_name(i: usize) -> String {
    format!("EMPRESA {i} LTDA Senha {}.pfx", password(i))
}

/// `base` followed by its two mod-11 check digits; `weights` run up to the last digit's.
fn with_check_digits(base: String, weights: &[u32]) -> String {
    let mut digits: Vec<u32> = base.bytes().map(|b| u32::from(b - b'0')).collect();
    for _ in 0..2 {
        let weights = &weights[weights.len() - digits.len()..];
        let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
        digits.push(if sum % 11 < 2 { 0 } else { 11 - sum % 11 });
    }
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect()
}

/// A valid CNPJ: an 8-digit root from `i`, branch 0001.
fn cnpj(i: usize) -> String {
    with_check_digits(
        format!("{:08}0001", 10_000_000 + i),
        &[6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2],
    )
}

/// A valid CPF for the company's responsible person.
fn cpf(i: usize) -> String {
    with_check_digits(
        format!("{:09}", 100_000_000 + i),
        &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2],
    )
}

fn openssl(args: &[&str]) -> Command {
    let mut c = Command::new("openssl");
    c.args(args);
    c
}

fn run_ok(mut c: Command, what: &str) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// The issuing CA and the one RSA 2048 key every certificate of the corpus shares (generating a
/// key per file would make a 10k corpus take many minutes and changes nothing for ingest).
struct Issuer {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    leaf_key: KeyPair,
    leaf_key_path: PathBuf,
}

impl Issuer {
    fn load_or_create(pool: &Path) -> Self {
        let key = |name: &str| {
            let path = pool.join(name);
            if !path.exists() {
                let tmp = pool.join(format!(".tmp-{name}"));
                let mut c = openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt"]);
                c.arg("rsa_keygen_bits:2048").arg("-out").arg(&tmp);
                run_ok(c, "openssl genpkey");
                std::fs::rename(&tmp, &path).unwrap();
            }
            let pem = std::fs::read_to_string(&path).unwrap();
            (
                KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256).unwrap(),
                path,
            )
        };
        let (ca_key, _) = key("ca.key");
        let (leaf_key, leaf_key_path) = key("leaf.key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "BR");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "ICP-Brasil");
        params
            .distinguished_name
            .push(DnType::CommonName, "AC CertHub Bench");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from_slice(&[1]));
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let ca = params.self_signed(&ca_key).unwrap();
        Self {
            ca,
            ca_key,
            leaf_key,
            leaf_key_path,
        }
    }

    /// An e-CNPJ A1 certificate as ICP-Brasil issues them: CN "NAME:CNPJ" and the otherNames
    /// for the responsible person's CPF, their name, the CNPJ and the INSS number.
    fn certificate(&self, i: usize) -> rcgen::Certificate {
        let cnpj = cnpj(i);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "BR");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "ICP-Brasil");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "Certificado PJ A1");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("EMPRESA {i} LTDA:{cnpj}"));
        let other = |oid: u64, value: String| {
            SanType::OtherName((vec![2, 16, 76, 1, 3, oid], value.into()))
        };
        params.subject_alt_names = vec![
            // Birth date, CPF, NIS, RG and its issuer.
            other(
                4,
                format!("01011980{}0000000000000000000000000SSPSP", cpf(i)),
            ),
            other(2, format!("RESPONSAVEL {i}")),
            other(3, cnpj),
            other(7, "000000000000".into()),
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::EmailProtection,
        ];
        let mut serial: Vec<u8> = Sha256::digest(format!("certhub bench serial {i}"))[..16].into();
        serial[0] = (serial[0] & 0x7f) | 0x10;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let year = chrono::Utc::now().year();
        params.not_before = rcgen::date_time_ymd(year, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 1, 1, 1);
        params.use_authority_key_identifier_extension = true;
        params
            .signed_by(&self.leaf_key, &self.ca, &self.ca_key)
            .unwrap()
    }

    /// Writes file `i` of the pool (through a temporary name, so a crash leaves no half file).
    fn write(&self, pool: &Path, i: usize) {
        let cert = self.certificate(i);
        let pw = password(i);
        let tmp = pool.join(format!(".tmp-{i}.pfx"));
        if is_legacy(i) {
            // p12-keystore writes one algorithm for both bags; OpenSSL's legacy layout mixes
            // RC2-40 (certificates) and 3DES (key), so let OpenSSL write it.
            let mut c = openssl(&["pkcs12", "-export", "-legacy", "-inkey"]);
            c.arg(&self.leaf_key_path)
                .arg("-passout")
                .arg(format!("pass:{pw}"))
                .arg("-out")
                .arg(&tmp)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = c.spawn().expect("openssl");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(cert.pem().as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "openssl pkcs12 -export: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            // Exactly OpenSSL 3's default: PBES2 (PBKDF2 hmacWithSHA256, AES-256-CBC) for both
            // bags and an HMAC-SHA256 MAC, 2048 iterations each.
            let chain = PrivateKeyChain::new(
                sha1::Sha1::digest(cert.der()).to_vec(),
                PrivateKey::from_der(&self.leaf_key.serialize_der()).unwrap(),
                [Certificate::from_der(cert.der()).unwrap()],
            );
            let mut store = KeyStore::new();
            store.add_entry("certhub-bench", KeyStoreEntry::PrivateKeyChain(chain));
            let der = store
                .writer(&pw)
                .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
                .encryption_iterations(ITERATIONS)
                .mac_algorithm(MacAlgorithm::HmacSha256)
                .mac_iterations(ITERATIONS)
                .write()
                .unwrap();
            std::fs::write(&tmp, der).unwrap();
        }
        std::fs::rename(&tmp, pool.join(file_name(i))).unwrap();
    }
}

/// Bump the version when what is written changes: cached files are found by name.
fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-corpus/v2")
}

/// The corpus of `n` files: hard links to the first `n` files of a shared pool (so the 1k corpus
/// is the first tenth of the 10k one), made once and reused while complete.
fn corpus(n: usize) -> Corpus {
    let root = corpus_root();
    let pool = root.join("pool");
    let dir = root.join(n.to_string());
    let marker = root.join(format!("{n}.complete"));
    if !marker.exists() {
        std::fs::create_dir_all(&pool).unwrap();
        let missing: Vec<usize> = (0..n)
            .filter(|i| !pool.join(file_name(*i)).exists())
            .collect();
        if !missing.is_empty() {
            let started = Instant::now();
            eprintln!(
                "corpus: writing {} files to {}",
                missing.len(),
                pool.display()
            );
            let issuer = Issuer::load_or_create(&pool);
            let workers = std::thread::available_parallelism().map_or(2, |p| p.get());
            std::thread::scope(|s| {
                for w in 0..workers {
                    let (issuer, pool, missing) = (&issuer, &pool, &missing);
                    s.spawn(move || {
                        for i in missing.iter().skip(w).step_by(workers) {
                            issuer.write(pool, *i);
                        }
                    });
                }
            });
            eprintln!(
                "corpus: {} files in {:.1} s ({workers} threads)",
                missing.len(),
                started.elapsed().as_secs_f64()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let name = file_name(i);
            std::fs::hard_link(pool.join(&name), dir.join(&name)).unwrap();
        }
        std::fs::write(&marker, "").unwrap();
    }
    let files = (0..n)
        .map(|i| CorpusFile {
            path: dir.join(file_name(i)),
            password: password(i),
            legacy: is_legacy(i),
        })
        .collect();
    Corpus { dir, files }
}

/// `openssl pkcs12 -info` on a sample: the encodings are what they claim to be.
fn verify(corpus: &Corpus) {
    let expect_legacy = [
        "MAC: sha1, Iteration 2048",
        "PKCS7 Encrypted data: pbeWithSHA1And40BitRC2-CBC, Iteration 2048",
        "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
    ];
    let expect_aes = [
        "MAC: sha256, Iteration 2048",
        "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256",
        "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256",
    ];
    let n = corpus.files.len();
    for f in [0, 1, n - 2, n - 1].map(|i| &corpus.files[i]) {
        let mut c = openssl(&["pkcs12", "-info", "-noout", "-in"]);
        c.arg(&f.path)
            .arg("-passin")
            .arg(format!("pass:{}", f.password));
        if f.legacy {
            c.arg("-legacy");
        }
        let info = run_ok(c, "openssl pkcs12 -info");
        let expected = if f.legacy { expect_legacy } else { expect_aes };
        for line in expected {
            assert!(
                info.contains(line),
                "{}: expected {line:?} in:\n{info}",
                f.path.display()
            );
        }
    }
    eprintln!(
        "corpus: sample checked with openssl pkcs12 -info: legacy = {}; AES = {}",
        expect_legacy.join(", "),
        expect_aes.join(", ")
    );
}

/// The seed's method: one `openssl pkcs12` process per file, serially. Files per second.
fn seed_method(files: &[CorpusFile]) -> f64 {
    let started = Instant::now();
    for f in files {
        let mut c = openssl(&["pkcs12", "-nokeys", "-clcerts", "-in"]);
        c.arg(&f.path)
            .arg("-passin")
            .arg(format!("pass:{}", f.password));
        if f.legacy {
            c.arg("-legacy");
        }
        let out = run_ok(c, "openssl pkcs12 -nokeys");
        assert!(out.contains("-----BEGIN CERTIFICATE-----"));
    }
    files.len() as f64 / started.elapsed().as_secs_f64()
}

/// Milliseconds per file, single thread, (legacy, AES), of `decode` over `files`.
fn time_per_file(files: &[(Vec<u8>, &CorpusFile)], decode: impl Fn(&[u8], &str)) -> (f64, f64) {
    // Best of several passes: other work on the machine only ever adds time.
    let mut best = [f64::MAX; 2];
    for _ in 0..PASSES {
        let mut total = [Duration::ZERO; 2];
        let mut count = [0u32; 2];
        for (bytes, f) in files {
            let started = Instant::now();
            decode(bytes, &f.password);
            let k = usize::from(f.legacy);
            total[k] += started.elapsed();
            count[k] += 1;
        }
        for k in 0..2 {
            let ms = total[k].as_secs_f64() * 1e3 / f64::from(count[k].max(1));
            best[k] = best[k].min(ms);
        }
    }
    (best[1], best[0])
}

struct Decoding {
    /// `KeyStore::from_pkcs12` alone: MAC check and both bags' key derivation and decryption.
    keystore: (f64, f64),
    /// CertHub's `pkcs12::open`: the above plus the X.509 metadata.
    open: (f64, f64),
    files: usize,
}

fn decoding(files: &[CorpusFile]) -> Decoding {
    let loaded: Vec<_> = files
        .iter()
        .map(|f| (std::fs::read(&f.path).unwrap(), f))
        .collect();
    // One untimed pass warms the page cache and the CPU.
    for (bytes, f) in loaded.iter().take(20) {
        certhub::certificates::pkcs12::open(bytes, &f.password).unwrap();
    }
    let keystore = time_per_file(&loaded, |bytes, pw| {
        let store = KeyStore::from_pkcs12(bytes, pw, Pkcs12ImportPolicy::Strict).unwrap();
        assert!(store.private_key_chain().is_some());
    });
    let open = time_per_file(&loaded, |bytes, pw| {
        let info = certhub::certificates::pkcs12::open(bytes, pw).unwrap();
        assert!(info.cnpj.is_some_and(|c| c.is_valid()) && info.cpf.is_some());
    });
    Decoding {
        keystore,
        open,
        files: files.len(),
    }
}

struct Run {
    backend: &'static str,
    files: usize,
    wall: Duration,
    peak_rss_kib: i64,
    /// `--dry-run` on another fresh database: start-up, reading, decoding, lookups; no writes.
    dry_run_wall: Duration,
}

/// Waits for `pid` and returns its exit status and peak resident set (KiB), from `wait4`.
fn wait_with_peak_rss(pid: u32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it and `status` for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(
        r,
        pid as libc::pid_t,
        "wait4: {}",
        std::io::Error::last_os_error()
    );
    (status, usage.ru_maxrss)
}

/// `certhub ingest [--dry-run]` from a fresh data directory: wall time from spawn to exit, peak
/// RSS and the summary line.
// The child is reaped by `wait4` (std's `wait` cannot report its peak RSS).
#[allow(clippy::zombie_processes)]
fn spawn_ingest(corpus: &Corpus, dir: &Path, url: &str, dry_run: bool) -> (Duration, i64, String) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("ingest")
        .args(dry_run.then_some("--dry-run"))
        .current_dir(dir)
        .env("CERTHUB_DATA_DIR", dir.join("data"))
        .env("CERTHUB_DATABASE_URL", url)
        .env("CERTHUB_CERTS_ROOT", &corpus.dir)
        .env("CERTHUB_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let (status, peak_rss_kib) = wait_with_peak_rss(child.id());
    let wall = started.elapsed();
    let stderr = stderr.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "certhub ingest failed ({status}):\n{stderr}"
    );
    let n = corpus.files.len();
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    let expected = format!("{}ingested {n}, ", if dry_run { "dry run: " } else { "" });
    assert!(
        summary.starts_with(&expected) && summary.contains("failed 0"),
        "{summary}"
    );
    (wall, peak_rss_kib, summary)
}

/// The measured run, then a check that every row is committed.
fn ingest(
    rt: &tokio::runtime::Runtime,
    backend: &'static str,
    corpus: &Corpus,
    dir: &Path,
    url: &str,
) -> Run {
    let (wall, peak_rss_kib, _) = spawn_ingest(corpus, dir, url, false);
    let n = corpus.files.len();
    let sql = "SELECT COUNT(*) FROM certificates WHERE parse_error IS NULL AND cnpj IS NOT NULL";
    let rows: i64 = rt.block_on(async {
        if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
    });
    assert_eq!(rows, n as i64, "rows committed without a parse error");
    Run {
        backend,
        files: n,
        wall,
        peak_rss_kib,
        dry_run_wall: Duration::ZERO,
    }
}

/// Calls `f(data dir, database URL)` on a fresh SQLite file or a throw-away PostgreSQL
/// database; `None` when PostgreSQL is wanted and unreachable.
fn on_fresh_db<T>(
    rt: &tokio::runtime::Runtime,
    postgres: bool,
    f: impl FnOnce(&Path, &str) -> T,
) -> Option<T> {
    let dir = tempfile::tempdir().unwrap();
    if !postgres {
        let url = format!("sqlite://{}", dir.path().join("data/certhub.db").display());
        return Some(f(dir.path(), &url));
    }
    let (admin, name, url) = rt.block_on(create_postgres_db())?;
    let out = f(dir.path(), &url);
    rt.block_on(drop_postgres_db(&admin, &name));
    Some(out)
}

fn postgres_admin_url() -> String {
    std::env::var("CERTHUB_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A throw-away PostgreSQL database: (admin URL, its name, its URL), or `None` with no server.
async fn create_postgres_db() -> Option<(String, String, String)> {
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
    let name = format!("certhub_bench_{}", uuid::Uuid::new_v4().simple());
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let base = admin.split('?').next().unwrap();
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    Some((admin, name, url))
}

async fn drop_postgres_db(admin: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut sizes: Vec<usize> = std::env::var("CERTHUB_BENCH_INGEST_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("CERTHUB_BENCH_INGEST_N: numbers"))
        .filter(|n| *n >= 4)
        .collect();
    sizes.sort();
    sizes.dedup();
    assert!(!sizes.is_empty(), "CERTHUB_BENCH_INGEST_N: no size >= 4");
    let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!("load average at start: {}", load_average());

    let corpora: Vec<Corpus> = sizes.iter().map(|n| corpus(*n)).collect();
    for c in &corpora {
        verify(c);
    }
    let smallest = &corpora[0].files;
    let sample = &smallest[..smallest.len().min(SAMPLE)];

    eprintln!(
        "in-process PKCS#12 decoding, single thread, {} files",
        sample.len()
    );
    let dec = decoding(sample);
    eprintln!(
        "seed method (one openssl process per file), {} files",
        sample.len()
    );
    let seed = seed_method(sample);

    let mut runs = Vec::new();
    for corpus in &corpora {
        let n = corpus.files.len();
        for (backend, postgres) in [("SQLite", false), ("PostgreSQL", true)] {
            eprintln!("certhub ingest, {n} files, {backend}");
            let Some(run) = on_fresh_db(&rt, postgres, |dir, url| {
                ingest(&rt, backend, corpus, dir, url)
            }) else {
                eprintln!("{backend} SKIPPED: no server at {}", postgres_admin_url());
                continue;
            };
            eprintln!("certhub ingest --dry-run, {n} files, {backend}");
            let dry_run_wall = on_fresh_db(&rt, postgres, |dir, url| {
                spawn_ingest(corpus, dir, url, true).0
            })
            .unwrap();
            runs.push(Run {
                dry_run_wall,
                ..run
            });
        }
    }

    // The floor ingest cannot beat: every file decoded once, spread over every core.
    let bound = |c: &Corpus| {
        let legacy = c.legacy() as f64;
        let aes = (c.files.len() - c.legacy()) as f64;
        (legacy * dec.keystore.0 + aes * dec.keystore.1) / 1e3 / cores as f64
    };
    println!();
    println!(
        "| backend | files | wall (s) | files/s | peak RSS (MiB) | vs seed method | PKCS#12 bound (s) | wall / bound | dry run (s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let corpus = corpora.iter().find(|c| c.files.len() == run.files).unwrap();
        let wall = run.wall.as_secs_f64();
        let rate = run.files as f64 / wall;
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.1} | {:.1}x | {:.2} | {:.1}x | {:.2} |",
            run.backend,
            run.files,
            wall,
            rate,
            run.peak_rss_kib as f64 / 1024.0,
            rate / seed,
            bound(corpus),
            wall / bound(corpus),
            run.dry_run_wall.as_secs_f64(),
        );
    }
    println!();
    println!(
        "- seed method (one `openssl pkcs12 -nokeys -clcerts` process per file, serial, {} files): {seed:.0} files/s",
        sample.len()
    );
    println!(
        "- `KeyStore::from_pkcs12` alone, single thread ({} files): legacy {:.2} ms, AES {:.2} ms per file; with CertHub's X.509 metadata (`pkcs12::open`): legacy {:.2} ms, AES {:.2} ms",
        dec.files, dec.keystore.0, dec.keystore.1, dec.open.0, dec.open.1
    );
    // Half legacy, half AES: the best rate decoding alone allows.
    let max_rate = 2.0 / (dec.keystore.0 + dec.keystore.1) * 1e3 * cores as f64;
    println!(
        "- PKCS#12 bound = sum of `from_pkcs12` times / {cores} cores: at most {max_rate:.0} files/s, {:.1}x the seed method (20x would be {:.0} files/s)",
        max_rate / seed,
        20.0 * seed
    );
    println!(
        "- dry run: `certhub ingest --dry-run` on another fresh database (start-up, reading, decoding and lookups; no writes)"
    );
    println!("- load average at the end: {}", load_average());
}
