//! Restarts, the schema gate, health and readiness, and the memory store.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_survive_a_global_restart() {
    let (_db, mut g) = pg_global(&[]).await;
    let mesh = json!({"type": "Mesh", "name": "durable", "labels": {"team": "core"},
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin",
            "dpCert": {"rotation": {"expiration": "2h"}}}]}});
    put_expect(&g.api, "/meshes/durable", &mesh, 201).await;
    let resources = [
        "/meshes/default",
        "/meshes/durable",
        "/meshes/durable/secrets/user",
        "/meshes/durable/secrets/durable.ca-builtin-cert-ca-1",
        "/meshes/durable/secrets/durable.ca-builtin-key-ca-1",
        "/global-secrets/gs",
        "/zones/east",
    ];
    put_expect(
        &g.api,
        resources[2],
        &json!({"type": "Secret", "mesh": "durable", "name": "user", "data": "dXNlcg=="}),
        201,
    )
    .await;
    put_expect(
        &g.api,
        resources[5],
        &json!({"type": "GlobalSecret", "name": "gs", "data": "Z3M="}),
        201,
    )
    .await;
    put_expect(
        &g.api,
        resources[6],
        &json!({"type": "Zone", "name": "east"}),
        201,
    )
    .await;
    let mut before = Vec::new();
    for p in resources {
        before.push(get_with_version(&g.api, p).await);
    }

    let code = g.proc.terminate(WAIT).await.expect("terminate");
    assert_eq!(code, Some(0), "graceful shutdown on SIGTERM");
    assert!(
        reqwest::get(format!("{}/healthz", g.api.base))
            .await
            .is_err(),
        "the API is down"
    );
    g.launch().await.expect("restart");

    for (p, want) in resources.iter().zip(before) {
        assert_eq!(
            get_with_version(&g.api, p).await,
            want,
            "{p} unchanged, times, version and CA material included"
        );
    }
    assert_eq!(get_ok(&g.api, "/meshes").await["total"], 2);
}

// ---------------------------------------------------------------------------------------------
// Schema gate and migrations
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_unmigrated_and_newer_schemas_and_migrate_up_is_idempotent() {
    let db = TestDatabase::create().await.expect("database");
    let api_addr = format!("127.0.0.1:{}", free_port());
    let work = tempfile::tempdir().expect("dir");
    let work_dir = work.path().display().to_string();
    let kds_addr = format!("127.0.0.1:{}", free_port());
    let key_file = encryption_key_file(&db.url).display().to_string();
    let run_args = [
        "run",
        "--database-url",
        db.url.as_str(),
        "--encryption-key-file",
        key_file.as_str(),
        "--api-addr",
        api_addr.as_str(),
        "--kds-addr",
        kds_addr.as_str(),
        "--work-dir",
        work_dir.as_str(),
    ];

    let (code, _, stderr) = global_cli(&run_args).await;
    assert_ne!(code, 0, "run on an unmigrated database must fail: {stderr}");
    assert!(
        stderr.contains("not migrated") && stderr.contains("meshplane-global migrate up"),
        "says what to run: {stderr}"
    );
    // It created nothing.
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(tables, 0, "run never migrates by itself");

    let (code, stdout, stderr) = global_cli(&["migrate", "up", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "{stderr}");
    let applied: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("applied migration "))
        .collect();
    let mut embedded: Vec<String> = std::fs::read_dir(repo_root().join("migrations"))
        .expect("migrations dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.ends_with(".sql")
                .then(|| name.split('_').next().unwrap_or("").to_string())
        })
        .collect();
    embedded.sort();
    assert_eq!(applied, embedded, "prints each migration applied: {stdout}");
    let (code, stdout, stderr) = global_cli(&["migrate", "up", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "database is up to date");
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(rows as usize, embedded.len());

    // Migrated: run serves.
    let mut g = Global::start(Store::Postgres(db.url.clone()), &[])
        .await
        .expect("global on the migrated database");
    assert_eq!(get_status(&g.api, "/meshes/default").await, 200);
    assert_eq!(g.proc.terminate(WAIT).await.expect("stop"), Some(0));

    // A schema newer than this binary: refused by run (and by migrate up), saying so.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', true, '\\x00'::bytea, 0)",
    )
    .execute(&mut conn)
    .await
    .expect("insert a newer migration");
    let (code, _, stderr) = global_cli(&run_args).await;
    assert_ne!(code, 0, "run on a newer schema must fail");
    assert!(
        stderr.contains("newer") && stderr.contains("99990101000000"),
        "{stderr}"
    );
    let (code, _, stderr) = global_cli(&["migrate", "up", "--database-url", &db.url]).await;
    assert_ne!(code, 0, "migrate up must not touch a newer schema");
    assert!(stderr.contains("newer"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_index_and_graceful_shutdown() {
    let (db, mut g) = pg_global(&["--instance-id", "global-test-1"]).await;
    let api = g.api.clone();
    let (s, b) = api.get("/healthz").await.expect("healthz");
    assert_eq!((s, b), (200, json!({"status": "ok"})));
    let (s, b) = api.get("/readyz").await.expect("readyz");
    assert_eq!((s, b), (200, json!({"ready": true})));
    let index = get_ok(&api, "/").await;
    assert_eq!(index["product"], "Meshplane", "{index}");
    assert_eq!(index["version"], env!("CARGO_PKG_VERSION"), "{index}");
    assert_eq!(index["instanceId"], "global-test-1", "{index}");
    assert_eq!(index["mode"], "global", "{index}");
    assert!(
        index["store"].as_str().unwrap_or("").contains("postgres"),
        "{index}"
    );
    let (s, b) = api.get("/no/such/path").await.expect("get");
    assert_eq!(s, 404);
    assert_error_body(&b, 404, "Not found");

    // Readiness follows the store: block the database, then let it back. (A database cannot
    // refuse connections to itself, so this runs from the server's `postgres` database.)
    let admin_url = db.url.replacen(&format!("/{}", db.name), "/postgres", 1);
    let mut admin = PgConnection::connect(&admin_url).await.expect("connect");
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
        db.name
    ))
    .execute(&mut admin)
    .await
    .expect("block");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&mut admin)
    .await
    .expect("terminate the global's connections");
    eventually(WAIT, "/readyz to answer 503 without its store", || async {
        let (s, b) = api.get("/readyz").await.ok()?;
        (s == 503).then_some(b)
    })
    .await
    .expect("not ready");
    let (s, _) = api.get("/healthz").await.expect("healthz");
    assert_eq!(s, 200, "alive even though not ready");
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
        db.name
    ))
    .execute(&mut admin)
    .await
    .expect("unblock");
    eventually(WAIT, "/readyz to recover with its store", || async {
        let (s, _) = api.get("/readyz").await.ok()?;
        (s == 200).then_some(())
    })
    .await
    .expect("ready again");
    put_expect(
        &api,
        "/meshes/after",
        &json!({"type": "Mesh", "name": "after"}),
        201,
    )
    .await;

    let code = g.proc.terminate(WAIT).await.expect("terminate");
    assert_eq!(code, Some(0), "SIGTERM is a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_memory_store_serves_the_same_api() {
    let mut g = Global::start(Store::Memory, &[]).await.expect("global");
    let api = g.api.clone();
    let index = get_ok(&api, "/").await;
    assert_eq!(index["store"], "memory", "{index}");
    assert_eq!(
        get_ok(&api, "/meshes").await["total"],
        1,
        "the default Mesh"
    );

    let text = example("mesh-builtin.yaml");
    let (s, b) = api
        .put_raw(
            "/meshes/default",
            "application/yaml",
            text.clone().into_bytes(),
        )
        .await
        .expect("put yaml");
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        without_times(get_ok(&api, "/meshes/default").await),
        yaml(&text)
    );
    put_expect(
        &api,
        "/meshes/m1",
        &json!({"type": "Mesh", "name": "m1"}),
        201,
    )
    .await;
    put_expect(
        &api,
        "/meshes/m1",
        &json!({"type": "Mesh", "name": "m1"}),
        200,
    )
    .await;
    put_expect(
        &api,
        "/meshes/m1/secrets/s",
        &json!({"type": "Secret", "mesh": "m1", "name": "s", "data": "eA=="}),
        201,
    )
    .await;
    let page = get_ok(&api, "/meshes?size=1").await;
    assert_eq!(page["total"], 2);
    assert!(page["next"].is_string(), "{page}");
    let (s, b) = api
        .put("/meshes/m1", &json!({"type": "Mesh", "name": "m1", "x": 1}))
        .await
        .expect("put");
    assert_invalid(s, &b, &[("x", "unknown field")]);
    let (s, b) = api
        .delete("/meshes/default/secrets/default.ca-builtin-key-ca-1")
        .await
        .expect("delete");
    assert_eq!(s, 400, "{b}");
    assert!(
        violations(&b)[0]
            .1
            .starts_with("The secret \"default.ca-builtin-key-ca-1\" that you are trying to remove is currently in use in Mesh \"default\""),
        "{b}"
    );
    let (s, _) = api.delete("/meshes/m1").await.expect("delete");
    assert_eq!(s, 200);
    assert_eq!(get_status(&api, "/meshes/m1/secrets/s").await, 404);
    assert_eq!(get_status(&api, "/meshes/m1").await, 404);
    // Memory means memory: a restart starts over with only the default Mesh.
    put_expect(
        &api,
        "/meshes/m2",
        &json!({"type": "Mesh", "name": "m2"}),
        201,
    )
    .await;
    assert_eq!(g.proc.terminate(WAIT).await.expect("stop"), Some(0));
    g.launch().await.expect("restart");
    assert_eq!(get_status(&g.api, "/meshes/m2").await, 404);
    let (s, m) = g.api.get("/meshes/default").await.expect("get");
    assert_eq!(s, 200);
    assert!(m.get("mtls").is_none(), "{m}");
}

/// A Mesh whose CA Secrets were lost behind global's back (an incomplete restore, a hand edit) is
/// reported at start with what to do, and an update never mints a new CA for it: a new CA would
/// silently break the trust of every dataplane in the Mesh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_that_lost_its_ca_secrets_is_reported_at_start_and_never_regenerated() {
    let (db, mut g) = pg_global(&[]).await;
    let mesh = json!({"type": "Mesh", "name": "lost",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}});
    put_expect(&g.api, "/meshes/lost", &mesh, 201).await;
    assert!(
        g.proc
            .logs()
            .contains("every Mesh has the Secrets its CA backends read"),
        "a clean store is reported clean at start"
    );
    assert_eq!(g.proc.terminate(WAIT).await.expect("terminate"), Some(0));
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let gone = sqlx::query("DELETE FROM resources WHERE type = 'Secret' AND mesh = 'lost'")
        .execute(&mut conn)
        .await
        .expect("delete the CA Secrets")
        .rows_affected();
    assert_eq!(gone, 2);
    let _ = conn.close().await;

    g.launch().await.expect("restart");
    let logs = g.proc.logs();
    for needle in [
        "store invariant violated at global",
        "lost.ca-builtin-cert-ca-1",
        "lost.ca-builtin-key-ca-1",
        "restore the missing Secret(s) from a backup",
    ] {
        assert!(
            logs.contains(needle),
            "the start-up report names {needle:?}:\n{logs}"
        );
    }

    let (status, body) = g.api.put("/meshes/lost", &mesh).await.expect("PUT");
    assert_eq!(status, 400, "{body}");
    let reason = body["invalid_parameters"][0]["reason"]
        .as_str()
        .unwrap_or("");
    assert_eq!(
        body["invalid_parameters"][0]["field"], "mtls.backends[0]",
        "{body}"
    );
    assert!(
        reason.contains("is not regenerated") && reason.contains("restore"),
        "{body}"
    );
    let (status, _) = g
        .api
        .get("/meshes/lost/secrets/lost.ca-builtin-cert-ca-1")
        .await
        .expect("GET");
    assert_eq!(
        status, 404,
        "no CA was generated behind the operator's back"
    );
}
