//! Optimistic concurrency and owner cascades.

use super::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_with_the_same_version_one_wins_the_other_gets_409() {
    let (_db, g) = pg_global(&[]).await;
    let api = &g.api;
    put_expect(
        api,
        "/meshes/race",
        &json!({"type": "Mesh", "name": "race"}),
        201,
    )
    .await;

    for round in 0..5 {
        let (_, v) = get_with_version(api, "/meshes/race").await;
        let body = |writer: &str| json!({"type": "Mesh", "name": "race", "labels": {"writer": writer, "round": round.to_string()}});
        let (a, b) = (body("a"), body("b"));
        let etag = format!("\"{v}\"");
        let (ra, rb) = tokio::join!(
            put_if_match(api, "/meshes/race", &etag, &a),
            put_if_match(api, "/meshes/race", &etag, &b)
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: exactly one writer wins: {ra:?} {rb:?}"
        );
        let (winner, loser) = if ra.0 == 200 { (&a, &rb) } else { (&b, &ra) };
        assert_error_body(&loser.1, 409, "Conflict");
        let (stored, v_after) = get_with_version(api, "/meshes/race").await;
        assert_eq!(without_times(stored), *winner, "round {round}");
        assert_eq!(v_after, v + 1, "round {round}: exactly one write happened");
    }

    // A stale If-Match is refused and changes nothing; the current one is accepted.
    let (before, v) = get_with_version(api, "/meshes/race").await;
    let stale = json!({"type": "Mesh", "name": "race", "labels": {"writer": "stale"}});
    let (s, b) = put_if_match(api, "/meshes/race", &format!("\"{}\"", v - 1), &stale).await;
    assert_eq!(s, 409, "{b}");
    assert_error_body(&b, 409, "Conflict");
    assert_eq!(get_with_version(api, "/meshes/race").await, (before, v));
    let (s, b) = put_if_match(api, "/meshes/race", &format!("\"{v}\""), &stale).await;
    assert_eq!(s, 200, "{b}");
    // Stale DELETE too.
    let r = api
        .request(Method::DELETE, "/meshes/race")
        .header("if-match", format!("\"{v}\""))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(get_status(api, "/meshes/race").await, 200);
    // If-Match on a resource that does not exist, and a malformed If-Match.
    let (s, _) = put_if_match(
        api,
        "/meshes/ghost",
        "\"1\"",
        &json!({"type": "Mesh", "name": "ghost"}),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(get_status(api, "/meshes/ghost").await, 404);
    let (s, b) = put_if_match(api, "/meshes/race", "\"abc\"", &stale).await;
    assert_eq!(s, 400, "{b}");

    // Without If-Match, concurrent writers never lose an update silently: every 200 is one version.
    let (_, v0) = get_with_version(api, "/meshes/race").await;
    let writes = (0..8).map(|i| {
        let api = api.clone();
        async move {
            api.put(
                "/meshes/race",
                &json!({"type": "Mesh", "name": "race", "labels": {"writer": format!("w{i}")}}),
            )
            .await
            .expect("put")
            .0
        }
    });
    let statuses: Vec<u16> = futures_join_all(writes).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    assert!(ok >= 1, "{statuses:?}");
    let (_, v_end) = get_with_version(api, "/meshes/race").await;
    assert_eq!(v_end, v0 + ok, "{statuses:?}");

    // Concurrent creates of one new name: exactly one 201.
    let creates = (0..4).map(|_| {
        let api = api.clone();
        async move {
            api.put("/meshes/fresh", &json!({"type": "Mesh", "name": "fresh"}))
                .await
                .expect("put")
                .0
        }
    });
    let statuses = futures_join_all(creates).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 201, 409].contains(s)),
        "{statuses:?}"
    );
}

/// Runs futures concurrently on the test's runtime and collects their outputs in order.
async fn futures_join_all<F, T>(futs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Cascade, in-use protection, durability
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_mesh_deletes_its_secrets_and_used_secrets_are_protected() {
    let (db, g) = pg_global(&[]).await;
    let api = &g.api;
    put_expect(
        api,
        "/meshes/cascade",
        &json!({"type": "Mesh", "name": "cascade", "mtls": {"enabledBackend": "ca-1",
            "backends": [{"name": "ca-1", "type": "builtin"}]}}),
        201,
    )
    .await;
    for s in ["s-1", "s-2"] {
        put_expect(
            api,
            &format!("/meshes/cascade/secrets/{s}"),
            &json!({"type": "Secret", "mesh": "cascade", "name": s, "data": "eA=="}),
            201,
        )
        .await;
    }
    put_expect(
        api,
        "/meshes/default/secrets/keep",
        &json!({"type": "Secret", "mesh": "default", "name": "keep", "data": "eA=="}),
        201,
    )
    .await;
    let list = get_ok(api, "/meshes/cascade/secrets").await;
    assert_eq!(
        list["total"], 4,
        "two builtin CA secrets and two user secrets: {list}"
    );

    // The builtin CA's secret is in use: Kuma's message, and it stays.
    let (s, b) = api
        .delete("/meshes/cascade/secrets/cascade.ca-builtin-cert-ca-1")
        .await
        .expect("delete");
    assert_invalid(
        s,
        &b,
        &[(
            "name",
            "The secret \"cascade.ca-builtin-cert-ca-1\" that you are trying to remove is currently in use in Mesh \"cascade\" in mTLS backend \"ca-1\". Please remove the reference from the \"ca-1\" backend before removing the secret.",
        )],
    );
    assert_eq!(
        get_status(api, "/meshes/cascade/secrets/cascade.ca-builtin-cert-ca-1").await,
        200
    );
    // An unused secret can go.
    let (s, _) = api
        .delete("/meshes/cascade/secrets/s-2")
        .await
        .expect("delete");
    assert_eq!(s, 200);
    assert_eq!(get_status(api, "/meshes/cascade/secrets/s-2").await, 404);

    let (s, b) = api.delete("/meshes/cascade").await.expect("delete mesh");
    assert_eq!(s, 200, "{b}");
    assert_eq!(get_status(api, "/meshes/cascade").await, 404);
    for secret in [
        "s-1",
        "cascade.ca-builtin-cert-ca-1",
        "cascade.ca-builtin-key-ca-1",
    ] {
        assert_eq!(
            get_status(api, &format!("/meshes/cascade/secrets/{secret}")).await,
            404,
            "{secret} went with its Mesh"
        );
    }
    assert_eq!(get_ok(api, "/meshes/cascade/secrets").await["total"], 0);
    // Nothing of the Mesh is left in the database; other meshes' secrets are untouched.
    let mut conn = PgConnection::connect(&db.url).await.expect("connect");
    let (left,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM resources WHERE mesh = 'cascade' OR name = 'cascade'")
            .fetch_one(&mut conn)
            .await
            .expect("count");
    assert_eq!(left, 0);
    assert_eq!(get_status(api, "/meshes/default/secrets/keep").await, 200);
    // The Mesh can be created again, and gets a fresh CA.
    put_expect(
        api,
        "/meshes/cascade",
        &json!({"type": "Mesh", "name": "cascade"}),
        201,
    )
    .await;
    assert_eq!(get_ok(api, "/meshes/cascade/secrets").await["total"], 0);
}
