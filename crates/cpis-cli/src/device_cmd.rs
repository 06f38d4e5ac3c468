//! `cpis device --data-dir DIR ...`: a headless device over the same engine as the app.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use cpis_device::views::{
    CheckOutcome, CheckView, SearchOutcome, SearchView, StatusView, SyncPhase,
};
use cpis_device::{CheckRequest, Device, DeviceConfig, SearchInput};

#[derive(clap::Args)]
pub struct DeviceArgs {
    /// The device's data directory (its encrypted store and device secret).
    #[arg(long, env = "CPIS_DEVICE_DIR")]
    data_dir: PathBuf,
    /// How long a live check may wait for the central before the cache answers, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    live_deadline_ms: u64,
    /// Changes per feed page asked of the central (support and tests).
    #[arg(long, default_value_t = cpis_device::sync::PAGE_LIMIT)]
    page_limit: u32,
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register this device with the central using a one-time code; pins the central's keys.
    Enrol {
        #[arg(long)]
        central: String,
        #[arg(long)]
        code: String,
        #[arg(long)]
        json: bool,
    },
    /// Sign in online: sets up this user's offline unlock and receives the lease. PIN from CPIS_PIN or the terminal.
    Login {
        #[arg(long)]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Pull this region's changes, then deliver queued access events.
    Sync {
        /// Sign in as this user first so the cache can be updated (PIN from CPIS_PIN); without it only the outbox is sent.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check an NHS number.
    Check {
        nhs_number: String,
        #[arg(long)]
        user: String,
        /// Open the alert (queues the LA notification where the user and setting notify).
        #[arg(long)]
        open: bool,
        /// Checking a pregnant woman on her own number (unborn child plan).
        #[arg(long)]
        pregnant: bool,
        /// Incident or case reference.
        #[arg(long)]
        case_reference: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Search by family name and date of birth, when there is no NHS number. Answers in tiers:
    /// match, possible_matches, too_many or no_match.
    Search {
        #[arg(long)]
        family: String,
        /// Date of birth, YYYY-MM-DD.
        #[arg(long)]
        dob: String,
        #[arg(long)]
        given: Option<String>,
        /// female, male or unknown (recorded; CP-IS does not hold it, so it is not compared).
        #[arg(long)]
        sex: Option<String>,
        /// First half of the postcode, e.g. LS6 (recorded; not compared, as for sex).
        #[arg(long)]
        postcode: Option<String>,
        #[arg(long, env = "CPIS_USER")]
        user: String,
        /// Confirm possible match N (1-based) as the patient: the answer is then that person's check.
        #[arg(long, conflicts_with = "none_of_these")]
        choose: Option<usize>,
        /// Say that none of the possible matches is the patient (recorded in the audit).
        #[arg(long)]
        none_of_these: bool,
        /// Open the alert of the person matched or chosen (the LA is told where the user and setting notify).
        #[arg(long)]
        open: bool,
        /// Incident or case reference.
        #[arg(long)]
        case_reference: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The SHA-256 digest of the cached region, to compare with `cpis central region-digest`.
    Digest {
        #[arg(long)]
        user: String,
    },
    /// Serve the FHIR door on 127.0.0.1 for an electronic patient record on this device: CareTeam and
    /// AuditEvent searches as the national CP-IS API, answered offline from this device's copy, as
    /// the signed-in user (PIN from CPIS_PIN or the terminal). The bearer token is in the data
    /// directory's fhir-door.token (0600). Keeps syncing in the background; stops on Ctrl-C or SIGTERM.
    FhirServe {
        #[arg(long)]
        user: String,
        /// Change the door's port (kept in the device's settings, fhir-door.json; default 8760).
        /// 0 picks a free port for this run only.
        #[arg(long)]
        port: Option<u16>,
    },
    /// The region's local authorities and their emergency duty and office numbers, as last received
    /// from the central and checked against its signature. Needs no sign-in and no connection.
    EmergencyNumbers {
        /// Only the LAs whose name or ODS code contains this (any case).
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cached flags, cursor, last sync, data age, queued events, dead letters, lease, online or not.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn read_pin() -> anyhow::Result<String> {
    if let Ok(pin) = std::env::var("CPIS_PIN") {
        return Ok(pin);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no PIN: set CPIS_PIN or run in a terminal");
    }
    // Typed with echo off, so the PIN is neither on screen nor in a terminal's scroll-back.
    let pin = rpassword::prompt_password("PIN: ").context("reading the PIN from the terminal")?;
    Ok(pin.trim_end_matches(['\r', '\n']).to_string())
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn age(seconds: Option<i64>) -> String {
    match seconds {
        None => "never".into(),
        Some(s) if s < 120 => format!("{s} seconds"),
        Some(s) if s < 7200 => format!("{} minutes", s / 60),
        Some(s) if s < 172_800 => format!("{} hours", s / 3600),
        Some(s) => format!("{} days", s / 86_400),
    }
}

fn print_status(s: &StatusView) {
    if !s.enrolled {
        println!("Not enrolled.");
        return;
    }
    println!(
        "Device:          {}",
        s.device_id.map(|d| d.to_string()).unwrap_or_default()
    );
    println!("Region:          {}", s.region.clone().unwrap_or_default());
    println!(
        "Organisation:    {} ({})",
        s.org_name.clone().unwrap_or_default(),
        s.setting.clone().unwrap_or_default()
    );
    println!(
        "Central:         {} ({})",
        s.central_url.clone().unwrap_or_default(),
        if s.online { "online" } else { "offline" }
    );
    println!("Cached flags:    {}", s.cached_flags);
    println!("Cursor:          {}", s.cursor);
    println!(
        "Last sync:       {}",
        s.last_sync_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into())
    );
    println!(
        "Data age:        {}{}",
        match s.data_age_seconds {
            // Also the state of a first download that was cut off: the copy is incomplete.
            None => "none: no download from the central has finished yet".to_string(),
            age_s => age(age_s),
        },
        if s.stale { " (STALE)" } else { "" }
    );
    println!(
        "Queued events:   {} (oldest {})",
        s.queued_events,
        age(s.oldest_queued_age_seconds)
    );
    println!("Dead letters:    {}", s.dead_letters.len());
    for d in &s.dead_letters {
        println!("  {} {}", d.event_id, d.reason);
    }
    println!(
        "Lease expires:   {}",
        s.lease_expires_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "no lease".into())
    );
    if let Some(reason) = &s.wiped_reason {
        println!("WIPED:           {reason}");
    }
}

fn print_check(v: &CheckView) {
    println!("{}", v.message);
    if let Some(reason) = &v.reason {
        println!("  {reason}");
    }
    if v.outcome == CheckOutcome::InvalidNhsNumber {
        return;
    }
    let source = match v.source {
        cpis_device::views::Source::Cache => "this device's copy",
        cpis_device::views::Source::Central => "the central service",
    };
    println!(
        "Source: {source}; data age {}{}",
        age(v.data_age_seconds),
        if v.stale { " (STALE)" } else { "" }
    );
    // The screen that must show the record: the clinician's own terminal, only once opened.
    if let Some(p) = &v.person {
        println!(
            "Person: {} {} (born {})",
            p.given_names, p.family_name, p.date_of_birth
        );
    }
    for p in &v.plans {
        let end = p
            .end
            .map(|d| d.to_string())
            .unwrap_or_else(|| "open".into());
        println!(
            "Plan: {} from {} to {} ({})",
            p.kind_in_words, p.start, end, p.status
        );
    }
    if let Some(la) = &v.local_authority {
        println!(
            "Local authority: {} ({}) emergency duty {}{}",
            la.name,
            la.ods,
            la.emergency_phone,
            la.office_phone
                .as_ref()
                .map(|o| format!(", office {o}"))
                .unwrap_or_default()
        );
    }
    for h in &v.access_history {
        println!(
            "Seen: {} by {} at {} ({})",
            h.at.to_rfc3339(),
            h.role,
            h.org_name,
            h.org_ods
        );
    }
    if let Some(n) = v.notification {
        println!(
            "Notification: {}",
            serde_json::to_value(n)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        );
    } else if v.outcome == CheckOutcome::RecordFound {
        println!(
            "Open the alert with --open ({}).",
            if v.notifies {
                "the child's local authority will be told"
            } else {
                "no notification is sent"
            }
        );
    }
    for c in &v.caveats {
        println!("  - {c}");
    }
}

fn print_search(v: &SearchView) {
    if let Some(answer) = &v.answer {
        println!("{}", v.message);
        if let Some(m) = &v.matched {
            for w in &m.matched {
                println!("  matched: {w}");
            }
            for w in &m.differed {
                println!("  differed: {w}");
            }
        }
        print_check(answer);
        return;
    }
    println!("{}", v.message);
    if let Some(reason) = &v.reason {
        println!("  {reason}");
    }
    for c in &v.candidates {
        // Possible matches: who, and how they compare; no plans until one is confirmed.
        println!(
            "{}. {} {} (born {})",
            c.candidate, c.given_names, c.family_name, c.date_of_birth
        );
        for w in &c.matched {
            println!("     matched: {w}");
        }
        for w in &c.differed {
            println!("     differed: {w}");
        }
    }
    if v.outcome == SearchOutcome::PossibleMatches {
        println!("Confirm one with --choose N, or say none is your patient with --none-of-these.");
    }
    for c in &v.caveats {
        println!("  - {c}");
    }
}

fn print_emergency_numbers(v: &cpis_device::views::EmergencyNumbersView) {
    let Some(at) = v.generated_at else {
        println!("This device has not received its region's emergency numbers yet: they arrive with the next sync.");
        return;
    };
    println!(
        "Emergency duty numbers for region {} (as of {}):",
        v.region.as_deref().unwrap_or("?"),
        cpis_core::ukdate::uk_time_text(at)
    );
    if v.local_authorities.is_empty() {
        println!("  none match");
    }
    for la in &v.local_authorities {
        match &la.office_phone {
            Some(office) => println!(
                "  {} ({}): emergency duty {}; office hours {office}",
                la.name, la.ods, la.emergency_phone
            ),
            None => println!(
                "  {} ({}): emergency duty {}",
                la.name, la.ods, la.emergency_phone
            ),
        }
    }
}

pub fn run(args: DeviceArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut config = DeviceConfig::new(&args.data_dir);
        config.live_check_deadline = std::time::Duration::from_millis(args.live_deadline_ms);
        config.page_limit = args.page_limit;
        let device = Device::open(config).context("opening the device store")?;
        match args.command {
            DeviceCommand::Enrol { central, code, json } => {
                let status = device.enrol(&central, &code).await.map_err(|e| anyhow::anyhow!(e.view().message))?;
                if json { print_json(&status)? } else { println!("Enrolled."); print_status(&status) }
                Ok(ExitCode::SUCCESS)
            }
            DeviceCommand::Login { user, json } => {
                let pin = read_pin()?;
                match device.sign_in(&user, &pin).await {
                    Ok(status) => {
                        if json { print_json(&status)? } else { println!("Signed in."); print_status(&status) }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        if json { print_json(&e.view())? } else { eprintln!("error: {e}") }
                        Ok(ExitCode::from(2))
                    }
                }
            }
            DeviceCommand::Sync { user, json } => {
                if let Some(user) = user {
                    let pin = read_pin()?;
                    if let Err(e) = device.sign_in(&user, &pin).await {
                        if json { print_json(&e.view())? } else { eprintln!("error: {e}") }
                        return Ok(ExitCode::from(2));
                    }
                }
                let progress = move |p: cpis_device::views::SyncProgress| {
                    if !json && p.phase == SyncPhase::Pull {
                        eprintln!("pulled page {} ({} records, {} bytes, cursor {} of {})", p.pages, p.records, p.bytes, p.cursor, p.head);
                    }
                };
                match device.sync(&progress).await {
                    Ok(summary) => {
                        if json { print_json(&summary)? } else {
                            println!("Sync complete: {} pages, {} changes applied, cursor {}; {} events delivered, {} dead, {} still queued.",
                                summary.pages, summary.records, summary.cursor, summary.events_delivered, summary.events_dead, summary.events_queued);
                            if let Some(s) = summary.pull_skipped { println!("Cache not updated: {s}."); }
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        if json { print_json(&e.view())? } else { eprintln!("sync failed: {e}") }
                        Ok(ExitCode::from(3))
                    }
                }
            }
            DeviceCommand::Check { nhs_number, user, open, pregnant, case_reference, json } => {
                // Validate before anything else: an invalid number never reaches a lookup or a PIN prompt.
                if let Err(e) = cpis_core::NhsNumber::parse(&nhs_number) {
                    let view = cpis_device::check::invalid(uuid::Uuid::now_v7(), e.to_string());
                    if json { print_json(&view)? } else { print_check(&view) }
                    return Ok(ExitCode::from(4));
                }
                let pin = read_pin()?;
                let view = match device.sign_in(&user, &pin).await {
                    Ok(_) => device.check(&nhs_number, CheckRequest { open, pregnant, case_reference, ..Default::default() }).await,
                    Err(e) => {
                        let now = chrono::Utc::now();
                        let status = device.status();
                        cpis_device::check::locked(uuid::Uuid::now_v7(), e.to_string(), status.last_sync_at, now)
                    }
                };
                if json { print_json(&view)? } else { print_check(&view) }
                Ok(match view.outcome {
                    CheckOutcome::RecordFound | CheckOutcome::NoRecord => ExitCode::SUCCESS,
                    CheckOutcome::InvalidNhsNumber => ExitCode::from(4),
                    CheckOutcome::Locked => ExitCode::from(5),
                })
            }
            DeviceCommand::Search { family, dob, given, sex, postcode, user, choose, none_of_these, open, case_reference, json } => {
                let input = SearchInput {
                    family_name: family,
                    date_of_birth: dob,
                    given_name: given,
                    sex,
                    postcode_district: postcode,
                    case_reference,
                    cache_only: false,
                };
                // Validate before anything else: bad input never reaches a lookup or a PIN prompt.
                if let Err(e) = cpis_core::search::SearchQuery::parse(
                    &input.family_name, &input.date_of_birth, input.given_name.as_deref(),
                    input.sex.as_deref(), input.postcode_district.as_deref(), cpis_core::ukdate::uk_today(chrono::Utc::now()),
                ) {
                    let view = cpis_device::DeviceError::InvalidInput(e.to_string()).view();
                    if json { print_json(&view)? } else { eprintln!("error: {}", view.message) }
                    return Ok(ExitCode::from(4));
                }
                let pin = read_pin()?;
                if let Err(e) = device.sign_in(&user, &pin).await {
                    if json { print_json(&e.view())? } else { eprintln!("error: {e}") }
                    return Ok(ExitCode::from(5));
                }
                let fail = |e: cpis_device::DeviceError| -> anyhow::Result<ExitCode> {
                    if json { print_json(&e.view())? } else { eprintln!("error: {e}") }
                    Ok(ExitCode::from(4))
                };
                let view = match device.search(&input).await {
                    Ok(v) => v,
                    Err(e) => return fail(e),
                };
                // A confirmed or single match is that person's check; opening it is the same path.
                let chosen = match (choose, none_of_these, &view.answer) {
                    (Some(n), _, _) if view.outcome == SearchOutcome::PossibleMatches => match device.choose_candidate(view.search_id, n) {
                        Ok(check) => Some(check),
                        Err(e) => return fail(e),
                    },
                    (Some(_), _, _) => return fail(cpis_device::DeviceError::InvalidInput("choose: there are no possible matches to choose from".into())),
                    (None, true, _) if view.outcome == SearchOutcome::PossibleMatches => {
                        let none = match device.none_of_these(view.search_id) {
                            Ok(v) => v,
                            Err(e) => return fail(e),
                        };
                        if json { print_json(&none)? } else { print_search(&none) }
                        return Ok(ExitCode::SUCCESS);
                    }
                    (None, _, Some(answer)) => Some(answer.clone()),
                    _ => None,
                };
                match chosen {
                    Some(check) if open => {
                        let opened = match device.open_alert(check.check_id).await {
                            Ok(v) => v,
                            Err(e) => return fail(e),
                        };
                        let mut shown = view.clone();
                        shown.outcome = SearchOutcome::Match;
                        shown.answer = Some(opened);
                        if json { print_json(&shown)? } else { print_search(&shown) }
                    }
                    Some(check) if choose.is_some() => {
                        let mut shown = view.clone();
                        shown.outcome = SearchOutcome::Match;
                        shown.matched = choose.and_then(|n| view.candidates.get(n.wrapping_sub(1)).cloned());
                        shown.answer = Some(check);
                        if json { print_json(&shown)? } else { print_search(&shown) }
                    }
                    _ => { if json { print_json(&view)? } else { print_search(&view) } }
                }
                Ok(match view.outcome {
                    SearchOutcome::Locked => ExitCode::from(5),
                    _ => ExitCode::SUCCESS,
                })
            }
            DeviceCommand::Digest { user } => {
                let pin = read_pin()?;
                device.sign_in(&user, &pin).await.map_err(|e| anyhow::anyhow!(e.view().message))?;
                println!("{}", device.cache_digest().map_err(|e| anyhow::anyhow!(e.to_string()))?);
                Ok(ExitCode::SUCCESS)
            }
            DeviceCommand::FhirServe { user, port } => {
                use cpis_device::fhir_door;
                let mut settings = fhir_door::load_settings(&args.data_dir)?;
                match port {
                    Some(0) => settings.port = 0,
                    Some(p) => {
                        settings.port = p;
                        fhir_door::save_settings(&args.data_dir, &settings)?;
                    }
                    None => {}
                }
                let token = fhir_door::door_token(&args.data_dir)?;
                let pin = read_pin()?;
                device.sign_in(&user, &pin).await.map_err(|e| anyhow::anyhow!(e.view().message))?;
                let device = std::sync::Arc::new(device);
                let sync = cpis_device::spawn_background_sync(device.clone(), std::sync::Arc::new(|_| {}));
                let door = fhir_door::serve(device, &token, settings.port).await?;
                println!("FHIR door serving at {} (bearer token in {})", door.base_url(), args.data_dir.join(fhir_door::TOKEN_FILE).display());
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                sync.abort();
                door.shutdown().await;
                Ok(ExitCode::SUCCESS)
            }
            DeviceCommand::EmergencyNumbers { filter, json } => {
                let mut view = match device.emergency_numbers() {
                    Ok(v) => v,
                    Err(e) => {
                        if json { print_json(&e.view())? } else { eprintln!("error: {e}") }
                        return Ok(ExitCode::from(2));
                    }
                };
                if let Some(f) = filter.map(|f| f.trim().to_lowercase()).filter(|f| !f.is_empty()) {
                    view.local_authorities.retain(|la| la.name.to_lowercase().contains(&f) || la.ods.to_lowercase().contains(&f));
                }
                if json { print_json(&view)? } else { print_emergency_numbers(&view) }
                Ok(ExitCode::SUCCESS)
            }
            DeviceCommand::Status { json } => {
                // A one-shot command has no background probe to read: it asks once.
                device.probe().await;
                let status = device.status();
                if json { print_json(&status)? } else { print_status(&status) }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
