//! How the central reaches PostgreSQL. The URL's `sslmode` decides, as libpq's does:
//!
//! - `disable`: in the clear;
//! - `prefer` (also when no `sslmode` is given): TLS when the server offers it, else in the clear;
//! - `require`: TLS; the server's certificate is checked only when a CA is given;
//! - `verify-ca`: TLS, the certificate's chain checked against the CA;
//! - `verify-full`: TLS, the chain and the host name checked.
//!
//! The CA is a PEM file named by the URL's `sslrootcert=FILE` or by `--db-ca FILE`. tokio-postgres
//! does not understand `verify-ca`, `verify-full` or `sslrootcert`, so they are taken out of the URL
//! here and the rest is handed to it. A connection that may travel in the clear is refused for a
//! server off this machine unless the operator allows it ([`may_go_in_the_clear`]): the password
//! and the register would cross the network readable. Nothing here ever prints the password.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the operator says about the database connection beside its URL.
#[derive(Debug, Clone, Default)]
pub struct DatabaseTls {
    /// A PEM file of the CA that signed the database server's certificate (as `sslrootcert=FILE`).
    pub ca_file: Option<PathBuf>,
    /// Accept a connection that may travel in the clear to a server off this machine.
    pub allow_plain: bool,
}

/// The URL's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, PgConnectError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => return Err(PgConnectError::UnknownSslMode(other.to_string())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the connection can end up unencrypted: `prefer` falls back to the clear when the
    /// server (or whoever sits between) says it has no TLS.
    pub fn may_be_plain(self) -> bool {
        matches!(self, Self::Disable | Self::Prefer)
    }

    fn needs_ca(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// Why the central could not reach its PostgreSQL, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum PgConnectError {
    #[error("the PostgreSQL connection string does not parse: {0}")]
    BadUrl(String),
    #[error(
        "sslmode={0} is not understood: use disable, prefer, require, verify-ca or verify-full"
    )]
    UnknownSslMode(String),
    #[error("sslmode={mode} needs the CA that signed the database server's certificate: add sslrootcert=FILE to the URL or pass --db-ca FILE")]
    CaNeeded { mode: &'static str },
    #[error("the URL's sslrootcert ({in_url}) and --db-ca ({in_option}) name different files: give the CA once")]
    TwoCaFiles { in_url: PathBuf, in_option: PathBuf },
    // The reason is in the message, not a source, so a chained report says it once.
    #[error("cannot read the database CA file {path}: {reason}")]
    CaUnreadable {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("the database CA file {path} holds no PEM certificate (a block starting -----BEGIN CERTIFICATE-----)")]
    CaHasNoCertificate { path: PathBuf },
    #[error(
        "the database CA file {path} holds a certificate that cannot be used as a CA: {reason}"
    )]
    CaCertificateUnusable { path: PathBuf, reason: String },
    #[error("refusing to connect to the database at {server} with {mode}: it is not on this machine, and the connection, password included, could travel in the clear. Add sslmode=verify-full and sslrootcert=FILE (or --db-ca FILE) to the URL, or pass --db-allow-plain to accept a connection in the clear")]
    PlainRefused { server: String, mode: String },
    #[error("the database server at {server} is not trusted: its certificate is refused against the CA in {ca}: {reason}. Give the CA that signed the server's certificate, and check the certificate is in date")]
    ServerNotTrusted {
        server: String,
        ca: PathBuf,
        reason: String,
    },
    #[error("the database server at {server} presented a certificate for another name ({reason}): connect by a name the certificate holds (hostaddr=IP chooses the address), or use sslmode=verify-ca to check the CA only")]
    ServerNameMismatch { server: String, reason: String },
    #[error("the database server at {server} does not offer TLS, which sslmode={mode} requires: set ssl = on in its postgresql.conf")]
    ServerOffersNoTls { server: String, mode: &'static str },
    #[error("could not set up TLS for the database connection: {0}")]
    TlsSetup(String),
    #[error("could not connect to the database at {server}: {reason}")]
    Unreachable { server: String, reason: String },
}

/// Where a connection's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A host name or an IP address.
    Tcp(String),
    /// A Unix socket's directory: always this machine.
    Unix(PathBuf),
}

impl Destination {
    /// A Unix socket, `localhost`, 127.0.0.0/8 or ::1: nothing leaves the machine.
    pub fn is_this_machine(&self) -> bool {
        match self {
            Self::Unix(_) => true,
            Self::Tcp(host) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                match host.parse::<IpAddr>() {
                    Ok(IpAddr::V4(v4)) => v4.is_loopback(),
                    Ok(IpAddr::V6(v6)) => {
                        v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                    }
                    Err(_) => {
                        let name = host.strip_suffix('.').unwrap_or(host);
                        name.eq_ignore_ascii_case("localhost")
                    }
                }
            }
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(host) => f.write_str(host),
            Self::Unix(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Decides whether a connection may go in the clear: one that can (`disable`, `prefer`, or no
/// `sslmode`, which is `prefer`) to any destination off this machine is refused, unless the
/// operator allowed it. The refusal names the destination and what to do.
pub fn may_go_in_the_clear(
    sslmode: Option<SslMode>,
    destinations: &[Destination],
    allow_plain: bool,
) -> Result<(), PgConnectError> {
    if !sslmode.unwrap_or(SslMode::Prefer).may_be_plain() || allow_plain {
        return Ok(());
    }
    match destinations.iter().find(|d| !d.is_this_machine()) {
        Some(far) => Err(PgConnectError::PlainRefused {
            server: far.to_string(),
            mode: match sslmode {
                Some(mode) => format!("sslmode={}", mode.as_str()),
                None => "no sslmode (so prefer, which falls back to the clear)".into(),
            },
        }),
        None => Ok(()),
    }
}

/// A PostgreSQL connection string understood: tokio-postgres's config, the TLS mode and the CA,
/// with the clear-text rule already applied.
pub struct DatabaseTarget {
    config: tokio_postgres::Config,
    mode: SslMode,
    ca_file: Option<PathBuf>,
    server: String,
}

impl fmt::Debug for DatabaseTarget {
    // tokio-postgres's own Debug hides the password; this keeps to the parts worth showing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseTarget")
            .field("server", &self.server)
            .field("mode", &self.mode)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl DatabaseTarget {
    /// Parses `url` (`postgres://...` or libpq's `key=value` form, where only tokio-postgres's
    /// own parameters are understood) and refuses a connection that may travel in the clear to a
    /// server off this machine unless `tls.allow_plain`. Touches neither the network nor files.
    pub fn parse(url: &str, tls: &DatabaseTls) -> Result<Self, PgConnectError> {
        let (rest, mode, url_ca) = if is_url(url) {
            take_tls_params(url)?
        } else {
            (url.to_string(), None, None)
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| PgConnectError::BadUrl(with_causes(&e)))?;
        // In the key=value form tokio-postgres has read any sslmode (prefer is its default).
        let given = mode.or(match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => Some(SslMode::Disable),
            tokio_postgres::config::SslMode::Require => Some(SslMode::Require),
            _ => None,
        });
        let mode = given.unwrap_or(SslMode::Prefer);
        let ca_file = match (url_ca, tls.ca_file.clone()) {
            (Some(in_url), Some(in_option)) if in_url != in_option => {
                return Err(PgConnectError::TwoCaFiles { in_url, in_option })
            }
            (in_url, in_option) => in_url.or(in_option),
        };
        if mode.needs_ca() && ca_file.is_none() {
            return Err(PgConnectError::CaNeeded {
                mode: mode.as_str(),
            });
        }
        let destinations = destinations(&config);
        may_go_in_the_clear(given, &destinations, tls.allow_plain)?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(Self {
            server: describe_servers(&config),
            config,
            mode,
            ca_file,
        })
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// Host names, addresses and ports only: never the user or password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether this connection may travel in the clear to a server off this machine (allowed).
    pub fn plain_off_this_machine(&self) -> bool {
        self.mode.may_be_plain()
            && destinations(&self.config)
                .iter()
                .any(|d| !d.is_this_machine())
    }

    /// Reads the CA, when there is one, and builds the connector that checks what the mode asks.
    pub fn connector(&self) -> Result<MakeRustlsConnect, PgConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_file = self
            .ca_file
            .as_ref()
            .filter(|_| self.mode != SslMode::Disable);
        let verifier: Arc<dyn ServerCertVerifier> = match ca_file {
            // Also for disable, where the connector is never used, so its CA is not read.
            None => Arc::new(AnyServerCertificate {
                provider: provider.clone(),
            }),
            Some(path) => {
                let roots = Arc::new(read_ca(path)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| PgConnectError::TlsSetup(e.to_string()))?;
                if self.mode == SslMode::VerifyFull {
                    webpki
                } else {
                    // libpq checks the chain whenever it has a CA; only verify-full checks the name.
                    Arc::new(ChainOnly { webpki })
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgConnectError::TlsSetup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// Turns a failed connection into what the operator can act on.
    pub fn explain(&self, e: &tokio_postgres::Error) -> PgConnectError {
        if let Some(refused) = certificate_error(e) {
            return match refused {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    PgConnectError::ServerNameMismatch {
                        server: self.server.clone(),
                        reason: refused.to_string(),
                    }
                }
                other => PgConnectError::ServerNotTrusted {
                    server: self.server.clone(),
                    ca: self.ca_file.clone().unwrap_or_default(),
                    reason: why_not_trusted(&other),
                },
            };
        }
        let reason = with_causes(e);
        // tokio-postgres says so only in its message.
        if reason.contains("server does not support TLS") {
            return PgConnectError::ServerOffersNoTls {
                server: self.server.clone(),
                mode: self.mode.as_str(),
            };
        }
        PgConnectError::Unreachable {
            server: self.server.clone(),
            reason,
        }
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query; every other parameter stays as written.
fn take_tls_params(
    url: &str,
) -> Result<(String, Option<SslMode>, Option<PathBuf>), PgConnectError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let (mut mode, mut ca) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(SslMode::parse(&percent_decode(value)?)?),
            "sslrootcert" => ca = Some(PathBuf::from(percent_decode(value)?)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, ca))
}

fn percent_decode(value: &str) -> Result<String, PgConnectError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| PgConnectError::BadUrl("a bad %-escape in a parameter".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| PgConnectError::BadUrl("a parameter is not UTF-8 once unescaped".into()))
}

/// Where each of the config's hosts sends its bytes: `hostaddr` when given, else `host`.
pub fn destinations(config: &tokio_postgres::Config) -> Vec<Destination> {
    let (hosts, addrs) = (config.get_hosts(), config.get_hostaddrs());
    (0..hosts.len().max(addrs.len()))
        .filter_map(|i| match (addrs.get(i), hosts.get(i)) {
            (Some(addr), _) => Some(Destination::Tcp(addr.to_string())),
            (None, Some(Host::Tcp(host))) => Some(Destination::Tcp(host.clone())),
            #[cfg(unix)]
            (None, Some(Host::Unix(dir))) => Some(Destination::Unix(dir.clone())),
            (None, None) => None,
        })
        .collect()
}

fn describe_servers(config: &tokio_postgres::Config) -> String {
    let (hosts, addrs, ports) = (
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports(),
    );
    let described: Vec<String> = (0..hosts.len().max(addrs.len()))
        .map(|i| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let host = match hosts.get(i) {
                Some(Host::Tcp(host)) if host.contains(':') => format!("[{host}]"),
                Some(Host::Tcp(host)) => host.clone(),
                #[cfg(unix)]
                Some(Host::Unix(dir)) => return format!("the socket in {}", dir.display()),
                None => String::new(),
            };
            match addrs.get(i) {
                Some(addr) if host.is_empty() => match addr {
                    IpAddr::V6(v6) => format!("[{v6}]:{port}"),
                    IpAddr::V4(v4) => format!("{v4}:{port}"),
                },
                Some(addr) => format!("{host}:{port} (address {addr})"),
                None => format!("{host}:{port}"),
            }
        })
        .collect();
    described.join(", ")
}

/// A URL with any password replaced by `***`, for messages about a URL that did not parse.
pub fn without_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find(['/', '?']).unwrap_or(after.len());
    let authority = &after[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!(
                "{}{user}:***{}",
                &url[..scheme_end + 3],
                &url[scheme_end + 3 + at..]
            )
        }
        None => url.to_string(),
    }
}

fn read_ca(path: &Path) -> Result<RootCertStore, PgConnectError> {
    let pem = std::fs::read(path).map_err(|reason| PgConnectError::CaUnreadable {
        path: path.to_path_buf(),
        reason,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| PgConnectError::CaCertificateUnusable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        roots
            .add(cert)
            .map_err(|e| PgConnectError::CaCertificateUnusable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
    }
    if roots.is_empty() {
        return Err(PgConnectError::CaHasNoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// tokio-postgres's message names only the kind of failure; the reason is in its causes. None of
/// them carries the password (its parser names a bad parameter's key, never its value).
fn with_causes(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut next = StdError::source(e);
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

fn why_not_trusted(refused: &CertificateError) -> String {
    match refused {
        CertificateError::UnknownIssuer => "it was signed by a CA not in the file".into(),
        CertificateError::BadSignature => {
            "its signature does not match the CA in the file of the same name".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet".into()
        }
        other => other.to_string(),
    }
}

/// The rustls certificate refusal inside a tokio-postgres error, if that is why it failed.
fn certificate_error(e: &tokio_postgres::Error) -> Option<CertificateError> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(rustls::Error::InvalidCertificate(refused)) =
            err.downcast_ref::<rustls::Error>()
        {
            return Some(refused.clone());
        }
        // tokio-rustls wraps rustls's error in an io::Error, whose source() skips it.
        if let Some(rustls::Error::InvalidCertificate(refused)) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(refused.clone());
        }
        next = err.source();
    }
    None
}

/// `require`/`prefer` without a CA, as libpq: encrypted, but the certificate vouches for nothing.
/// The handshake's signatures are still checked, so the key's holder is the one talking.
#[derive(Debug)]
struct AnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca` (and `require`/`prefer` given a CA): the chain must lead to the CA; the name is
/// not checked. webpki checks the chain before the name, so a name refusal means the chain passed.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_options() -> DatabaseTls {
        DatabaseTls::default()
    }

    #[test]
    fn a_connection_off_this_machine_that_may_be_plain_is_refused_unless_allowed() {
        // (URL, allow_plain, refused: the server the refusal names)
        let table: &[(&str, bool, Option<&str>)] = &[
            // on this machine: loopback, localhost, a Unix socket
            ("postgres://postgres@127.0.0.1:5432/test", false, None),
            (
                "postgres://postgres@127.8.9.10/test?sslmode=disable",
                false,
                None,
            ),
            ("postgres://postgres@localhost/test", false, None),
            (
                "postgres://postgres@LOCALHOST/test?sslmode=prefer",
                false,
                None,
            ),
            ("postgres://postgres@[::1]:5432/test", false, None),
            ("postgres://postgres@%2Frun%2Fpostgresql/test", false, None),
            (
                "postgres://postgres@/test?host=/run/postgresql",
                false,
                None,
            ),
            // off this machine and possibly plain: refused
            (
                "postgres://cpis@db.internal/cpis",
                false,
                Some("db.internal"),
            ),
            (
                "postgres://cpis@db.internal/cpis?sslmode=disable",
                false,
                Some("db.internal"),
            ),
            (
                "postgres://cpis@db.internal/cpis?sslmode=prefer",
                false,
                Some("db.internal"),
            ),
            (
                "postgres://cpis@10.0.0.7:5433/cpis",
                false,
                Some("10.0.0.7"),
            ),
            (
                "postgres://cpis@[2001:db8::7]/cpis",
                false,
                Some("2001:db8::7"),
            ),
            (
                "postgres://cpis@localhost.example.org/cpis",
                false,
                Some("localhost.example.org"),
            ),
            // any far host among several is enough
            (
                "postgres://cpis@127.0.0.1,db.internal/cpis",
                false,
                Some("db.internal"),
            ),
            // hostaddr is where the bytes go, whatever the name
            (
                "postgres://cpis@localhost/cpis?hostaddr=10.0.0.7",
                false,
                Some("10.0.0.7"),
            ),
            (
                "postgres://cpis@db.internal/cpis?hostaddr=127.0.0.1",
                false,
                None,
            ),
            // encrypted: allowed anywhere
            (
                "postgres://cpis@db.internal/cpis?sslmode=require",
                false,
                None,
            ),
            // explicitly allowed
            ("postgres://cpis@db.internal/cpis", true, None),
            ("postgres://cpis@10.0.0.7/cpis?sslmode=disable", true, None),
        ];
        for (url, allow_plain, refused) in table {
            let tls = DatabaseTls {
                ca_file: None,
                allow_plain: *allow_plain,
            };
            match (DatabaseTarget::parse(url, &tls), refused) {
                (Ok(_), None) => {}
                (Err(PgConnectError::PlainRefused { server, .. }), Some(far)) => {
                    assert_eq!(server, *far, "{url}")
                }
                (other, _) => panic!("{url} (allow_plain {allow_plain}): {other:?}"),
            }
        }
    }

    #[test]
    fn the_refusal_says_what_to_do_and_never_shows_the_password() {
        let err = DatabaseTarget::parse(
            "postgres://cpis:hunter2secret@db.internal:5432/cpis?sslmode=disable",
            &no_options(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("db.internal"), "{text}");
        assert!(text.contains("sslmode=verify-full"), "{text}");
        assert!(text.contains("--db-allow-plain"), "{text}");
        assert!(!text.contains("hunter2secret"), "{text}");
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_from_the_url_and_the_rest_reaches_tokio_postgres() {
        let target = DatabaseTarget::parse(
            "postgres://cpis@db.internal:6432/cpis?application_name=central&sslmode=verify-full&sslrootcert=%2Fetc%2Fcpis%2Fdb-ca.pem&connect_timeout=3",
            &no_options(),
        )
        .unwrap();
        assert_eq!(target.mode(), SslMode::VerifyFull);
        assert_eq!(target.ca_file, Some(PathBuf::from("/etc/cpis/db-ca.pem")));
        assert_eq!(target.config().get_application_name(), Some("central"));
        assert_eq!(
            target.config().get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(target.server(), "db.internal:6432");
        assert_eq!(
            target.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn verifying_modes_need_a_ca_and_the_two_places_must_agree() {
        for mode in ["verify-ca", "verify-full"] {
            let err = DatabaseTarget::parse(
                &format!("postgres://cpis@db.internal/cpis?sslmode={mode}"),
                &no_options(),
            )
            .unwrap_err();
            assert!(matches!(err, PgConnectError::CaNeeded { .. }), "{err}");
            assert!(err.to_string().contains("--db-ca"), "{err}");
        }
        let from_option = DatabaseTls {
            ca_file: Some("/etc/cpis/db-ca.pem".into()),
            allow_plain: false,
        };
        let target = DatabaseTarget::parse(
            "postgres://cpis@db.internal/cpis?sslmode=verify-full",
            &from_option,
        )
        .unwrap();
        assert_eq!(target.ca_file, from_option.ca_file);
        let err = DatabaseTarget::parse(
            "postgres://cpis@db.internal/cpis?sslmode=verify-full&sslrootcert=/tmp/other.pem",
            &from_option,
        )
        .unwrap_err();
        assert!(matches!(err, PgConnectError::TwoCaFiles { .. }), "{err}");
    }

    #[test]
    fn an_unknown_sslmode_is_refused_naming_the_ones_understood() {
        let err = DatabaseTarget::parse(
            "postgres://cpis@127.0.0.1/cpis?sslmode=allow",
            &no_options(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn a_url_that_does_not_parse_is_described_without_the_password() {
        let err = DatabaseTarget::parse(
            "postgres://cpis:hunter2secret@127.0.0.1:notaport/cpis",
            &no_options(),
        )
        .unwrap_err();
        assert!(matches!(err, PgConnectError::BadUrl(_)), "{err}");
        assert!(!err.to_string().contains("hunter2secret"), "{err}");
        assert_eq!(
            without_password("postgress://cpis:hunter2secret@db.internal/cpis"),
            "postgress://cpis:***@db.internal/cpis"
        );
        assert_eq!(
            without_password("postgres://db.internal/cpis?user=a"),
            "postgres://db.internal/cpis?user=a"
        );
    }

    #[test]
    fn the_ca_file_must_be_readable_and_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let with = |path: &Path| {
            DatabaseTarget::parse(
                &format!(
                    "postgres://cpis@127.0.0.1/cpis?sslmode=verify-full&sslrootcert={}",
                    path.display()
                ),
                &no_options(),
            )
            .unwrap()
            .connector()
            .err()
        };
        let missing = dir.path().join("missing.pem");
        let err = with(&missing).expect("a missing file is refused");
        assert!(matches!(err, PgConnectError::CaUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = with(&empty).expect("a file without a certificate is refused");
        assert!(
            matches!(err, PgConnectError::CaHasNoCertificate { .. }),
            "{err}"
        );
    }
}
