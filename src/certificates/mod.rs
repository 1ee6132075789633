//! Certificates: the vault and its catalogue. The office's folder is ingested (scan, read,
//! parse, store sealed, supersede, notice files that left) and watched; every role searches
//! the catalogue; ADMIN/DEV type passwords, reveal paths and upload files; expiries are
//! tracked. HTTP handlers are in `routes`.

// The parsers (feature `parsers`, which the fuzz targets build alone): PKCS#12 + X.509 +
// ICP-Brasil, CNPJ/CPF, the password in a file name.
pub mod document;
pub mod file_name;
pub mod pkcs12;

#[cfg(feature = "server")]
pub mod catalogue;
#[cfg(feature = "server")]
pub mod entity;
#[cfg(feature = "server")]
pub mod expiry;
#[cfg(feature = "server")]
pub mod ingest;
#[cfg(feature = "server")]
pub mod routes;
#[cfg(feature = "server")]
pub mod tasks;
#[cfg(feature = "server")]
pub mod upload;
#[cfg(feature = "server")]
pub mod upload_form;
#[cfg(feature = "server")]
pub mod vault;
#[cfg(feature = "server")]
pub mod watcher;
