//! The agent's link to its zone: register, watch the identity, write it to disk and hand it to the
//! Workload API; reconnect (and re-register) with jittered backoff whenever the stream breaks, for
//! example across a zone restart.

use std::time::Duration;

use anyhow::{Context, bail};
use meshplane_core::runtime::backoff::Backoff;
use meshplane_dp_api::dp::{
    DeregisterRequest, IdentityUpdate, RegisterRequest, WatchIdentityRequest,
    dataplane_service_client::DataplaneServiceClient,
};
use tokio::sync::watch;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::{args::RunArgs, files, metrics::Metrics};

pub struct Link {
    pub args: RunArgs,
    pub ca: Vec<u8>,
    pub metrics: Metrics,
}

/// gRPC failures as `Code: message`, which is what an operator greps for.
fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn with_token<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("the dataplane token is not a valid header value")?,
    );
    Ok(r)
}

impl Link {
    fn token(&self) -> anyhow::Result<String> {
        let t = std::fs::read_to_string(&self.args.dataplane_token_file).with_context(|| {
            format!(
                "--dataplane-token-file {}",
                self.args.dataplane_token_file.display()
            )
        })?;
        let t = t.trim().to_string();
        if t.is_empty() {
            bail!(
                "--dataplane-token-file {} is empty",
                self.args.dataplane_token_file.display()
            );
        }
        Ok(t)
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        let addr = &self.args.cp_address;
        let rest = addr
            .strip_prefix("https://")
            .with_context(|| format!("--cp-address {addr:?} must start with https://"))?;
        let host = rest
            .rsplit_once(':')
            .map_or(rest, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name(host);
        Endpoint::from_shared(addr.clone())
            .with_context(|| format!("--cp-address {addr:?}"))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| {
                // A refused certificate: what is wrong with the zone's, in words, before the
                // transport's chain.
                let server = meshplane_core::runtime::tls_refusal::Server {
                    name: "the zone's dataplane server",
                    cert_flag: "the zone's --dp-server-tls-cert-file",
                    san_flag: "the zone's --dp-server-tls-san",
                    ca_flag: "--cp-ca-file",
                    address_flag: "--cp-address",
                };
                let words = meshplane_core::runtime::tls_refusal::explain(&e, &server);
                let e = anyhow::Error::new(e).context(format!("connecting to {addr}"));
                match words {
                    Some(w) => e.context(w),
                    None => e,
                }
            })
    }

    /// One session: register, then apply identity updates until the stream ends.
    async fn session(&self, state: &watch::Sender<Option<IdentityUpdate>>) -> anyhow::Result<()> {
        let token = self.token()?;
        let dataplane = std::fs::read(&self.args.dataplane_file)
            .with_context(|| format!("--dataplane-file {}", self.args.dataplane_file.display()))?;
        let mut client = DataplaneServiceClient::new(self.channel().await?);
        let reg = client
            .register(with_token(RegisterRequest { dataplane }, &token)?)
            .await
            .map_err(status)
            .context("registering")?
            .into_inner();
        tracing::info!(mesh = %reg.mesh, dataplane = %reg.name, zone = %reg.zone, "registered");
        let svids = self.args.workload_api_socket.is_some();
        let mut stream = client
            .watch_identity(with_token(WatchIdentityRequest { svids }, &token)?)
            .await
            .map_err(status)
            .context("watching the identity")?
            .into_inner();
        self.metrics.connected.set(1);
        let result = async {
            while let Some(update) = stream.message().await.map_err(status).context("identity stream")? {
                match &update.mesh_certificate {
                    Some(c) => {
                        files::write(&self.args.cert_dir, &update, self.args.key_file_mode.0).with_context(|| format!("writing certificates to {}", self.args.cert_dir.display()))?;
                        self.metrics.rotations.inc();
                        self.metrics.expiry.set(c.not_after_unix);
                        tracing::info!(mesh = %update.mesh, dataplane = %update.dataplane, backend = %c.backend, not_after = c.not_after_unix, svids = update.svids.len(), "identity updated");
                    }
                    None => tracing::warn!(mesh = %update.mesh, dataplane = %update.dataplane, status = %update.status, "no certificate available yet"),
                }
                state.send_replace(Some(update));
            }
            Ok(())
        }
        .await;
        self.metrics.connected.set(0);
        result
    }

    /// Runs sessions forever (until the caller stops polling), backing off between failures.
    pub async fn run(&self, state: watch::Sender<Option<IdentityUpdate>>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            let started = std::time::Instant::now();
            let why = match self.session(&state).await {
                Ok(()) => "the zone closed the stream".to_string(),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(error = %why, retry_in = ?delay, "disconnected from the zone");
            tokio::time::sleep(delay).await;
        }
    }

    /// Deletes the Dataplane at the zone (on shutdown).
    pub async fn deregister(&self) -> anyhow::Result<()> {
        let token = self.token()?;
        let mut client = DataplaneServiceClient::new(self.channel().await?);
        client
            .deregister(with_token(DeregisterRequest {}, &token)?)
            .await
            .map_err(status)
            .context("deregistering")?;
        Ok(())
    }
}
