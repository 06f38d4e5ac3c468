//! Where an LA's webhook may point and the HTTP client that calls it: `https://` only (plain
//! `http://` for a receiver on this machine), no user name or password in the address, and no
//! redirect followed, so a receiver cannot bounce notifications to an address nobody approved.

use std::time::Duration;

/// Why a webhook address is refused, or `None` when it may be used.
pub fn refusal(url: &str) -> Option<&'static str> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Some("the webhook is not a URL");
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("the webhook must not carry a user name or password");
    }
    let Some(host) = parsed.host_str() else {
        return Some("the webhook has no host");
    };
    match parsed.scheme() {
        "https" => None,
        "http" if loopback(host) => None,
        "http" => Some("the webhook must be https:// (plain http:// only for this machine)"),
        _ => Some("the webhook must be an https:// URL"),
    }
}

fn loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The client webhook deliveries use: a 3xx is an answer, never followed.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with default TLS settings always builds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn webhooks_must_be_https_except_on_this_machine_and_carry_no_user_name() {
        for ok in [
            "https://la.example.org/hook",
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "http://[::1]:9000/hook",
        ] {
            assert_eq!(refusal(ok), None, "{ok}");
        }
        for bad in [
            "http://la.example.org/hook",
            "http://localhost:80@la.example.org/hook",
            "http://[::1]@la.example.org/hook",
            "https://user:secret@la.example.org/hook",
            "ftp://127.0.0.1/hook",
            "la.example.org/hook",
        ] {
            assert!(refusal(bad).is_some(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_webhook_client_never_follows_a_redirect() {
        let elsewhere = Arc::new(AtomicUsize::new(0));
        let hits = elsewhere.clone();
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(|| async { axum::response::Redirect::temporary("/elsewhere") }),
            )
            .route(
                "/elsewhere",
                axum::routing::post(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async { "taken" }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let r = client()
            .post(format!("http://{addr}/hook"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 307);
        assert_eq!(elsewhere.load(Ordering::SeqCst), 0);
    }
}
