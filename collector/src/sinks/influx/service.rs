//! Talking to the database: one write request, classified by Telegraf's status-code policy.
//!
//! | answer | [`Outcome`] | what the sink does |
//! |---|---|---|
//! | 2xx | `Delivered` | done |
//! | 413 | `TooLarge` | split the batch, send the halves |
//! | 401, 403 | `Retry` | keep, back off (a token may be fixed without a restart of the server) |
//! | 429, 5xx | `Retry` | keep, back off |
//! | 400, 422, other 4xx | `Reject` | drop with a log: retrying will not help |
//! | network error, timeout | `Retry` | keep, back off |
//!
//! The `influxdb2` crate surfaces the status and body but not the headers, so a `Retry-After`
//! header cannot be read through it; the sink backs off exponentially (1 s doubling to 60 s)
//! instead. Writes use `precision=ms` and, with gzip on, a gzip body (the crate compresses the
//! stream of pre-built lines we hand it, so spooled batches replay byte for byte).

use std::io;
use std::time::Duration;

use influxdb2::api::write::TimestampPrecision;
use influxdb2::models::WriteDataPoint;
use influxdb2::RequestError;

use super::config::InfluxSettings;

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
    },
    /// Drop the batch: the server will never accept it.
    Reject {
        /// HTTP status.
        status: u16,
        /// The server's message.
        text: String,
    },
}

/// Classifies an HTTP status by the policy above.
pub fn classify_status(status: u16, text: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        413 => Outcome::TooLarge,
        401 | 403 | 429 | 500..=599 => Outcome::Retry {
            reason: format!("HTTP {status}: {}", truncate(text)),
        },
        400..=499 => Outcome::Reject {
            status,
            text: truncate(text).to_owned(),
        },
        _ => Outcome::Retry {
            reason: format!("unexpected HTTP {status}"),
        },
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Pre-built line protocol handed to the crate as one "data point".
#[derive(Debug)]
struct RawLines(String);

impl WriteDataPoint for RawLines {
    fn write_data_point_to<W: io::Write>(&self, mut w: W) -> io::Result<()> {
        w.write_all(self.0.as_bytes())
    }
}

/// A configured client.
#[derive(Debug, Clone)]
pub struct InfluxService {
    client: influxdb2::Client,
    bucket: String,
    org: String,
    gzip: bool,
}

/// Errors building the client.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The URL does not parse.
    #[error("influx url {0:?} is not a valid URL")]
    Url(String),
    /// reqwest refused the configuration (e.g. TLS backend).
    #[error("building the HTTP client: {0}")]
    Client(String),
}

impl InfluxService {
    /// Builds the client: our own reqwest builder gives the request timeout the crate lacks.
    ///
    /// # Errors
    /// An invalid URL or an HTTP client that cannot be built.
    pub fn new(s: &InfluxSettings) -> Result<Self, BuildError> {
        reqwest::Url::parse(&s.url).map_err(|_| BuildError::Url(s.url.clone()))?;
        let builder = reqwest::ClientBuilder::new()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(1);
        let client = influxdb2::ClientBuilder::with_builder(
            builder,
            s.url.clone(),
            s.org.clone(),
            s.token.expose().to_owned(),
        )
        .gzip(s.gzip)
        .build()
        .map_err(|e| BuildError::Client(e.to_string()))?;
        Ok(Self {
            client,
            bucket: s.bucket.clone(),
            org: s.org.clone(),
            gzip: s.gzip,
        })
    }

    /// Sends one batch (lines without newlines) and classifies the answer.
    pub async fn write(&self, lines: &[String]) -> Outcome {
        let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        let res = if self.gzip {
            let points = futures_util::stream::iter([RawLines(body)]);
            self.client
                .write_with_precision(&self.bucket, points, TimestampPrecision::Milliseconds)
                .await
        } else {
            self.client
                .write_line_protocol_with_precision(
                    &self.org,
                    &self.bucket,
                    body,
                    TimestampPrecision::Milliseconds,
                )
                .await
        };
        match res {
            Ok(()) => Outcome::Delivered,
            Err(RequestError::Http { status, text }) => classify_status(status.as_u16(), &text),
            Err(e) => Outcome::Retry {
                reason: e.to_string(),
            },
        }
    }

    /// Counts the rows a Flux query returns (the read path, for checks and tests).
    ///
    /// # Errors
    /// The crate's error: transport, HTTP status, or a response that is not annotated CSV.
    pub async fn query_count(&self, flux: &str) -> Result<usize, RequestError> {
        let q = influxdb2::models::Query::new(flux.to_owned());
        Ok(self.client.query_raw(Some(q)).await?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegraf_policy() {
        assert_eq!(classify_status(204, ""), Outcome::Delivered);
        assert_eq!(classify_status(200, ""), Outcome::Delivered);
        assert_eq!(classify_status(413, ""), Outcome::TooLarge);
        for s in [401, 403, 429, 500, 502, 503] {
            assert!(
                matches!(classify_status(s, "x"), Outcome::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 404, 422] {
            assert!(
                matches!(classify_status(s, "x"), Outcome::Reject { .. }),
                "{s}"
            );
        }
    }
}
