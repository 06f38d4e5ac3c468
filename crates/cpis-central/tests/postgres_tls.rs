//! The central's PostgreSQL connection over TLS, against a private PostgreSQL started for these
//! tests from the machine's PostgreSQL binaries: `ssl = on`, a certificate for `db.cpis.test`
//! signed by a CA made here with the `openssl` command, and every connection without TLS refused
//! by its `pg_hba.conf`. It listens on a free port of 127.0.0.1; `hostaddr=127.0.0.1` sends a
//! connection for `db.cpis.test` there, as an operator would for a name not in DNS.
//!
//! Without PostgreSQL's binaries (or `openssl`) the suite prints a loud SKIPPED line; with
//! CPIS_REQUIRE_POSTGRES=1 (CI) it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

use cpis_central::store::pg_tls::{DatabaseTarget, DatabaseTls, PgConnectError};
use cpis_central::store::WebhookChange;
use cpis_central::{Central, PostgresStore, Store, StoreError};
use cpis_core::{LocalAuthority, OdsCode, Region};

/// The name the server's certificate holds (and no other).
const CERT_NAME: &str = "db.cpis.test";

/// A PostgreSQL cluster in a temporary directory, stopped and removed on drop.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The OS user the server runs as when the tests run as root (initdb refuses root).
    run_as: Option<String>,
    port: u16,
    /// The CA that signed the server's certificate, and one that did not.
    ca: PathBuf,
    other_ca: PathBuf,
}

impl PrivatePostgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start() -> Result<Self, String> {
        let bin = postgres_bin()?;
        let run_as = if output("id", &["-u"])?.trim() == "0" {
            Some("postgres".to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("cpis-pg-tls")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        let owner = match &run_as {
            Some(user) => {
                let uid = output("id", &["-u", user])?.trim().parse::<u32>();
                let gid = output("id", &["-g", user])?.trim().parse::<u32>();
                match (uid, gid) {
                    (Ok(uid), Ok(gid)) => Some((uid, gid)),
                    _ => return Err(format!("no uid/gid for the OS user {user}")),
                }
            }
            None => None,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown of the temporary directory: {e}"))?;
        }
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).map_err(|e| e.to_string())?;
        make_certificates(&certs)?;

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let pg = Self {
            bin,
            run_as,
            port,
            ca: certs.join("ca.pem"),
            other_ca: certs.join("other-ca.pem"),
            dir,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
                "--no-locale".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        )?;
        for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
            let to = data.join(to);
            std::fs::copy(certs.join(from), &to).map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n",
            pg.dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        // TLS or nothing over TCP: a connection that gets in was encrypted.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n",
        )
        .map_err(|e| e.to_string())?;
        let log = pg.dir.path().join("postgres.log");
        let started = pg.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        if let Err(why) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{why}\n{log}"));
        }
        Ok(pg)
    }

    /// Runs one of PostgreSQL's programs, as the server's OS user when that is not us.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed: {}{}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A URL to the private server by `host`, with `params`.
    fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
    }

    /// By the certificate's name, sent to 127.0.0.1.
    fn url_by_name(&self, params: &str) -> String {
        self.url(CERT_NAME, &format!("hostaddr=127.0.0.1&{params}"))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }
}

/// One server for the tests of this file that run at once; the last one out stops it.
static SHARED: Mutex<Weak<PrivatePostgres>> = Mutex::new(Weak::new());

fn private_postgres() -> Option<Arc<PrivatePostgres>> {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pg) = shared.upgrade() {
        return Some(pg);
    }
    match PrivatePostgres::start() {
        Ok(pg) => {
            let pg = Arc::new(pg);
            *shared = Arc::downgrade(&pg);
            Some(pg)
        }
        Err(why) => {
            if std::env::var("CPIS_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("could not start a private PostgreSQL with TLS and CPIS_REQUIRE_POSTGRES=1: {why}");
            }
            eprintln!("SKIPPED: could not start a private PostgreSQL with TLS ({why})");
            None
        }
    }
}

fn postgres_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("CPIS_TEST_POSTGRES_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no PostgreSQL binaries under /usr/lib/postgresql: {e}"))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".into())
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A test CA, a server certificate for `CERT_NAME` only that it signs, and an unrelated CA.
fn make_certificates(dir: &Path) -> Result<(), String> {
    for (file, name) in [
        ("ca.cnf", "CP-IS test database CA"),
        ("other-ca.cnf", "Some other CA"),
    ] {
        let config = format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {name}\n\
             [ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
             subjectKeyIdentifier = hash\n"
        );
        std::fs::write(dir.join(file), config).map_err(|e| e.to_string())?;
    }
    let server = format!(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {CERT_NAME}\n\
         [server]\nsubjectAltName = DNS:{CERT_NAME}\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
    );
    std::fs::write(dir.join("server.cnf"), server).map_err(|e| e.to_string())?;
    let openssl = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (config, key, cert) in [
        ("ca.cnf", "ca.key", "ca.pem"),
        ("other-ca.cnf", "other-ca.key", "other-ca.pem"),
    ] {
        let mut args = vec!["req", "-x509", "-config", config, "-extensions", "ca"];
        args.extend(ec);
        args.extend(["-keyout", key, "-out", cert, "-days", "2"]);
        openssl(&args)?;
    }
    let mut args = vec!["req", "-new", "-config", "server.cnf"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&args)?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "server.cnf",
        "-extensions",
        "server",
        "-out",
        "server.pem",
    ])
}

/// Connects one client as the central would and asks the server whether it is encrypted.
async fn encrypted(url: &str, tls: &DatabaseTls) -> bool {
    let target = DatabaseTarget::parse(url, tls).unwrap();
    let (client, connection) = target
        .config()
        .connect(target.connector().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{}", target.explain(&e)));
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
}

fn connection_error(result: Result<PostgresStore, StoreError>) -> PgConnectError {
    match result {
        Err(StoreError::Connection(e)) => e,
        Err(other) => panic!("expected a connection error, got: {other}"),
        Ok(_) => panic!("expected the connection to be refused"),
    }
}

#[tokio::test]
async fn sslmode_require_encrypts_the_connection_without_checking_the_certificate() {
    let Some(pg) = private_postgres() else { return };
    // By address, with no CA: the certificate names neither, and require checks nothing.
    let url = pg.url("127.0.0.1", "sslmode=require");
    assert!(encrypted(&url, &DatabaseTls::default()).await);
    let store = PostgresStore::connect(&url, None).await;
    assert!(
        store.is_ok(),
        "the central's store opens over sslmode=require: {:?}",
        store.err()
    );

    // Whoever answers that there is no TLS (a stripping proxy, a server without ssl) is refused,
    // never used in the clear.
    let no_tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = no_tls.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = no_tls.accept().await {
            let mut ssl_request = [0u8; 8];
            if socket.read_exact(&mut ssl_request).await.is_ok() {
                let _ = socket.write_all(b"N").await;
            }
        }
    });
    let err = connection_error(
        PostgresStore::connect(
            &format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require"),
            None,
        )
        .await,
    );
    assert!(
        matches!(err, PgConnectError::ServerOffersNoTls { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("does not offer TLS"), "{err}");
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_and_the_store_works() {
    let Some(pg) = private_postgres() else { return };
    let url = pg.url_by_name(&format!(
        "sslmode=verify-full&sslrootcert={}",
        pg.ca.display()
    ));
    assert!(encrypted(&url, &DatabaseTls::default()).await);

    let store = PostgresStore::connect_with(&url, None, &DatabaseTls::default())
        .await
        .unwrap_or_else(|e| panic!("verify-full with the right CA connects: {e}"));
    let store: Arc<dyn Store> = Arc::new(store);
    assert!(
        store.missing_migrations().await.unwrap().is_empty(),
        "every migration is applied over TLS"
    );
    let central = Central::new(store.clone()).await.unwrap();
    let la = LocalAuthority {
        ods: OdsCode::parse("L901").unwrap(),
        name: "Tlsbury Borough Council".into(),
        emergency_phone: "0300 555 0901".into(),
        office_phone: None,
        region: Region::parse("north-west").unwrap(),
    };
    central.upsert_la(&la, WebhookChange::Keep).await.unwrap();
    let stored = store.local_authority(&la.ods).await.unwrap().unwrap();
    assert_eq!(stored.la.name, "Tlsbury Borough Council");

    // The CA given beside the URL (`--db-ca`) works the same.
    let by_option = DatabaseTls {
        ca_file: Some(pg.ca.clone()),
        allow_plain: false,
    };
    PostgresStore::connect_with(&pg.url_by_name("sslmode=verify-full"), None, &by_option)
        .await
        .unwrap_or_else(|e| panic!("the CA from --db-ca: {e}"));
}

#[tokio::test]
async fn verify_full_with_another_ca_is_refused_as_not_trusted() {
    let Some(pg) = private_postgres() else { return };
    let wrong_ca = DatabaseTls {
        ca_file: Some(pg.other_ca.clone()),
        allow_plain: false,
    };
    for mode in ["verify-full", "verify-ca"] {
        let err = connection_error(
            PostgresStore::connect_with(
                &pg.url_by_name(&format!("sslmode={mode}")),
                None,
                &wrong_ca,
            )
            .await,
        );
        assert!(
            matches!(err, PgConnectError::ServerNotTrusted { .. }),
            "{mode}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains("not trusted"), "{text}");
        assert!(text.contains("signed by a CA not in the file"), "{text}");
        assert!(text.contains("other-ca.pem"), "names the CA file: {text}");
        assert!(text.contains(CERT_NAME), "names the server: {text}");
    }
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_hold() {
    let Some(pg) = private_postgres() else { return };
    let with_ca = format!("sslrootcert={}", pg.ca.display());
    let err = connection_error(
        PostgresStore::connect(
            &pg.url("127.0.0.1", &format!("sslmode=verify-full&{with_ca}")),
            None,
        )
        .await,
    );
    assert!(
        matches!(err, PgConnectError::ServerNameMismatch { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(
        text.contains(CERT_NAME),
        "says which name the certificate holds: {text}"
    );
    assert!(
        text.contains("verify-ca"),
        "says what else can be done: {text}"
    );

    // verify-ca checks the chain only, so the same address is accepted.
    let url = pg.url("127.0.0.1", &format!("sslmode=verify-ca&{with_ca}"));
    assert!(encrypted(&url, &DatabaseTls::default()).await);
}

#[tokio::test]
async fn plain_to_a_database_off_this_machine_is_refused_before_any_connection_unless_allowed() {
    // 192.0.2.10 is a documentation address: the refusal comes before anything is sent to it.
    for url in [
        "postgres://cpis:hunter2secret@192.0.2.10:5432/cpis",
        "postgres://cpis:hunter2secret@192.0.2.10:5432/cpis?sslmode=disable",
        "postgres://cpis:hunter2secret@192.0.2.10:5432/cpis?sslmode=prefer",
    ] {
        let err = connection_error(PostgresStore::connect(url, None).await);
        assert!(matches!(err, PgConnectError::PlainRefused { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("192.0.2.10"), "names the host: {text}");
        assert!(text.contains("sslmode=verify-full"), "{text}");
        assert!(text.contains("--db-allow-plain"), "{text}");
        assert!(!text.contains("hunter2secret"), "{text}");

        let allowed = DatabaseTls {
            ca_file: None,
            allow_plain: true,
        };
        assert!(
            DatabaseTarget::parse(url, &allowed).is_ok(),
            "allowed explicitly: {url}"
        );
    }
    // The same in the central's own start-up path.
    let err = cpis_central::open_store("postgres://cpis:hunter2secret@192.0.2.10/cpis")
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--db-allow-plain"), "{err}");
}
