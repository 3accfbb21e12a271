//! The SPIFFE Workload API (X.509) on a unix socket: whoever may connect (the socket's mode and
//! directory decide) fetches the X.509-SVIDs, their keys and the mesh's bundle, with a new message
//! on every rotation.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    pin::Pin,
    time::Duration,
};

use futures::Stream;
use meshplane_core::runtime::backoff::Backoff;
use meshplane_dp_api::{
    WORKLOAD_HEADER,
    dp::IdentityUpdate,
    workload::{
        JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse,
        ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
        X509svid, X509svidRequest, X509svidResponse,
        spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer},
    },
};
use tokio::{
    net::UnixListener,
    sync::{mpsc, watch},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// DER bytes of every certificate in a PEM text, concatenated (the Workload API's encoding).
fn der_concat(pems: &[String]) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    for p in pems {
        for block in pem::parse_many(p)
            .map_err(|e| Status::internal(format!("bad PEM from the zone: {e}")))?
        {
            if block.tag() == "CERTIFICATE" {
                out.extend_from_slice(block.contents());
            }
        }
    }
    Ok(out)
}

fn pkcs8_der(key_pem: &str) -> Result<Vec<u8>, Status> {
    let block = pem::parse(key_pem)
        .map_err(|e| Status::internal(format!("bad key PEM from the zone: {e}")))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(Status::internal(format!(
            "the SVID key is {}, not PKCS#8",
            block.tag()
        )));
    }
    Ok(block.contents().to_vec())
}

fn trust_domain(mesh: &str) -> String {
    format!("spiffe://{mesh}")
}

fn svid_response(u: &IdentityUpdate) -> Result<X509svidResponse, Status> {
    let bundle = der_concat(&u.trust_bundle)?;
    let mut svids = Vec::new();
    for s in &u.svids {
        let Some(c) = &s.certificate else { continue };
        let mut chain = vec![c.cert_pem.clone()];
        chain.extend(c.chain_pem.iter().cloned());
        svids.push(X509svid {
            spiffe_id: s.spiffe_id.clone(),
            x509_svid: der_concat(&chain)?,
            x509_svid_key: pkcs8_der(&c.key_pem)?,
            bundle: bundle.clone(),
            hint: String::new(),
        });
    }
    Ok(X509svidResponse {
        svids,
        crl: vec![],
        federated_bundles: HashMap::new(),
    })
}

fn check_header<T>(req: &Request<T>) -> Result<(), Status> {
    match req
        .metadata()
        .get(WORKLOAD_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some("true") => Ok(()),
        _ => Err(Status::invalid_argument(format!(
            "security header {WORKLOAD_HEADER}: true is missing"
        ))),
    }
}

pub struct Api {
    pub state: watch::Receiver<Option<IdentityUpdate>>,
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams `f(update)` for the current update and every later one that has SVIDs.
fn stream<T: Send + 'static>(
    mut state: watch::Receiver<Option<IdentityUpdate>>,
    f: fn(&IdentityUpdate) -> Result<T, Status>,
) -> Out<T> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            let current = state.borrow_and_update().clone();
            if let Some(u) = current.filter(|u| !u.svids.is_empty())
                && tx.send(f(&u)).await.is_err()
            {
                return;
            }
            tokio::select! {
                r = state.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Api {
    type FetchX509SVIDStream = Out<X509svidResponse>;
    type FetchX509BundlesStream = Out<X509BundlesResponse>;
    type FetchJWTBundlesStream = Out<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        req: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        check_header(&req)?;
        Ok(Response::new(stream(self.state.clone(), svid_response)))
    }

    async fn fetch_x509_bundles(
        &self,
        req: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        check_header(&req)?;
        Ok(Response::new(stream(self.state.clone(), |u| {
            Ok(X509BundlesResponse {
                crl: vec![],
                bundles: HashMap::from([(trust_domain(&u.mesh), der_concat(&u.trust_bundle)?)]),
            })
        })))
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        check_header(&req)?;
        Err(Status::unimplemented(
            "JWT-SVIDs are not issued by Meshplane",
        ))
    }

    async fn fetch_jwt_bundles(
        &self,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        check_header(&req)?;
        Err(Status::unimplemented(
            "JWT-SVIDs are not issued by Meshplane",
        ))
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        check_header(&req)?;
        Err(Status::unimplemented(
            "JWT-SVIDs are not issued by Meshplane",
        ))
    }
}

/// Where the API listens: the socket is bound at start, so a bad path or a bind error stops the start
/// with the flag named instead of surfacing at exit. The socket file is removed when this (or the
/// server it is handed to) is dropped.
pub struct Socket {
    listener: UnixListener,
    file: SocketFile,
}

struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds `path` (absolute; its directory is created, a stale socket replaced) and gives the socket
/// exactly `mode`: connecting needs write permission on it, so the mode says who may fetch SVIDs.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<Socket> {
    use anyhow::Context;
    if !path.is_absolute() {
        anyhow::bail!(
            "--workload-api-socket {} must be an absolute path",
            path.display()
        );
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("--workload-api-socket: creating {}", parent.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("--workload-api-socket {}: cannot listen", path.display()))?;
    let file = SocketFile(path.to_path_buf());
    // Until this chmod the socket has the umask's mode; the directory is what keeps others out in
    // between (the systemd unit's RuntimeDirectoryMode=0750).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(
            || {
                format!(
                    "--workload-api-socket-mode: setting {mode:04o} on {}",
                    path.display()
                )
            },
        )?;
    }
    Ok(Socket { listener, file })
}

/// Accepted connections, each behind the `:authority` shim. An accept error (EMFILE, ENFILE,
/// ENOBUFS…) is logged and retried after a short backoff: the listener stays open, so the API
/// serves again as soon as the condition passes.
fn incoming(
    listener: UnixListener,
) -> impl futures::Stream<Item = Result<tokio::io::DuplexStream, std::io::Error>> {
    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    futures::stream::unfold((listener, backoff), |(listener, mut backoff)| async move {
        loop {
            match listener.accept().await {
                Ok((sock, _)) => {
                    backoff.reset();
                    let (client_side, server_side) = tokio::io::duplex(64 * 1024);
                    tokio::spawn(crate::authority::shim(sock, client_side));
                    return Some((Ok(server_side), (listener, backoff)));
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "Workload API: cannot accept a connection");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    })
}

/// Serves the API until `shutdown` resolves; the socket file is removed on the way out.
pub async fn serve(
    socket: Socket,
    state: watch::Receiver<Option<IdentityUpdate>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let Socket { listener, file } = socket;
    tracing::info!(socket = %file.0.display(), "serving the SPIFFE Workload API");
    let result = tonic::transport::Server::builder()
        .add_service(SpiffeWorkloadApiServer::new(Api { state }))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await;
    drop(file);
    result.context("workload API server")
}
