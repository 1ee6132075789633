//! The folder's files: which names count, the path key rows are matched by, and reading a
//! file safely (no link, no pipe, bounded).

use std::path::{Path, PathBuf};

use sha1::Sha1;
use sha2::Digest;

use super::super::file_name::{self, FileName};
use super::report::{Action, Item, item};

/// The seed's matching key for a source path: SHA-1 (hex) of the path lower-cased with `\` as
/// `/`, so `G:\Certs\X.pfx` and `g:/certs/x.pfx` match. A UNC path and a drive letter for the
/// same share still differ; the file-stem fallback of [`remove_file`] covers that.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathKey(pub(super) String);

impl PathKey {
    pub fn of(path: &Path) -> Self {
        Self::of_str(&path.to_string_lossy())
    }

    pub fn of_str(path: &str) -> Self {
        let normalised = path.replace('\\', "/").to_lowercase();
        Self(hex::encode(Sha1::digest(normalised.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a file name is a certificate the folder may hold (`.pfx`/`.p12`, any case).
pub fn is_certificate_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    lower.ends_with(".pfx") || lower.ends_with(".p12")
}

/// A file of the folder with its name understood.
pub(super) struct SourceFile {
    pub(super) path: PathBuf,
    pub(super) name: FileName,
    pub(super) key: PathKey,
    /// A password an admin typed with the upload: tried first, and stored when it opens it.
    pub(super) typed_password: Option<crate::crypto::SecretString>,
}

impl SourceFile {
    /// `Err` (a skip) when the name is not UTF-8: it could not be shown or matched reliably.
    pub(super) fn new(path: PathBuf) -> Result<Self, Item> {
        let Some(raw) = path.file_name().and_then(|n| n.to_str()) else {
            tracing::warn!("certificates folder: skipping a file whose name is not valid UTF-8");
            return Err(item(
                "<invalid UTF-8 name>",
                Action::Skipped,
                Some("file name is not valid UTF-8".into()),
            ));
        };
        Ok(Self {
            name: file_name::parse(raw),
            key: PathKey::of(&path),
            path,
            typed_password: None,
        })
    }
}

/// Why a file in the folder was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadRefusal {
    #[error("symbolic link")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than max_pfx_bytes ({0} bytes)")]
    TooLarge(u64),
    #[error("cannot read: {0}")]
    Io(std::io::ErrorKind),
}

/// Reads a certificate file safely: the path is opened without following a symbolic link and
/// without blocking (a FIFO), the *opened* handle must be a regular file, and at most
/// `max + 1` bytes are read, so a file swapped after the folder scan (a link to `/dev/zero`,
/// a pipe, a file still growing) cannot make the worker read forever.
pub fn read_certificate_file(path: &Path, max: u64) -> Result<Vec<u8>, ReadRefusal> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadRefusal::Symlink),
        Err(e) => return Err(ReadRefusal::Io(e.kind())),
    };
    let meta = file.metadata().map_err(|e| ReadRefusal::Io(e.kind()))?;
    if !meta.is_file() {
        return Err(ReadRefusal::NotRegular);
    }
    if meta.len() > max {
        return Err(ReadRefusal::TooLarge(max));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadRefusal::Io(e.kind()))?;
    // It may have grown between the check and the read (a copy in progress).
    if bytes.len() as u64 > max {
        return Err(ReadRefusal::TooLarge(max));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_swapped_for_a_link_a_pipe_or_a_big_file_is_refused_without_reading_forever() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pfx");
        std::fs::write(&good, b"0123456789").unwrap();
        assert_eq!(read_certificate_file(&good, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_certificate_file(&good, 9),
            Err(ReadRefusal::TooLarge(9))
        ));

        let zero = dir.path().join("zero.pfx");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(
            read_certificate_file(&zero, 1_000_000),
            Err(ReadRefusal::Symlink)
        ));
        // The device itself, reached without a link: not a regular file, never read.
        assert!(matches!(
            read_certificate_file(Path::new("/dev/zero"), 1_000_000),
            Err(ReadRefusal::NotRegular)
        ));

        let fifo = dir.path().join("fifo.pfx");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would hang here forever.
        assert!(matches!(
            read_certificate_file(&fifo, 1_000_000),
            Err(ReadRefusal::NotRegular)
        ));
    }

    #[test]
    fn windows_paths_normalise_like_the_seed() {
        assert_eq!(
            PathKey::of_str(r"C:\Certs\EMPRESA X Senha 1.pfx"),
            PathKey::of_str("c:/certs/empresa x senha 1.PFX")
        );
        assert_eq!(
            PathKey::of_str(r"\\servidor\share\certs\a.pfx"),
            PathKey::of_str("//SERVIDOR/share/certs/A.pfx")
        );
        assert_ne!(
            PathKey::of_str(r"C:\certs\a.pfx"),
            PathKey::of_str(r"C:\certs\b.pfx")
        );
        // The seed's key: sha1 of the lower-cased path with forward slashes.
        assert_eq!(
            PathKey::of_str(r"C:\certs\teste.pfx").as_str(),
            hex::encode(Sha1::digest(b"c:/certs/teste.pfx"))
        );
    }

    #[test]
    fn certificate_names() {
        assert!(is_certificate_name("a.pfx"));
        assert!(is_certificate_name("A Senha 1.PFX"));
        assert!(is_certificate_name("b.P12"));
        assert!(!is_certificate_name("notas.txt"));
        assert!(!is_certificate_name("a.pfx.tmp"));
    }
}
