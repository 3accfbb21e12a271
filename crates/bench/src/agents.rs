//! Simulated dataplane agents over the real dataplane API: each calls `Register` and then
//! `WatchIdentity` with its own dataplane token, retries with the real agent's backoff (200 ms
//! doubling to 15 s, jittered) when the zone refuses or fails, reports the moment its first
//! certificate arrives, and keeps its identity stream open until told to stop. Agents share a few
//! HTTP/2 channels (≤ 100 streams each) instead of one TLS connection per agent.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use meshplane_core::runtime::backoff::Backoff;
use meshplane_dp_api::dp::{
    Certificate, RegisterRequest, WatchIdentityRequest,
    dataplane_service_client::DataplaneServiceClient,
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::Instant,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Streams per shared channel.
pub const STREAMS_PER_CHANNEL: usize = 100;

/// What an agent reports once it holds a certificate.
pub struct Served {
    pub index: usize,
    pub at: Instant,
    /// When its last successful Register returned.
    pub registered_at: Instant,
    pub cert: Certificate,
    /// Register/WatchIdentity attempts before it was served (1 = first try).
    pub attempts: u32,
}

pub struct Agent {
    pub index: usize,
    pub token: String,
    /// The Dataplane in universal JSON.
    pub dataplane: Vec<u8>,
}

pub async fn channels(port: u16, ca_pem: &[u8], agents: usize) -> anyhow::Result<Vec<Channel>> {
    let n = agents.div_ceil(STREAMS_PER_CHANNEL).max(1);
    let tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let ep = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_while_idle(true);
    let mut set = JoinSet::new();
    for _ in 0..n {
        let ep = ep.clone();
        set.spawn(async move { ep.connect().await });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r?.context("connecting to the zone's dataplane server")?);
    }
    Ok(out)
}

fn with_token<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

type IdentityStream = tonic::Streaming<meshplane_dp_api::dp::IdentityUpdate>;

/// One attempt: register, watch, wait for a certificate (and when Register returned).
async fn attempt(
    client: &mut DataplaneServiceClient<Channel>,
    a: &Agent,
) -> anyhow::Result<(Certificate, Instant, IdentityStream)> {
    client
        .register(with_token(
            RegisterRequest {
                dataplane: a.dataplane.clone(),
            },
            &a.token,
        )?)
        .await
        .map_err(|s| anyhow::anyhow!("register: {:?}: {}", s.code(), s.message()))?;
    let registered = Instant::now();
    let mut stream = client
        .watch_identity(with_token(WatchIdentityRequest { svids: false }, &a.token)?)
        .await
        .map_err(|s| anyhow::anyhow!("watch: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    loop {
        match stream.message().await {
            Ok(Some(u)) => {
                if let Some(c) = u.mesh_certificate {
                    return Ok((c, registered, stream));
                }
            }
            Ok(None) => anyhow::bail!("identity stream ended before a certificate"),
            Err(s) => anyhow::bail!("identity stream: {:?}: {}", s.code(), s.message()),
        }
    }
}

/// Runs `agents` at once over `channels`; reports go to `tx`, failures to `errors`.
pub fn start(
    agents: Vec<Agent>,
    channels: &[Channel],
    tx: mpsc::UnboundedSender<Served>,
    errors: mpsc::UnboundedSender<String>,
    stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let agents: Vec<Arc<Agent>> = agents.into_iter().map(Arc::new).collect();
    for (k, a) in agents.into_iter().enumerate() {
        let ch = channels[k % channels.len()].clone();
        let (tx, errors, mut stop) = (tx.clone(), errors.clone(), stop.clone());
        set.spawn(async move {
            let mut client = DataplaneServiceClient::new(ch);
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                match attempt(&mut client, &a).await {
                    Ok((cert, registered_at, mut stream)) => {
                        let _ = tx.send(Served {
                            index: a.index,
                            at: Instant::now(),
                            registered_at,
                            cert,
                            attempts,
                        });
                        // Hold the stream open, as a running agent does.
                        loop {
                            tokio::select! {
                                _ = stop.changed() => return,
                                m = stream.message() => if !matches!(m, Ok(Some(_))) { return },
                            }
                        }
                    }
                    Err(e) => {
                        let _ = errors.send(format!("{e:#}"));
                        tokio::select! {
                            _ = stop.changed() => return,
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                        }
                    }
                }
            }
        });
    }
    set
}
