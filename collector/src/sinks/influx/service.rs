//! Talking to the database: one write request, classified by Telegraf's status-code policy.
//!
//! | answer | [`Outcome`] | what the sink does |
//! |---|---|---|
//! | 2xx | `Delivered` | done |
//! | 413 | `TooLarge` | split the batch, send the halves |
//! | 401, 403 | `Retry` | keep, back off (a token may be fixed without a restart of the server) |
//! | 429, 5xx | `Retry` (with the server's `Retry-After`) | keep, wait at least that long |
//! | 400, 422, other 4xx | `Reject` | drop with a log: retrying will not help |
//! | network error, timeout | `Retry` | keep, back off |
//!
//! Writes go straight through `reqwest` (rustls, the system's CA store) with the line protocol
//! we built, because the `influxdb2` crate surfaces a failed write's status and body but not its
//! headers, and Telegraf's policy needs `Retry-After`. The request is the one the crate sends
//! (`POST /api/v2/write?org&bucket&precision=ms`, `Authorization: Token …`, gzip body when on),
//! except that a path prefix in the base URL is kept (the crate drops it). Spooled batches replay
//! byte for byte. The crate still serves the read path ([`InfluxService::query_count`]: Flux,
//! annotated CSV), over plain HTTP only: it is built without a TLS backend so that the daemon
//! links no OpenSSL.

use std::io::Write as _;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;

use super::config::InfluxSettings;

/// Longest `Retry-After` honoured (Telegraf's cap): a misconfigured proxy must not park the data
/// for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The result of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 413: the batch is too large.
    TooLarge,
    /// Keep the batch and try again later.
    Retry {
        /// Why (status or transport error), for the log.
        reason: String,
        /// The server's `Retry-After` (429/503 and other 5xx), capped at [`MAX_RETRY_AFTER`].
        after: Option<Duration>,
    },
    /// Drop the batch: the server will never accept it.
    Reject {
        /// HTTP status.
        status: u16,
        /// The server's message.
        text: String,
    },
}

/// Classifies an HTTP status by the policy above (`after`: the parsed `Retry-After`, if any; it
/// is kept for 429 and 5xx only).
pub fn classify_status(status: u16, text: &str, after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        413 => Outcome::TooLarge,
        429 | 500..=599 => Outcome::Retry {
            reason: format!("HTTP {status}: {}", truncate(text)),
            after: after.map(|d| d.min(MAX_RETRY_AFTER)),
        },
        401 | 403 => Outcome::Retry {
            reason: format!("HTTP {status}: {}", truncate(text)),
            after: None,
        },
        400..=499 => Outcome::Reject {
            status,
            text: truncate(text).to_owned(),
        },
        _ => Outcome::Retry {
            reason: format!("unexpected HTTP {status}"),
            after: None,
        },
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`; fractions accepted, as Telegraf does) or
/// an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, taken relative to `now_ms`; a date in the past
/// means "now"). Anything else is `None`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = at.timestamp_millis().saturating_sub(now_ms).max(0);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A configured client.
#[derive(Debug, Clone)]
pub struct InfluxService {
    http: reqwest::Client,
    /// `…/api/v2/write?org=…&bucket=…&precision=ms`, built once.
    write_url: Url,
    /// `Token …`, or `None` for servers without auth.
    auth: Option<HeaderValue>,
    gzip: bool,
    // For the read path (`query_count`).
    url: String,
    org: String,
    token: crate::config::Secret,
}

/// Errors building the client.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The URL does not parse, or is not http(s).
    #[error("influx url {0:?} is not a valid http(s) URL")]
    Url(String),
    /// The token cannot be sent as a header (control characters).
    #[error("the influx token contains characters not allowed in an HTTP header")]
    Token,
    /// reqwest refused the configuration (e.g. TLS backend).
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Errors of the read path.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The `influxdb2` crate's error: transport, HTTP status, or not annotated CSV.
    #[error(transparent)]
    Request(#[from] influxdb2::RequestError),
    /// No answer within the request timeout.
    #[error("query timed out")]
    Timeout,
    /// The read path speaks plain HTTP only (see the module docs).
    #[error("the query path supports http:// URLs only")]
    Https,
}

impl InfluxService {
    /// Builds the client with the request timeout. The system's CA certificates are loaded only
    /// for an `https://` URL (a plain-HTTP client has no use for them).
    ///
    /// # Errors
    /// An invalid URL or token, or an HTTP client that cannot be built.
    pub fn new(s: &InfluxSettings) -> Result<Self, BuildError> {
        let base = Url::parse(&s.url).map_err(|_| BuildError::Url(s.url.clone()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(BuildError::Url(s.url.clone()));
        }
        let mut write_url = base.clone();
        // Keep a path prefix (`https://proxy/influx` → `/influx/api/v2/write`).
        let prefix = base.path().trim_end_matches('/');
        write_url.set_path(&format!("{prefix}/api/v2/write"));
        write_url
            .query_pairs_mut()
            .clear()
            .append_pair("org", &s.org)
            .append_pair("bucket", &s.bucket)
            .append_pair("precision", "ms");
        let auth = if s.token.expose().is_empty() {
            None
        } else {
            let mut v = HeaderValue::from_str(&format!("Token {}", s.token.expose()))
                .map_err(|_| BuildError::Token)?;
            v.set_sensitive(true);
            Some(v)
        };
        let http = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(1)
            .tls_built_in_root_certs(base.scheme() == "https")
            .build()
            .map_err(|e| BuildError::Client(e.to_string()))?;
        Ok(Self {
            http,
            write_url,
            auth,
            gzip: s.gzip,
            url: s.url.clone(),
            org: s.org.clone(),
            token: s.token.clone(),
        })
    }

    /// Sends one batch (lines without newlines) and classifies the answer.
    pub async fn write(&self, lines: &[String]) -> Outcome {
        let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            body.extend_from_slice(l.as_bytes());
            body.push(b'\n');
        }
        let mut req = self
            .http
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        if self.gzip {
            match gzip(&body) {
                Ok(z) => {
                    body = z;
                    req = req.header(CONTENT_ENCODING, "gzip");
                }
                // Cannot happen writing to memory; send the body uncompressed if it ever does.
                Err(e) => tracing::debug!(error = %e, "Gzip failed; sending uncompressed."),
            }
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: transport_reason(&e),
                    after: None,
                }
            }
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Outcome::Delivered;
        }
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, crate::run::wall_ms()));
        // The body is only the server's message: a transport error reading it loses nothing.
        let text = resp.text().await.unwrap_or_default();
        classify_status(status, &text, after)
    }

    /// Counts the rows a Flux query returns (the read path, for checks and tests), through the
    /// `influxdb2` crate, bounded by the request timeout.
    ///
    /// # Errors
    /// The crate's error (transport, HTTP status, not annotated CSV), a timeout, or an https URL.
    pub async fn query_count(&self, flux: &str, timeout: Duration) -> Result<usize, QueryError> {
        if !self.url.starts_with("http://") {
            return Err(QueryError::Https);
        }
        let client =
            influxdb2::Client::new(self.url.clone(), self.org.clone(), self.token.expose());
        let q = influxdb2::models::Query::new(flux.to_owned());
        match tokio::time::timeout(timeout, client.query_raw(Some(q))).await {
            Ok(r) => Ok(r?.len()),
            Err(_) => Err(QueryError::Timeout),
        }
    }
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    z.write_all(body)?;
    z.finish()
}

/// The error and its causes on one line (reqwest's `Display` alone says only "error sending
/// request").
fn transport_reason(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegraf_policy() {
        assert_eq!(classify_status(204, "", None), Outcome::Delivered);
        assert_eq!(classify_status(200, "", None), Outcome::Delivered);
        assert_eq!(classify_status(413, "", None), Outcome::TooLarge);
        for s in [401, 403, 429, 500, 502, 503] {
            assert!(
                matches!(classify_status(s, "x", None), Outcome::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 404, 422] {
            assert!(
                matches!(classify_status(s, "x", None), Outcome::Reject { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_is_kept_for_429_and_5xx_only_and_capped() {
        let ten = Some(Duration::from_secs(10));
        for s in [429, 503, 500] {
            assert!(
                matches!(classify_status(s, "", ten), Outcome::Retry { after, .. } if after == ten),
                "{s}"
            );
        }
        assert!(matches!(
            classify_status(401, "", ten),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify_status(429, "", Some(Duration::from_secs(86_400))),
            Outcome::Retry { after: Some(d), .. } if d == MAX_RETRY_AFTER
        ));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        // 2015-10-21T07:28:00Z in ms.
        let now = 1_445_412_480_000;
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("1e9", now), Some(MAX_RETRY_AFTER));
        for bad in ["", "soon", "-5", "NaN"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    fn settings(url: &str, token: &str) -> InfluxSettings {
        InfluxSettings {
            url: url.into(),
            org: "o g".into(),
            bucket: "b".into(),
            token: crate::config::Secret::new(token),
            batch_lines: 1,
            flush_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            gzip: true,
            spool_dir: "/nonexistent".into(),
            spool_max_bytes: 1,
            queue_lines: 1,
        }
    }

    #[test]
    fn write_url_keeps_a_path_prefix_and_encodes_the_query() {
        let s = InfluxService::new(&settings("https://proxy.example/influx/", "t")).unwrap();
        assert_eq!(
            s.write_url.as_str(),
            "https://proxy.example/influx/api/v2/write?org=o+g&bucket=b&precision=ms"
        );
        let s = InfluxService::new(&settings("http://127.0.0.1:8086", "")).unwrap();
        assert_eq!(
            s.write_url.as_str(),
            "http://127.0.0.1:8086/api/v2/write?org=o+g&bucket=b&precision=ms"
        );
        assert!(s.auth.is_none());
        for bad in ["not a url", "ftp://x/", "mailto:a@b"] {
            assert!(InfluxService::new(&settings(bad, "")).is_err(), "{bad}");
        }
        assert!(matches!(
            InfluxService::new(&settings("http://x", "a\nb")),
            Err(BuildError::Token)
        ));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let body = b"m,host=h v=1 1\n".repeat(100);
        let z = gzip(&body).unwrap();
        assert_eq!(&z[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
