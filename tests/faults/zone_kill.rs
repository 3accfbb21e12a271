//! (e) kill -9 of a zone while it certifies a fleet: every certificate it served before it died
//! is served again, unchanged, after the restart (a certificate is served only once the batch
//! holding it committed; group commit must not change that).

use std::collections::HashMap;

use meshplane_dp_api::dp::{
    RegisterRequest, WatchIdentityRequest, dataplane_service_client::DataplaneServiceClient,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::*;
use crate::checks::*;

const FLEET: usize = 300;

async fn channel(z: &Zone) -> Channel {
    let ca = std::fs::read(z.dp_ca()).expect("dp-server CA");
    let tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    Endpoint::from_shared(z.dp_url())
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect to the dataplane server")
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    r
}

/// Every dataplane registers and watches its identity; each first certificate lands in `served`.
fn fleet(
    ch: &Channel,
    tokens: &[String],
    served: &Arc<Mutex<HashMap<usize, String>>>,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for (i, token) in tokens.iter().enumerate() {
        let (ch, token, served) = (ch.clone(), token.clone(), served.clone());
        set.spawn(async move {
            let mut c = DataplaneServiceClient::new(ch);
            let yaml = dataplane("default", &format!("dp-{i}"), &format!("svc-{i}"));
            loop {
                let reg = c
                    .register(with_token(
                        RegisterRequest {
                            dataplane: yaml.clone().into_bytes(),
                        },
                        &token,
                    ))
                    .await;
                if reg.is_ok()
                    && let Ok(s) = c
                        .watch_identity(with_token(WatchIdentityRequest { svids: false }, &token))
                        .await
                {
                    let mut s = s.into_inner();
                    while let Ok(Some(u)) = s.message().await {
                        if let Some(cert) = u.mesh_certificate {
                            served.lock().expect("served map").entry(i).or_insert(cert.cert_pem);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_zone_while_it_certifies_a_fleet_loses_no_served_certificate() {
    init_test_logging();
    let g = Global::start(Store::Memory, &[]).await.expect("global");
    builtin_default(&g).await;
    let db = migrated_db().await.expect("database");
    let mut z = Zone::start(&g, "zone-1", Store::Postgres(db.url.clone()), &[])
        .await
        .expect("zone");
    let mut tokens = Vec::with_capacity(FLEET);
    for i in 0..FLEET {
        let name = format!("dp-{i}");
        let svc = format!("svc-{i}");
        tokens.push(
            g.dataplane_token("default", &name, Some(&svc))
                .await
                .expect("token"),
        );
    }

    let before = Arc::new(Mutex::new(HashMap::new()));
    let mut agents = fleet(&channel(&z).await, &tokens, &before);
    eventually(WAIT, "a third of the fleet served", || {
        let n = before.lock().unwrap().len();
        async move { (n >= FLEET / 3).then_some(()) }
    })
    .await
    .expect("fleet before the kill");
    z.proc.kill().await;
    agents.abort_all();
    while agents.join_next().await.is_some() {}
    let acknowledged = before.lock().unwrap().clone();
    println!(
        "zone killed with {} of {FLEET} dataplanes served",
        acknowledged.len()
    );

    z.launch()
        .await
        .expect("zone restarted on the same database");
    let after = Arc::new(Mutex::new(HashMap::new()));
    let mut agents = fleet(&channel(&z).await, &tokens, &after);
    eventually(WAIT, "the whole fleet served after the restart", || {
        let n = after.lock().unwrap().len();
        async move { (n == FLEET).then_some(()) }
    })
    .await
    .expect("fleet after the restart");
    agents.abort_all();
    let after = after.lock().unwrap().clone();
    let lost: Vec<usize> = acknowledged
        .iter()
        .filter(|(i, pem)| after.get(i) != Some(pem))
        .map(|(i, _)| *i)
        .collect();
    assert!(
        lost.is_empty(),
        "{} certificates served before the kill were not served again after it (re-issued: they \
         had not been persisted): dataplanes {lost:?}",
        lost.len()
    );
}
