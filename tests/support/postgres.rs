//! PostgreSQL on loopback (`state.database`): a throwaway cluster in a
//! temporary directory (trust authentication, no fsync), stopped on drop.
//! The server refuses to run as root, so when the tests run as root it runs
//! as the `postgres` user the Debian package creates. It can be stopped
//! (an immediate shutdown, as a crash) and started again on the same data
//! to simulate an outage.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;
use tokio::net::TcpStream;

use super::net::{free_port, loopback};
use super::wait::{wait_for, WAIT};

/// The database the gateways use.
const DATABASE: &str = "keygate";

pub struct Postgres {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    user: Option<(u32, u32)>,
    /// Serving TLS with this certificate (`server.crt`/`server.key` in the directory).
    tls: bool,
}

impl Postgres {
    /// Creates a cluster, starts it on a free loopback port and creates the
    /// `keygate` database; returns once it accepts connections.
    pub async fn start() -> Postgres {
        Self::start_with(false).await
    }

    /// [`Postgres::start`] with TLS on, its self-signed certificate for
    /// 127.0.0.1 at [`Postgres::certificate`].
    pub async fn start_with_tls() -> Postgres {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Postgres {
        let dir = tempfile::Builder::new().prefix("keygate-pg").tempdir().unwrap();
        let user = postgres_user();
        if let Some((uid, gid)) = user {
            chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut pg = Postgres {
            port: free_port(),
            dir,
            child: None,
            user,
            tls,
        };
        let status = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb (apt-get install postgresql)");
        assert!(status.success(), "initdb failed");
        if tls {
            let (cert, key) = super::tls::self_signed_pem(&["127.0.0.1"]);
            super::tls::write_cert_pair(pg.dir.path(), "server", &cert, &key);
            let key_path = pg.dir.path().join("server.key");
            std::fs::set_permissions(&key_path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            if let Some((uid, gid)) = user {
                chown(&key_path, Some(uid), Some(gid)).unwrap();
            }
        }
        pg.launch().await;
        let (client, connection) = tokio_postgres::connect(&pg.url_of("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect to the new cluster");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .unwrap();
        pg
    }

    /// `postgres://` URL of the gateways' database.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's certificate (PEM), when it serves TLS.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// A connection to the gateways' database, for looking at what is stored.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Stops the server at once (no checkpoint, connections cut, as in a
    /// crash) and waits until its port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: PostgreSQL's immediate shutdown; the server takes its backends with it.
            let _ = Command::new("kill").args(["-QUIT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
        let addr = loopback(self.port);
        wait_for(format!("postgres on {addr} gone"), WAIT, || async move {
            TcpStream::connect(addr).await.is_err()
        })
        .await;
    }

    /// Starts the server again on the same data and port (after [`Postgres::stop`]).
    pub async fn restart(&mut self) {
        self.launch().await;
    }

    async fn launch(&mut self) {
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .args(if self.tls {
                let file = |name: &str| self.dir.path().join(name).display().to_string();
                vec![
                    "-c".to_string(),
                    "ssl=on".to_string(),
                    "-c".to_string(),
                    format!("ssl_cert_file={}", file("server.crt")),
                    "-c".to_string(),
                    format!("ssl_key_file={}", file("server.key")),
                ]
            } else {
                Vec::new()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let url = self.url_of("postgres");
        wait_for(format!("postgres on port {}", self.port), WAIT, || {
            let url = url.clone();
            async move { tokio_postgres::connect(&url, tokio_postgres::NoTls).await.is_ok() }
        })
        .await;
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `program` from the newest installed PostgreSQL, as the `postgres`
    /// user when we are root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(bin_dir().join(program));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command.env_remove("PGDATA").current_dir(self.dir.path());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-QUIT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

/// Debian installs the server under /usr/lib/postgresql/<major>/bin.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut majors: Vec<u32> = std::fs::read_dir(root)
        .expect("PostgreSQL installed under /usr/lib/postgresql (apt-get install postgresql)")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    majors.sort_unstable();
    let major = majors.last().expect("a PostgreSQL version under /usr/lib/postgresql");
    root.join(major.to_string()).join("bin")
}

/// The `postgres` user's uid and gid when we run as root (the server refuses root).
fn postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    Some((id("-u")?, id("-g")?))
}
