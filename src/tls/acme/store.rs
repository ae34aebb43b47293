//! What ACME keeps on disk, so a restart neither creates a new account nor
//! orders a certificate it already has:
//!
//! ```text
//! state.dir/acme/<directory>/account.json      account credentials (0600)
//! state.dir/acme/<directory>/certs/<host>.crt  issued chain (leaf first)
//! state.dir/acme/<directory>/certs/<host>.key  its private key (0600)
//! ```
//!
//! `<directory>` is the directory URL made file-safe
//! (`acme-v02.api.letsencrypt.org_directory`), so switching CAs (staging →
//! production) never reuses the other CA's account or certificates. Files
//! are written to a temporary name and renamed, so a crash leaves the old
//! file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;

use super::AcmeError;
use crate::state::StateSettings;
use crate::tls::pem::Certificate;

/// The ACME files of one directory URL.
#[derive(Debug, Clone)]
pub struct AcmeDisk {
    dir: PathBuf,
}

impl AcmeDisk {
    /// The files for `directory_url`, creating the folders (0700) if missing.
    pub fn open(state: &StateSettings, directory_url: &str) -> Result<Self, AcmeError> {
        let root = state
            .subdir("acme")
            .map_err(|e| disk_error(&state.dir.join("acme"), e))?;
        let dir = root.join(directory_id(directory_url));
        let certs = dir.join("certs");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&certs)
            .map_err(|e| disk_error(&certs, e))?;
        Ok(Self { dir })
    }

    pub fn load_account(&self) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.account_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AcmeError::Setup(format!("{} is not an ACME account file: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(disk_error(&path, e)),
        }
    }

    pub fn save_account(&self, credentials: &AccountCredentials) -> Result<(), AcmeError> {
        let json = serde_json::to_vec_pretty(credentials)
            .map_err(|e| AcmeError::Setup(format!("cannot serialise the ACME account: {e}")))?;
        write_atomically(&self.account_path(), &json, 0o600)
    }

    /// Removes the account file (the CA no longer knows the account).
    pub fn forget_account(&self) {
        let path = self.account_path();
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }

    /// The saved certificate of `host`, if there is one that still loads
    /// (key matches, not expired); a broken pair is reported and ignored.
    pub fn load_certificate(&self, host: &str) -> Option<Certificate> {
        let (crt, key) = self.cert_paths(host);
        let chain = std::fs::read(&crt).ok()?;
        let key_pem = match std::fs::read(&key) {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(
                    host,
                    "ACME certificate on disk without a usable key ({}): {e}",
                    key.display()
                );
                return None;
            }
        };
        match Certificate::from_pem(&chain, &key_pem) {
            Ok(cert) => Some(cert),
            Err(reason) => {
                tracing::warn!(host, "ACME certificate on disk not used ({}): {reason}", crt.display());
                None
            }
        }
    }

    /// Saves an issued chain and its key (the key first: a crash in between
    /// leaves a pair that fails the key check and is ordered again).
    pub fn save_certificate(&self, host: &str, chain_pem: &str, key_pem: &str) -> Result<(), AcmeError> {
        let (crt, key) = self.cert_paths(host);
        write_atomically(&key, key_pem.as_bytes(), 0o600)?;
        write_atomically(&crt, chain_pem.as_bytes(), 0o644)
    }

    fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    /// Hosts are validated hostnames (letters, digits, `-`, `_`, `.`), safe as file names.
    fn cert_paths(&self, host: &str) -> (PathBuf, PathBuf) {
        let certs = self.dir.join("certs");
        (certs.join(format!("{host}.crt")), certs.join(format!("{host}.key")))
    }
}

/// `https://ca.example:14000/dir` → `ca.example_14000_dir`.
pub fn directory_id(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let safe: String = rest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe.trim_matches('_').to_string()
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AcmeError> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| disk_error(path, e))
}

fn disk_error(path: &Path, error: std::io::Error) -> AcmeError {
    AcmeError::Disk {
        path: path.to_path_buf(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn directory_urls_become_folder_names() {
        assert_eq!(
            directory_id("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org_directory"
        );
        assert_eq!(directory_id("https://127.0.0.1:14000/dir"), "127.0.0.1_14000_dir");
    }

    #[test]
    fn keys_are_private_and_pairs_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateSettings::compile(&Default::default(), tmp.path());
        let disk = AcmeDisk::open(&state, "https://ca.test/dir").unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["a.example.com".to_string()]).unwrap();
        disk.save_certificate(
            "a.example.com",
            &generated.cert.pem(),
            &generated.key_pair.serialize_pem(),
        )
        .unwrap();
        let (crt, key) = disk.cert_paths("a.example.com");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(crt.starts_with(tmp.path().join("state/acme/ca.test_dir/certs")));
        let loaded = disk.load_certificate("a.example.com").unwrap();
        assert_eq!(loaded.hosts, vec!["a.example.com".to_string()]);
        assert!(disk.load_certificate("b.example.com").is_none());
        assert!(disk.load_account().unwrap().is_none());
    }
}
