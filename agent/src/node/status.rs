//! The status endpoint: `GET /status` (JSON) and `GET /` (a small HTML page listing peers,
//! roles, stability scores, membership and recent negotiations), served by axum on a loopback
//! address. It is read-only: every request reads the latest [`Status`] the agent published.

use std::fmt::Write as _;
use std::net::SocketAddr;

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::Status;

/// The routes, reading `status`.
pub fn router(status: watch::Receiver<Status>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(json))
        .with_state(status)
}

async fn json(State(st): State<watch::Receiver<Status>>) -> impl IntoResponse {
    let s = st.borrow().clone();
    Json(s)
}

async fn page(State(st): State<watch::Receiver<Status>>) -> impl IntoResponse {
    let s = st.borrow().clone();
    Html(render_html(&s))
}

/// Serves `status` on `addr` until `stop`. Returns the bound address.
///
/// # Errors
/// Binding errors.
pub async fn serve(
    addr: SocketAddr,
    status: watch::Receiver<Status>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(addr = %bound, "Status endpoint listening.");
    let app = router(status);
    tracker.spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            warn!(error = %e, "Status endpoint stopped.");
        }
    });
    Ok(bound)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML page.
pub fn render_html(st: &Status) -> String {
    let mut h = String::new();
    let role = st.role.map_or("starting", |r| r.name());
    _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>keel-agent {id}</title><style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style>\
         </head><body><h1>keel-agent {id}</h1><p>{addr} · role <b>{role}</b> · utilisation {util:.2} · \
         {vms} VMs · {res} reservations · policy v{pv}</p>",
        id = esc(&st.id),
        addr = esc(&st.addr),
        util = st.util,
        vms = st.vms,
        res = st.reservations,
        pv = st.policy_version,
    );
    h.push_str("<h2>Peers</h2><table><tr><th>id</th><th>address</th><th>role</th><th>utilisation</th><th>instability</th></tr>");
    for p in &st.peers {
        let score = p.score.map_or("–".to_string(), |s| format!("{s:.3}"));
        _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
            esc(&p.id),
            esc(&p.addr),
            p.role.name(),
            p.util,
            score
        );
    }
    h.push_str("</table><h2>Recent negotiations</h2><table><tr><th>id</th><th>side</th><th>vm</th><th>peer</th><th>outcome</th><th>ms</th></tr>");
    for r in st.recent.iter().rev() {
        _ = write!(
            h,
            "<tr><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.neg.to_string()),
            r.side,
            esc(&r.vm),
            esc(&r.peer),
            esc(&format!("{:?}", r.outcome)),
            r.elapsed_ms
        );
    }
    let n = &st.negotiation;
    _ = write!(
        h,
        "</table><h2>Counters</h2><p>started {} · migrated {} · rejected {} · timeouts {} · aborted {} · \
         offers {} · retries {} · frames in {} / out {} · refused (mac) {} · oversize {} · duplicates {} · \
         unknown senders {}</p><p>membership (SWIM): {} active · {} up · {} down · refused packets {} · \
         refused records {}</p></body></html>",
        n.started, n.migrated, n.rejected, n.timeouts, n.aborted, n.offers, n.retries,
        st.net.frames_in, st.net.frames_out, st.net.rejected_mac, st.net.rejected_oversize,
        st.net.duplicates, st.unknown_sender, st.membership.active, st.membership.up,
        st.membership.down, st.membership.refused_packets, st.membership.refused_records
    );
    h
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn serves_json_and_html() {
        let (tx, rx) = watch::channel(Status {
            id: "h<1>".into(),
            ..Status::default()
        });
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let addr = serve("127.0.0.1:0".parse().unwrap(), rx, &tracker, stop.clone())
            .await
            .unwrap();
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let j = get("/status").await;
        assert!(j.starts_with("HTTP/1.1 200"), "{j}");
        let body = j.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["id"], "h<1>");
        tx.send_modify(|s| s.util = 0.5);
        let h = get("/").await;
        assert!(h.contains("h&lt;1&gt;") && h.contains("0.50"), "{h}");
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
