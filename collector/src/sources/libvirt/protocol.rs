//! The line-delimited JSON protocol between the collector and `keel-collector-libvirt`.
//!
//! The collector writes one [`Request`] per line to the helper's stdin; the helper answers each
//! with one [`Response`] line on stdout carrying the same `id`, in any order (reads run
//! concurrently). A `list` refreshes the helper's set of active domains; a `read` names one of
//! them by UUID. Example exchange:
//!
//! ```text
//! → {"op":"list","id":1}
//! ← {"id":1,"result":{"domains":[{"uuid":"6695eb01-…","name":"test"}]}}
//! → {"op":"read","id":2,"uuid":"6695eb01-…"}
//! ← {"id":2,"result":{"reading":{"uuid":"6695eb01-…","name":"test","cpu_time_ns":…}}}
//! ```
//!
//! The helper exits when its stdin closes. It never answers a request it is stuck on (a libvirt
//! call that hangs): the collector's deadline decides, and it kills the helper.

use serde::{Deserialize, Serialize};

/// A request from the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// List the active domains (and remember them for `read`).
    List {
        /// Echoed in the response.
        id: u64,
    },
    /// Read one domain from the last list.
    Read {
        /// Echoed in the response.
        id: u64,
        /// The domain's UUID.
        uuid: String,
    },
}

impl Request {
    /// The request's id.
    pub fn id(&self) -> u64 {
        match self {
            Self::List { id } | Self::Read { id, .. } => *id,
        }
    }
}

/// A response from the helper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// What happened.
    pub result: Answer,
}

/// The outcome of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// `list`: the active domains.
    Domains(Vec<DomainId>),
    /// `read`: the domain's counters.
    Reading(DomainReading),
    /// `read`: the domain is gone (shut down or undefined since the list). Normal, not an error.
    Vanished,
    /// The libvirt error (connection refused, a failed call).
    Error(String),
}

/// A domain's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainId {
    /// UUID: the VM's id in every row.
    pub uuid: String,
    /// Name (a tag; it can change).
    pub name: String,
}

/// One domain's raw readings. Missing fields read as their defaults (a helper from another
/// version may send fewer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainReading {
    /// UUID.
    pub uuid: String,
    /// Name (a tag; it can change).
    pub name: String,
    /// CPU time, ns.
    pub cpu_time_ns: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Current memory, KiB.
    pub memory_kib: u64,
    /// Maximum memory, KiB.
    pub max_mem_kib: u64,
    /// Balloon size, KiB.
    pub balloon_kib: Option<u64>,
    /// Host RSS of the VM process, KiB.
    pub rss_kib: Option<u64>,
    /// Guest-visible memory and its unused part, KiB.
    pub guest_avail_unused_kib: Option<(u64, u64)>,
    /// Sum of block read and write bytes.
    pub block_bytes: Option<(u64, u64)>,
    /// Sum of interface rx and tx bytes.
    pub net_bytes: Option<(u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_single_lines() {
        let reqs = [
            Request::List { id: 1 },
            Request::Read {
                id: 2,
                uuid: "u".into(),
            },
        ];
        for r in reqs {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::List { id: 7 }).unwrap(),
            r#"{"op":"list","id":7}"#
        );
        let answers = [
            Answer::Domains(vec![DomainId {
                uuid: "u".into(),
                name: "n\"x".into(),
            }]),
            Answer::Reading(DomainReading {
                uuid: "u".into(),
                net_bytes: Some((1, 2)),
                ..DomainReading::default()
            }),
            Answer::Vanished,
            Answer::Error("no\nconnection".into()),
        ];
        for a in answers {
            let resp = Response { id: 3, result: a };
            let line = serde_json::to_string(&resp).unwrap();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), resp);
        }
        assert_eq!(
            serde_json::to_string(&Response {
                id: 4,
                result: Answer::Vanished
            })
            .unwrap(),
            r#"{"id":4,"result":"vanished"}"#
        );
    }
}
