//! Who may use the dashboard. With a token, every request carries it (a bearer header, or
//! the cookie a `?token=` link sets, so that pages and EventSource work); without one, only
//! requests addressed to a loopback name are answered (no DNS rebinding), and a page of
//! another origin may not cancel or resume (a POST with no Origin, which browsers always
//! send, comes from a tool and is taken).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

/// The cookie a `?token=` link sets.
pub const COOKIE: &str = "helios_ui";

/// Whether `host` (a Host header: name and optional port) names this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Equal without an early exit (the token is a secret).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn query_token(req: &Request) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// The middleware: `token` is the dashboard's token, if it has one.
pub async fn guard(State(token): State<Option<String>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let by_header = bearer(headers).is_some();
    match &token {
        Some(t) => {
            if let Some(given) = query_token(&req) {
                if !same_secret(&given, t) {
                    return refuse(StatusCode::UNAUTHORIZED, "wrong token");
                }
                // Trade the link's token for a cookie, and drop it from the address bar.
                let path = req.uri().path().to_string();
                let mut r = Redirect::to(&path).into_response();
                let cookie = format!("{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/");
                if let Ok(v) = cookie.parse() {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                return r;
            }
            let ok = bearer(headers).is_some_and(|b| same_secret(b, t))
                || cookie_token(headers).is_some_and(|c| same_secret(&c, t));
            if !ok {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its token: open it with ?token=T, or send Authorization: Bearer T",
                );
            }
        }
        None => {
            if !is_loopback_host(&host) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "this dashboard answers loopback names only (start it with --token to serve other hosts)",
                );
            }
        }
    }
    // A cookie rides along on cross-site requests a page makes; a bearer header cannot.
    // Browsers send an Origin with every POST, so a POST without one comes from a script
    // or a tool on this side (curl on loopback), not from another site's page; a foreign
    // or `null` Origin is refused.
    if req.method() == Method::POST && !by_header {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin.to_str().ok().is_some_and(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
                    .is_some_and(|h| h.eq_ignore_ascii_case(&host))
            });
            if !same {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "cancel and resume are taken only from the dashboard's own pages (same Origin), from tools that send no Origin, or with Authorization: Bearer",
                );
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for h in [
            "localhost",
            "localhost:7878",
            "127.0.0.1:7878",
            "127.4.5.6",
            "[::1]:7878",
            "app.localhost:80",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.com",
            "127.0.0.1.evil.com",
            "localhost.evil.com:7878",
            "10.0.0.1:7878",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
