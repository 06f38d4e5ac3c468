//! `cpis central ...`: serve and administer the central service (LAs, uploads, demo data, enrolment
//! codes, users, LA tokens, devices, notifications). Output is for a trust's IT team; `--json` where a
//! command prints. Upload reports never print NHS numbers or names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{Duration, Utc};
use clap::{Args, Subcommand};
use cpis_central::server::{CentralConfig, TlsFiles};
use cpis_central::store::{DeviceSummary, WebhookChange};
use cpis_central::Central;
use cpis_central::{backup, demo};
use cpis_core::{Activity, CareSetting, LocalAuthority, NhsNumber, OdsCode, Region};
use uuid::Uuid;

#[derive(Args)]
pub struct CentralArgs {
    /// The central's database: `sqlite:PATH` or `postgres://...` (on another machine with
    /// `?sslmode=verify-full&sslrootcert=FILE`). Default: a SQLite file in `$CPIS_CENTRAL_DIR`
    /// (or `./.data/central`).
    #[arg(long, global = true, env = "CPIS_CENTRAL_DB")]
    db: Option<String>,
    /// A PEM file of the CA that signed the PostgreSQL server's certificate (as the URL's
    /// `sslrootcert=FILE`); checked with `sslmode=verify-full` (name too) or `verify-ca`.
    #[arg(long, global = true, env = "CPIS_CENTRAL_DB_CA")]
    db_ca: Option<PathBuf>,
    /// Connect to a PostgreSQL on another machine even though the connection could travel in the
    /// clear (`sslmode=disable`, `prefer` or none). Refused without it.
    #[arg(long, global = true)]
    db_allow_plain: bool,
    #[command(subcommand)]
    command: CentralCommand,
}

#[derive(Subcommand)]
enum CentralCommand {
    /// Serve the HTTP API (plain HTTP only on a loopback address; TLS with --tls-cert/--tls-key).
    Serve {
        #[arg(long, default_value = cpis_central::DEFAULT_LISTEN)]
        listen: SocketAddr,
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve Prometheus metrics at `/metrics` on this address (plain HTTP, apart from the
        /// public port, which never serves them). Off when not given.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// How long this instance holds a webhook delivery it claimed before another instance
        /// on the same database may take it over (after a crash).
        #[arg(long, default_value_t = cpis_central::webhook::CLAIM_FOR.as_secs())]
        webhook_claim_seconds: u64,
        /// How long a shutdown (SIGTERM, Ctrl-C) waits for requests in flight.
        #[arg(long, default_value_t = 30)]
        shutdown_grace_seconds: u64,
    },
    /// Copy the SQLite database to FILE while the central serves it (a consistent snapshot).
    /// For PostgreSQL use pg_dump or pg_basebackup.
    Backup {
        #[arg(long)]
        to: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Replace the SQLite database with a backup. Refused while a central serves the database.
    /// The replaced database is kept beside it; access events, notifications and devices it holds
    /// that the backup does not are carried over, and devices re-read the restored feed.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Create or update a local authority (its region is created on first use).
    La {
        #[arg(long)]
        ods: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        emergency_phone: String,
        #[arg(long)]
        office_phone: Option<String>,
        #[arg(long)]
        region: String,
        /// Where to POST each notification (https URL). Empty string removes it.
        #[arg(long)]
        webhook: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Set a region's lease: how long its devices may work without contact.
    Region {
        #[arg(long)]
        name: String,
        #[arg(long)]
        lease_hours: u32,
    },
    /// Apply an LA upload file (CSV; the LA's full current list).
    Import {
        #[arg(long)]
        la: String,
        file: PathBuf,
        /// Accept a file that removes more than 10% of the LA's people.
        #[arg(long)]
        allow_large_removal: bool,
        #[arg(long)]
        json: bool,
    },
    /// Load a synthetic national register: 152 LAs in 11 regions and N flags (999-range NHS numbers).
    Demo {
        #[arg(long, default_value_t = demo::DEFAULT_FLAGS)]
        flags: u32,
        #[arg(long, default_value_t = demo::DEFAULT_SEED)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Create a one-time enrolment code (printed alone on the last line; single use, 24 hours).
    Enrol {
        #[arg(long)]
        region: String,
        /// The ODS code of the organisation the device belongs to.
        #[arg(long)]
        org: String,
        /// Care setting: ambulance, ooh-gp, emergency-department, walk-in, minor-injuries,
        /// paediatric-ward, maternity, nhs-111, gp, school-nursing, health-visiting.
        #[arg(long)]
        setting: String,
        #[arg(long)]
        org_name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create or update a user who signs in on devices of their organisation. PIN from CPIS_PIN.
    User {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        org: String,
        /// B0107 (view, notifies in unscheduled care) or B0170 (view silently).
        #[arg(long)]
        activity: String,
        #[arg(long, default_value = "Clinician")]
        role: String,
    },
    /// Create an API token for an LA (printed alone on the last line; shown once), or with
    /// --revoke end every token of that LA and every inbox session opened with one.
    LaToken {
        #[arg(long)]
        la: String,
        /// Days the new token lives.
        #[arg(long, default_value_t = cpis_central::la_access::LA_TOKEN_LIFETIME.num_days() as u32)]
        days: u32,
        #[arg(long)]
        revoke: bool,
    },
    /// The LA upload audit trail, newest first: which LA and token (by reference), when, how many
    /// rows, and the outcome (accepted, refused, failed, rate_limited).
    Uploads {
        #[arg(long)]
        la: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// What an LA has been notified of (this is the LA's own view: it shows names and NHS numbers).
    Notifications {
        #[arg(long)]
        la: String,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long)]
        json: bool,
    },
    /// Who asked the central about this person in a live check or a FHIR search (device or FHIR
    /// client, user, when, found or not), newest first: the information-governance officer's view. The NHS number is read from the
    /// argument and never printed.
    Lookups {
        #[arg(long)]
        nhs: String,
        #[arg(long, default_value_t = 200)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Searches by name and date of birth the central answered, newest first: who searched, when,
    /// what was entered, the tier and how many matched. People returned are in each one's `lookups`.
    Searches {
        #[arg(long, default_value_t = 200)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// List enrolled devices.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: refused from its next contact on.
    RevokeDevice {
        #[arg(long)]
        device: Uuid,
    },
    /// Client systems that may use the FHIR R4 facade (`/fhir/R4`): add (prints the token once),
    /// list, revoke.
    FhirClient {
        #[command(subcommand)]
        command: FhirClientCommand,
    },
    /// The SHA-256 digest of a region's live content (printed on the last line).
    RegionDigest {
        #[arg(long)]
        region: String,
        #[arg(long)]
        json: bool,
    },
    /// Synthetic NHS numbers to try on a demo register: a few flagged people of the region (one per
    /// plan kind where there is one) and a number that is never flagged.
    DemoExamples {
        #[arg(long)]
        region: String,
    },
    /// Remove records whose every plan is past its visibility window or delete date.
    Expire {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FhirClientCommand {
    /// Register a client system (e.g. a trust's electronic patient record). Its accesses are
    /// recorded under this organisation and care setting; the token is printed alone on the last
    /// line, once.
    Add {
        /// The ODS code of the organisation running the system.
        #[arg(long)]
        org: String,
        #[arg(long)]
        org_name: String,
        /// Care setting: ambulance, ooh-gp, emergency-department, walk-in, minor-injuries,
        /// paediatric-ward, maternity, nhs-111 (unscheduled: accesses notify), or gp,
        /// school-nursing, health-visiting (scheduled: reads are silent).
        #[arg(long)]
        setting: String,
        #[arg(long)]
        json: bool,
    },
    /// List registered client systems (never their tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client system: its token is refused from the next request on.
    Revoke {
        #[arg(long)]
        client: Uuid,
    },
}

fn default_db() -> String {
    let dir = std::env::var_os("CPIS_CENTRAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".data/central"));
    format!("sqlite:{}", dir.join("central.sqlite").display())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn run(args: CentralArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: CentralArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.unwrap_or_else(default_db);
    let db_tls = cpis_central::DatabaseTls {
        ca_file: args.db_ca,
        allow_plain: args.db_allow_plain,
    };
    if let CentralCommand::Serve {
        listen,
        tls_cert,
        tls_key,
        admin_listen,
        webhook_claim_seconds,
        shutdown_grace_seconds,
    } = &args.command
    {
        let mut config = CentralConfig::new(db.clone()).listen(*listen);
        config.db_tls = db_tls.clone();
        if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
            config.tls = Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        config.admin_listen = *admin_listen;
        config.webhook_claim = std::time::Duration::from_secs(*webhook_claim_seconds);
        config.shutdown_grace = std::time::Duration::from_secs(*shutdown_grace_seconds);
        let running = cpis_central::spawn(config).await?;
        println!("central serving at {}", running.url());
        if let Some(admin) = running.admin_addr {
            println!("metrics at http://{admin}/metrics");
        }
        return running
            .serve_until_signal()
            .await
            .map(|_| ExitCode::SUCCESS);
    }
    match &args.command {
        CentralCommand::Backup { to, json } => {
            let path = backup::sqlite_path(&db).ok_or(backup::BackupError::NotSqlite)?;
            let (path, to) = (path, to.clone());
            let summary = tokio::task::spawn_blocking(move || backup::backup(&path, &to)).await??;
            if *json {
                print_json(&summary)?;
            } else {
                println!(
                    "backup written to {} ({} bytes, {} access events, {} notifications)",
                    summary.file.display(),
                    summary.bytes,
                    summary.access_events,
                    summary.notifications
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        CentralCommand::Restore { from, json } => {
            let path = backup::sqlite_path(&db).ok_or(backup::BackupError::NotSqlite)?;
            let source = from.clone();
            let summary =
                tokio::task::spawn_blocking(move || backup::restore(&source, &path)).await??;
            if *json {
                print_json(&summary)?;
            } else {
                println!("restored {} from {}", db, from.display());
                if let Some(kept) = &summary.replaced_kept_at {
                    println!("the replaced database is kept at {}", kept.display());
                }
                println!(
                    "carried over from it: {} access events, {} notifications, {} devices; {} removals published to devices",
                    summary.events_carried_over,
                    summary.notifications_carried_over,
                    summary.devices_carried_over,
                    summary.removals_published
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let store = cpis_central::open_store_with(&db, &db_tls)
        .await
        .with_context(|| "could not open the central's database")?;
    let central = Central::new(store.clone()).await?;
    match args.command {
        CentralCommand::Serve { .. }
        | CentralCommand::Backup { .. }
        | CentralCommand::Restore { .. } => unreachable!("handled above"),
        CentralCommand::La {
            ods,
            name,
            emergency_phone,
            office_phone,
            region,
            webhook,
            json,
        } => {
            let la = LocalAuthority {
                ods: OdsCode::parse(&ods)?,
                name,
                emergency_phone,
                office_phone: office_phone.filter(|p| !p.trim().is_empty()),
                region: Region::parse(&region)?,
            };
            let webhook = match webhook {
                None => WebhookChange::Keep,
                Some(w) if w.trim().is_empty() => WebhookChange::Set(None),
                Some(w) => WebhookChange::Set(Some(w)),
            };
            central.upsert_la(&la, webhook).await?;
            if json {
                print_json(&la)?;
            } else {
                println!(
                    "local authority {} ({}) saved in region {}",
                    la.ods, la.name, la.region
                );
            }
        }
        CentralCommand::Region { name, lease_hours } => {
            if lease_hours == 0 || lease_hours > 24 * 90 {
                bail!("--lease-hours must be between 1 and 2160 (90 days)");
            }
            let region = Region::parse(&name)?;
            store
                .set_lease_hours(&region, lease_hours, Utc::now())
                .await?;
            println!("region {region}: lease {lease_hours} hours");
        }
        CentralCommand::Import {
            la,
            file,
            allow_large_removal,
            json,
        } => {
            let la = OdsCode::parse(&la)?;
            let bytes = std::fs::read(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let report = central
                .audited_import(
                    &la,
                    cpis_central::la_access::UploadSender::Operator,
                    &bytes,
                    allow_large_removal,
                )
                .await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{}: {} rows accepted, {} rejected; {} people stored, {} removed",
                    report.la,
                    report.accepted_rows,
                    report.rejected_rows,
                    report.people,
                    report.removed
                );
                for row in report.rows.iter().filter(|r| !r.accepted) {
                    println!(
                        "  line {}: {}",
                        row.line,
                        row.reason.as_deref().unwrap_or("rejected")
                    );
                }
            }
        }
        CentralCommand::Demo { flags, seed, json } => {
            if flags > demo::GUARANTEED_MISS_FROM {
                bail!("--flags can be at most {}", demo::GUARANTEED_MISS_FROM);
            }
            let started = Instant::now();
            let today = cpis_core::ukdate::uk_today(Utc::now());
            let data =
                tokio::task::spawn_blocking(move || demo::generate(flags, seed, today)).await?;
            let las = data.las.len();
            store.bulk_load(data.las, data.flags, Utc::now()).await?;
            let seconds = started.elapsed().as_secs_f64();
            if json {
                print_json(&serde_json::json!({
                    "local_authorities": las, "regions": demo::REGIONS.len(), "flags": flags, "seed": seed,
                    "seconds": seconds, "guaranteed_miss_from": demo::GUARANTEED_MISS_FROM,
                }))?;
            } else {
                println!(
                    "demo register: {flags} flags across {las} local authorities in {} regions (seed {seed}) in {seconds:.1} s",
                    demo::REGIONS.len()
                );
            }
        }
        CentralCommand::Enrol {
            region,
            org,
            setting,
            org_name,
            json,
        } => {
            let region = Region::parse(&region)?;
            let org = OdsCode::parse(&org)?;
            let setting: CareSetting = setting.parse()?;
            let org_name = org_name.unwrap_or_else(|| format!("Organisation {org}"));
            let code = central
                .create_enrolment(&region, &org, &org_name, setting, Duration::hours(24))
                .await?;
            if json {
                print_json(&serde_json::json!({
                    "code": code.code, "expires_at": code.expires_at, "region": region,
                    "org_ods": org, "org_name": org_name, "setting": setting,
                }))?;
            } else {
                println!(
                    "one-time enrolment code for a device of {org_name} ({org}), setting: {}, region {region}; single use, valid until {}:",
                    setting.in_words(),
                    code.expires_at.format("%Y-%m-%d %H:%M UTC")
                );
                println!("{}", code.code);
            }
        }
        CentralCommand::User {
            id,
            name,
            org,
            activity,
            role,
        } => {
            let pin = std::env::var("CPIS_PIN")
                .context("set the user's PIN in the CPIS_PIN environment variable")?;
            let activity: Activity = activity.parse()?;
            let org = OdsCode::parse(&org)?;
            central
                .add_user(&id, &name, &role, activity, &org, &pin)
                .await?;
            println!("user {id} saved ({role}, {activity}, {org})");
        }
        CentralCommand::LaToken { la, days, revoke } => {
            let la = OdsCode::parse(&la)?;
            if revoke {
                let n = central.revoke_la_tokens(&la).await?;
                println!(
                    "revoked {n} token(s) of local authority {la}; its inbox sessions are ended"
                );
            } else {
                let issued = central
                    .issue_la_token(&la, chrono::Duration::days(i64::from(days)))
                    .await?;
                println!(
                    "API token for local authority {la}, reference {}, valid until {} (shown once; keep it secret):",
                    issued.reference,
                    issued.expires_at.to_rfc3339()
                );
                println!("{}", issued.token);
            }
        }
        CentralCommand::Uploads { la, limit, json } => {
            let la = la.as_deref().map(OdsCode::parse).transpose()?;
            let uploads = central.la_uploads(la.as_ref(), limit).await?;
            if json {
                print_json(&uploads)?;
            } else if uploads.is_empty() {
                println!("no uploads recorded");
            } else {
                for u in uploads {
                    println!(
                        "{}  {}  token {}  {} rows  {}{}",
                        u.received_at.to_rfc3339(),
                        u.la,
                        u.token_ref,
                        u.rows.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                        u.outcome,
                        u.detail.map(|d| format!(" ({d})")).unwrap_or_default()
                    );
                }
            }
        }
        CentralCommand::Notifications { la, after, json } => {
            let la = OdsCode::parse(&la)?;
            let mut all = Vec::new();
            let mut cursor = after;
            loop {
                let page = central.notifications(&la, cursor, 1_000).await?;
                if page.notifications.is_empty() {
                    break;
                }
                cursor = page.next;
                all.extend(page.notifications);
            }
            if json {
                print_json(&serde_json::json!({ "la": la, "notifications": all, "next": cursor }))?;
            } else if all.is_empty() {
                println!("no notifications for {la}");
            } else {
                for n in &all {
                    println!(
                        "#{} {} {}, {} (NHS {}) seen {} by {} at {} ({}), {}; received {}",
                        n.seq,
                        n.family_name.to_uppercase(),
                        n.given_names,
                        n.date_of_birth,
                        n.nhs_number,
                        n.seen_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        n.role,
                        n.org_name,
                        n.org_ods,
                        n.setting.in_words(),
                        n.received_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    );
                }
            }
        }
        CentralCommand::Lookups { nhs, limit, json } => {
            let nhs = NhsNumber::parse(&nhs).context("--nhs")?;
            let lookups = store.lookups_of(&nhs, limit).await?;
            if json {
                print_json(&serde_json::json!({ "lookups": lookups }))?;
            } else if lookups.is_empty() {
                println!("no live checks of this person at the central");
            } else {
                // FHIR searches are kept under the client system's id where a device's would be.
                let clients: std::collections::HashSet<Uuid> = central
                    .fhir_clients()
                    .await?
                    .iter()
                    .map(|c| c.client_id)
                    .collect();
                for l in &lookups {
                    println!(
                        "{} user {} on {} {}: {}",
                        l.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        l.user_id,
                        if clients.contains(&l.device_id) {
                            "FHIR client"
                        } else {
                            "device"
                        },
                        l.device_id,
                        match (l.found, l.search_id) {
                            (_, Some(id)) => format!("returned by name search {id}"),
                            (true, None) => "record found".into(),
                            (false, None) => "no record".into(),
                        }
                    );
                }
            }
        }
        CentralCommand::Searches { limit, json } => {
            let searches = store.searches(limit).await?;
            if json {
                print_json(&serde_json::json!({ "searches": searches }))?;
            } else if searches.is_empty() {
                println!("no searches by name at the central");
            } else {
                // What was entered is personal data: only the JSON form, for the IG officer, shows it.
                for s in &searches {
                    println!(
                        "{} search {} by user {} on device {}: {} ({} matched)",
                        s.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        s.id.unwrap_or_default(),
                        s.user_id,
                        s.device_id,
                        serde_json::to_value(s.outcome)?
                            .as_str()
                            .unwrap_or_default(),
                        s.candidates
                    );
                }
            }
        }
        CentralCommand::Devices { json } => {
            let devices: Vec<DeviceSummary> = store
                .devices()
                .await?
                .iter()
                .map(DeviceSummary::from)
                .collect();
            if json {
                print_json(&devices)?;
            } else if devices.is_empty() {
                println!("no devices enrolled");
            } else {
                for d in &devices {
                    println!(
                        "{}  {}  {} ({})  {}  enrolled {}  last seen {}{}",
                        d.device_id,
                        d.region,
                        d.org_name,
                        d.org_ods,
                        d.setting,
                        d.enrolled_at.format("%Y-%m-%d %H:%M"),
                        d.last_seen
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_else(|| "never".into()),
                        if d.revoked { "  REVOKED" } else { "" }
                    );
                }
            }
        }
        CentralCommand::RevokeDevice { device } => {
            if !store.revoke_device(device, Utc::now()).await? {
                bail!("no device {device}");
            }
            println!("device {device} revoked: it is refused from its next contact");
        }
        CentralCommand::FhirClient { command } => match command {
            FhirClientCommand::Add {
                org,
                org_name,
                setting,
                json,
            } => {
                let org = OdsCode::parse(&org)?;
                let setting: CareSetting = setting.parse()?;
                let issued = central.add_fhir_client(&org, &org_name, setting).await?;
                let c = &issued.client;
                if json {
                    print_json(&serde_json::json!({
                        "client_id": c.client_id, "org_ods": c.org_ods, "org_name": c.org_name,
                        "setting": c.setting, "token": issued.token,
                    }))?;
                } else {
                    println!(
                        "FHIR client {} for {} ({}), setting: {}; its token (shown once; keep it secret):",
                        c.client_id,
                        c.org_name,
                        c.org_ods,
                        c.setting.in_words()
                    );
                    println!("{}", issued.token);
                }
            }
            FhirClientCommand::List { json } => {
                let clients = central.fhir_clients().await?;
                if json {
                    print_json(&clients)?;
                } else if clients.is_empty() {
                    println!("no FHIR client systems registered");
                } else {
                    for c in &clients {
                        println!(
                            "{}  {} ({})  {}  registered {}{}",
                            c.client_id,
                            c.org_name,
                            c.org_ods,
                            c.setting,
                            c.created_at.format("%Y-%m-%d %H:%M"),
                            if c.revoked_at.is_some() {
                                "  REVOKED"
                            } else {
                                ""
                            }
                        );
                    }
                }
            }
            FhirClientCommand::Revoke { client } => {
                if !central.revoke_fhir_client(client).await? {
                    bail!("no FHIR client {client}");
                }
                println!("FHIR client {client} revoked: its token is refused from now on");
            }
        },
        CentralCommand::RegionDigest { region, json } => {
            let region = Region::parse(&region)?;
            let digest = store.region_digest(&region).await?;
            if json {
                print_json(&serde_json::json!({ "region": region, "digest": digest }))?;
            } else {
                println!("{digest}");
            }
        }
        CentralCommand::DemoExamples { region } => {
            let region = Region::parse(&region)?;
            let (mut flags, _) = store.region_content(&region).await?;
            flags.sort_by_key(|f| f.nhs_number);
            let mut shown = Vec::new();
            for kind in cpis_core::PlanKind::ALL {
                let has_kind = |f: &&cpis_core::FlagRecord| {
                    f.plans.iter().any(|p| p.kind == kind && p.end.is_none())
                };
                // Demo data only: these are 999-range test numbers on the demo's own screen.
                if let Some(f) = flags.iter().find(has_kind) {
                    shown.push(format!("   {}  {}", f.nhs_number, kind.in_words()));
                }
            }
            for line in shown {
                println!("{line}");
            }
        }
        CentralCommand::Expire { json } => {
            let removed = central
                .expire(cpis_core::ukdate::uk_today(Utc::now()))
                .await?;
            if json {
                print_json(&serde_json::json!({ "removed": removed }))?;
            } else {
                println!("{removed} records past their visibility window removed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
