//! Turns the certificate manager's watches into a stream of full identity updates: one message when
//! anything the dataplane holds changes (its certificate, an SVID, or the mesh's trust bundle).

use std::sync::Arc;

use meshplane_dp_api::dp::{Certificate, IdentityUpdate, Svid};
use meshplane_identity::{CertKey, CertManager, CertState, Identity, MeshTrust, Profile};
use tokio::sync::{mpsc, watch};
use tonic::Status;

pub fn cert(id: &Identity) -> Certificate {
    Certificate {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        chain_pem: id.chain_pem.to_vec(),
        not_before_unix: id.not_before.timestamp(),
        not_after_unix: id.not_after.timestamp(),
        backend: id.backend.clone(),
    }
}

fn status(state: &CertState) -> String {
    match state {
        CertState::Pending => "pending".into(),
        CertState::Ready(_) => "ready".into(),
        CertState::Unavailable(r) => format!("unavailable: {r}"),
    }
}

fn build(
    keys: &[CertKey],
    states: &[watch::Receiver<CertState>],
    trust: &MeshTrust,
) -> IdentityUpdate {
    let mut u = IdentityUpdate {
        mesh: keys[0].mesh.clone(),
        dataplane: keys[0].dataplane.clone(),
        trust_bundle: trust.roots.clone(),
        ..Default::default()
    };
    for (k, rx) in keys.iter().zip(states) {
        let st = rx.borrow().clone();
        match &k.profile {
            Profile::Mesh => {
                u.status = status(&st);
                u.mesh_certificate = st.identity().map(|i| cert(i));
            }
            Profile::Svid(service) => {
                if let Some(i) = st.identity() {
                    u.svids.push(Svid {
                        spiffe_id: meshplane_core::ca::identity::spiffe_id(&k.mesh, service),
                        certificate: Some(cert(i)),
                    });
                }
            }
        }
    }
    u
}

/// The same state for the stream's purpose: the same certificate (by identity of its `Arc`), or
/// the same status.
fn same_state(a: &CertState, b: &CertState) -> bool {
    match (a, b) {
        (CertState::Ready(x), CertState::Ready(y)) => Arc::ptr_eq(x, y),
        _ => a == b,
    }
}

/// Sends an update whenever something changes, until the receiver goes away or the zone drains.
pub async fn identity_stream(
    certs: &CertManager,
    keys: Vec<CertKey>,
    tx: mpsc::Sender<Result<IdentityUpdate, Status>>,
    drain: drain::Watch,
) {
    let mut states: Vec<watch::Receiver<CertState>> = keys.iter().map(|k| certs.watch(k)).collect();
    let mut trust = certs.trust(&keys[0].mesh);
    let drained = drain.signaled();
    tokio::pin!(drained);
    // What the last message was built from: the states themselves (an `Arc` or a reason each)
    // and the bundle's `Arc`, not the message, which would keep a copy of the certificate, key and
    // bundle per stream.
    let mut last: Option<(Vec<CertState>, Arc<MeshTrust>)> = None;
    loop {
        let now: Vec<CertState> = states.iter().map(|rx| rx.borrow().clone()).collect();
        let bundle = trust.borrow().clone();
        let same = last.as_ref().is_some_and(|(s, t)| {
            (Arc::ptr_eq(t, &bundle) || t.roots == bundle.roots)
                && s.len() == now.len()
                && s.iter().zip(&now).all(|(a, b)| same_state(a, b))
        });
        if !same {
            let update = build(&keys, &states, &bundle);
            // Only full states with something to use are worth a message; pending ones are skipped.
            let worth =
                update.mesh_certificate.is_some() || update.status.starts_with("unavailable");
            if worth {
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
                last = Some((now, bundle));
            }
        }
        let changed = futures::future::select_all(states.iter_mut().map(|s| Box::pin(s.changed())));
        tokio::select! {
            (r, _, _) = changed => if r.is_err() { return },
            r = trust.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
            _release = &mut drained => return,
        }
    }
}
