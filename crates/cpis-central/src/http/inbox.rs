//! The LA inbox: a server-rendered page where a social worker sees which of their children were
//! seen in unscheduled care, when and where. NHS design-system look from a small inline stylesheet;
//! no scripts, nothing fetched from elsewhere. Signing in with the LA token opens a short-lived
//! session at the central; the cookie holds only that session's random id (HttpOnly,
//! SameSite=Strict, Secure off this machine, scoped to the LA's inbox path), never the token, and
//! signing out ends the session at the central.

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use cpis_core::wire::Notification;
use cpis_core::OdsCode;
use serde::Deserialize;

use crate::error::ApiFailure;
use crate::service::Central;

const COOKIE: &str = "cpis_inbox";

/// NHS colours and type scale, enough for the inbox's few components.
const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font-family:Frutiger W01,Arial,Sans-serif;font-size:16px;line-height:1.5;color:#212b32;background:#f0f4f5}
.nhsuk-header{background:#005eb8;color:#fff;padding:16px 0}
.nhsuk-width-container{max-width:960px;margin:0 auto;padding:0 16px}
.nhsuk-header__logo{display:inline-block;background:#fff;color:#005eb8;font-weight:700;font-size:22px;padding:0 8px;margin-right:12px;letter-spacing:-1px}
.nhsuk-header__service-name{font-size:19px;font-weight:600}
.nhsuk-main-wrapper{padding:32px 0}
h1{font-size:32px;font-weight:700;margin:0 0 24px}
h2{font-size:24px;font-weight:700;margin:0 0 16px}
.nhsuk-body-s{font-size:14px;color:#4c6272}
.nhsuk-card{background:#fff;border:1px solid #d8dde0;margin-bottom:24px;padding:24px}
.nhsuk-card--warning{border-left:8px solid #ffeb3b}
.nhsuk-table{width:100%;border-collapse:collapse;background:#fff;font-size:16px}
.nhsuk-table th,.nhsuk-table td{text-align:left;padding:12px 16px 12px 0;border-bottom:1px solid #d8dde0;vertical-align:top}
.nhsuk-table th{font-weight:600}
.nhsuk-tag{display:inline-block;padding:2px 8px;border:1px solid #005eb8;color:#005eb8;background:#e8f1f8;font-size:14px;font-weight:600}
.nhsuk-label{display:block;font-weight:600;margin-bottom:8px}
.nhsuk-input{font-size:16px;padding:8px;border:2px solid #4c6272;width:100%;max-width:480px}
.nhsuk-input:focus,.nhsuk-button:focus{outline:4px solid #ffeb3b;box-shadow:inset 0 0 0 2px #212b32}
.nhsuk-button{background:#007f3b;color:#fff;border:0;box-shadow:0 4px 0 #00401e;font-size:19px;font-weight:600;padding:12px 16px;margin-top:16px;cursor:pointer}
.nhsuk-button--secondary{background:#4c6272;box-shadow:0 4px 0 #263139}
.nhsuk-error-message{color:#d5281b;font-weight:600}
.nowrap{white-space:nowrap}
"#;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn when(t: DateTime<Utc>) -> String {
    cpis_core::ukdate::uk_time_text(t)
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en-GB\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - CP-IS Field</title><style>{STYLE}</style></head><body>\
         <header class=\"nhsuk-header\"><div class=\"nhsuk-width-container\">\
         <span class=\"nhsuk-header__logo\">NHS</span><span class=\"nhsuk-header__service-name\">CP-IS Field: LA inbox</span>\
         </div></header><div class=\"nhsuk-width-container\"><main class=\"nhsuk-main-wrapper\" id=\"maincontent\">{body}</main></div></body></html>",
        title = escape(title)
    )
}

/// Security headers for every inbox page: no framing, no scripts at all, nothing cached.
fn page_response(status: StatusCode, html: String) -> Response {
    let mut r = (status, Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn sign_in_page(ods: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"nhsuk-error-message\">{}</p>", escape(e)))
        .unwrap_or_default();
    layout(
        "Sign in",
        &format!(
            "<h1>Sign in to the inbox for {ods}</h1><div class=\"nhsuk-card\">{error}\
             <form method=\"post\" action=\"/la/{ods}/inbox/sign-in\">\
             <label class=\"nhsuk-label\" for=\"token\">Local authority access token</label>\
             <input class=\"nhsuk-input\" id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>\
             <br><button class=\"nhsuk-button\" type=\"submit\">Sign in</button></form></div>",
            ods = escape(ods)
        ),
    )
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix("cpis_inbox="))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .next()
}

/// `; Secure` unless the page was asked for on this machine: off it the central serves only HTTPS,
/// and a browser on 127.0.0.1 over plain HTTP would drop a Secure cookie.
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let local = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        ""
    } else {
        "; Secure"
    }
}

fn session_cookie(ods: &OdsCode, value: &str, max_age: i64, headers: &HeaderMap) -> String {
    format!(
        "{COOKIE}={value}; Path=/la/{ods}/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        secure_attribute(headers)
    )
}

fn inbox_html(la: &OdsCode, la_name: &str, notes: &[Notification]) -> String {
    let mut rows = String::new();
    for n in notes.iter().rev() {
        let nhs = n.nhs_number.to_string();
        rows.push_str(&format!(
            "<tr><td><strong>{family}, {given}</strong><br><span class=\"nowrap\">{nhs}</span><br>Born {dob}</td>\
             <td class=\"nowrap\">{seen}</td>\
             <td>{org} ({ods})<br>{setting}<br>{role}{case}{found_by}</td>\
             <td class=\"nowrap\">{received}</td></tr>",
            family = escape(&n.family_name.to_uppercase()),
            given = escape(&n.given_names),
            nhs = escape(&nhs),
            dob = n.date_of_birth.format("%-d %b %Y"),
            seen = when(n.seen_at),
            org = escape(&n.org_name),
            ods = escape(n.org_ods.as_str()),
            setting = escape(n.setting.in_words()),
            role = escape(&n.role),
            case = n
                .case_reference
                .as_deref()
                .map(|c| format!("<br><span class=\"nhsuk-body-s\">Reference: {}</span>", escape(c)))
                .unwrap_or_default(),
            found_by = match n.found_by {
                cpis_core::FoundBy::NhsNumber => "",
                // The clinician had no verified NHS number: the LA may want to confirm who it was.
                cpis_core::FoundBy::NameAndDateOfBirth => {
                    "<br><strong class=\"nhsuk-body-s\">Found by name and date of birth</strong>"
                }
            },
            received = when(n.received_at),
        ));
    }
    let table = if notes.is_empty() {
        "<div class=\"nhsuk-card\"><p>No one in your care has been seen in unscheduled care yet.</p></div>".to_string()
    } else {
        format!(
            "<table class=\"nhsuk-table\"><caption class=\"nhsuk-body-s\" style=\"text-align:left;padding-bottom:8px\">\
             Newest first. &ldquo;Seen&rdquo; is when the clinician opened the record, by their device's clock.</caption>\
             <thead><tr><th scope=\"col\">Child (or mother for an unborn plan)</th><th scope=\"col\">Seen</th>\
             <th scope=\"col\">Where</th><th scope=\"col\">Received</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    layout(
        "Inbox",
        &format!(
            "<h1>Access notifications</h1><p><span class=\"nhsuk-tag\">{ods}</span> {name}</p>\
             <p>{count} notification{s} shown.</p>{table}\
             <form method=\"post\" action=\"/la/{ods}/inbox/sign-out\"><button class=\"nhsuk-button nhsuk-button--secondary\" type=\"submit\">Sign out</button></form>",
            ods = escape(la.as_str()),
            name = escape(la_name),
            count = notes.len(),
            s = if notes.len() == 1 { "" } else { "s" },
        ),
    )
}

/// How many of the newest notifications the page shows.
const INBOX_LEN: usize = 500;

pub async fn page(
    State(c): State<Central>,
    Path(ods): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(wanted) = OdsCode::parse(&ods) else {
        return page_response(
            StatusCode::NOT_FOUND,
            layout("Not found", "<h1>Page not found</h1>"),
        );
    };
    let Some(session) = cookie_session(&headers) else {
        return page_response(StatusCode::OK, sign_in_page(wanted.as_str(), None));
    };
    let la = match c.inbox_session(&session).await {
        Ok(la) if la == wanted => la,
        Ok(_) => {
            return page_response(
                StatusCode::FORBIDDEN,
                sign_in_page(
                    wanted.as_str(),
                    Some("You are signed in to another local authority's inbox."),
                ),
            );
        }
        Err(ApiFailure {
            status: StatusCode::UNAUTHORIZED,
            ..
        }) => {
            return page_response(
                StatusCode::UNAUTHORIZED,
                sign_in_page(
                    wanted.as_str(),
                    Some("Your session has ended. Sign in again."),
                ),
            );
        }
        Err(_) => return problem(),
    };
    tracing::Span::current().record("la", tracing::field::display(&la));
    match render(&c, &la).await {
        Ok(html) => page_response(StatusCode::OK, html),
        Err(_) => problem(),
    }
}

fn problem() -> Response {
    page_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        layout(
            "Error",
            "<h1>Sorry, there is a problem with the service</h1><p>Try again later.</p>",
        ),
    )
}

async fn render(c: &Central, la: &OdsCode) -> Result<String, ApiFailure> {
    let record = c.store.local_authority(la).await?;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = c.store.notification_page(la, after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    let newest = all.split_off(all.len().saturating_sub(INBOX_LEN));
    Ok(inbox_html(
        la,
        record.map(|r| r.la.name).as_deref().unwrap_or(""),
        &newest,
    ))
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
}

pub async fn sign_in(
    State(c): State<Central>,
    Path(ods): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let Ok(wanted) = OdsCode::parse(&ods) else {
        return page_response(
            StatusCode::NOT_FOUND,
            layout("Not found", "<h1>Page not found</h1>"),
        );
    };
    let (session, _) = match c.open_inbox_session(form.token.trim(), &wanted).await {
        Ok(opened) => opened,
        Err(e) if e.status.is_client_error() => {
            tracing::warn!(la = %wanted, "inbox sign-in refused");
            return page_response(
                StatusCode::UNAUTHORIZED,
                sign_in_page(
                    wanted.as_str(),
                    Some("That token is not valid for this local authority."),
                ),
            );
        }
        Err(_) => return problem(),
    };
    let mut r = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/la/{wanted}/inbox"))],
    )
        .into_response();
    let max_age = crate::la_access::INBOX_SESSION_LIFETIME.num_seconds();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&wanted, &session, max_age, &headers)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Ends the session at the central (a copied cookie stops working too) and clears the cookie.
pub async fn sign_out(
    State(c): State<Central>,
    Path(ods): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(ods) = OdsCode::parse(&ods) else {
        return page_response(
            StatusCode::NOT_FOUND,
            layout("Not found", "<h1>Page not found</h1>"),
        );
    };
    if let Some(session) = cookie_session(&headers) {
        if c.end_inbox_session(&session).await.is_err() {
            return problem();
        }
    }
    let mut r = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/la/{ods}/inbox"))],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&ods, "", 0, &headers)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
