//! An operator's server certificates, made with openssl: global and a zone refuse a bad one at
//! start (a CA certificate as a leaf, names not covered, expired, not yet valid, another
//! certificate's key), each with the cause and an openssl command, and the certificate that command
//! makes serves a zone; a zone dialling a server whose certificate is bad (`openssl s_server`, as a
//! global from before these checks would serve it) logs the cause in words.

use std::path::{Path, PathBuf};

use meshplane_test_support::process::{Proc, bin, free_port};

use super::*;

/// A new P-256 key, unencrypted, in openssl's words.
const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

/// A CA made by openssl, and leaves it signs, in one temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let pki = Self {
            dir: tempfile::tempdir().expect("tmp"),
        };
        let d = pki.dir.path();
        std::fs::create_dir(d.join("db")).expect("db");
        std::fs::write(d.join("db/index.txt"), "").expect("index");
        std::fs::write(d.join("db/serial"), "01\n").expect("serial");
        // `openssl ca` because it alone sets arbitrary validity dates on OpenSSL 3.0; the leaf's
        // extensions come from its request.
        std::fs::write(
            d.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = db/index.txt\nnew_certs_dir = db\n\
             serial = db/serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n\
             unique_subject = no\n[any]\ncommonName = supplied\n",
        )
        .expect("cnf");
        pki.openssl(&format!(
            "req -x509 {EC_KEY} -days 30 -subj /CN=test-ca -keyout ca.key -out ca.pem"
        ));
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs openssl in the PKI's directory with `args`, split at white space (no argument has any).
    fn openssl(&self, args: &str) {
        let argv: Vec<&str> = args.split_whitespace().collect();
        let out = std::process::Command::new("openssl")
            .args(&argv)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A leaf signed by the CA for `san` (openssl's `DNS:a,IP:b`), valid from `start` to `end`
    /// (`YYYYMMDDHHMMSSZ`), or for 30 days from now.
    fn leaf(&self, name: &str, san: &str, dates: Option<(&str, &str)>) -> (PathBuf, PathBuf) {
        self.openssl(&format!(
            "req -new {EC_KEY} -subj /CN=meshplane-test \
             -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth \
             -addext subjectAltName={san} -keyout {name}.key -out {name}.csr"
        ));
        let validity = match dates {
            Some((start, end)) => format!("-startdate {start} -enddate {end}"),
            None => "-days 30".into(),
        };
        self.openssl(&format!(
            "ca -batch -notext -config ca.cnf -cert ca.pem -keyfile ca.key -in {name}.csr \
             -out {name}.crt {validity}"
        ));
        (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        )
    }

    /// What `openssl req -x509` makes unless told otherwise: a self-signed CA:TRUE certificate.
    fn self_signed_ca(&self, name: &str, san: &str) -> (PathBuf, PathBuf) {
        self.openssl(&format!(
            "req -x509 {EC_KEY} -days 30 -subj /CN=meshplane-global \
             -addext subjectAltName={san} -keyout {name}.key -out {name}.crt"
        ));
        (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        )
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// Runs a binary that must refuse to start; returns its stderr.
async fn refused(binary: &str, args: &[&str]) -> String {
    let work = tempfile::tempdir().expect("tmp");
    let mut all = vec![
        "run".to_string(),
        "--api-addr".into(),
        format!("127.0.0.1:{}", free_port()),
        "--work-dir".into(),
        work.path().display().to_string(),
        "--store".into(),
        "memory".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (code, _, err) = run(s(&bin(binary)), &all).await.expect("run");
    assert_ne!(code, 0, "{binary} {args:?} must refuse to start:\n{err}");
    err
}

/// The problems the message lists (`  - ` lines of the printed error).
fn listed(err: &str) -> Vec<&str> {
    err.lines()
        .skip_while(|l| !l.starts_with("error: "))
        .filter(|l| l.starts_with("  - "))
        .collect()
}

/// The openssl command the message gives.
fn fix_command(err: &str) -> Vec<String> {
    let line = err
        .lines()
        .skip_while(|l| !l.starts_with("error: "))
        .find(|l| {
            l.trim_start()
                .starts_with("openssl req -x509 -CA ca.pem -CAkey ca.key")
        })
        .unwrap_or_else(|| panic!("no openssl command in:\n{err}"));
    line.split_whitespace().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_and_zone_refuse_bad_server_certificates_and_the_fix_works() {
    let pki = Pki::new();
    let (good, _) = pki.leaf("good", "DNS:kds.example.com", None);
    let (ca_leaf, ca_leaf_key) = pki.self_signed_ca("ca-leaf", "DNS:kds.example.com");
    let (other, _) = pki.leaf("other", "DNS:other.example.com", None);
    let (expired, expired_key) = pki.leaf(
        "expired",
        "DNS:kds.example.com",
        Some(("20200101000000Z", "20210101000000Z")),
    );
    let (future, future_key) = pki.leaf(
        "future",
        "DNS:kds.example.com",
        Some(("20990101000000Z", "21000101000000Z")),
    );
    let (_, stranger_key) = pki.leaf("stranger", "DNS:kds.example.com", None);
    let kds = |cert: &Path, key: &Path| {
        [
            "--kds-addr".to_string(),
            format!("127.0.0.1:{}", free_port()),
            "--kds-tls-cert-file".into(),
            s(cert).into(),
            "--kds-tls-key-file".into(),
            s(key).into(),
            "--kds-tls-san".into(),
            "kds.example.com".into(),
        ]
    };
    let cases: [(&str, [String; 8], &str); 5] = [
        (
            "a self-signed CA certificate, as `openssl req -x509` makes by default",
            kds(&ca_leaf, &ca_leaf_key),
            "--kds-tls-cert-file: it is a CA certificate (basicConstraints CA:TRUE",
        ),
        (
            "names that do not cover --kds-tls-san",
            kds(&other, &pki.path("other.key")),
            "does not cover kds.example.com from --kds-tls-san",
        ),
        (
            "an expired certificate",
            kds(&expired, &expired_key),
            "--kds-tls-cert-file: it expired at 2021-01-01T00:00:00Z",
        ),
        (
            "a certificate not valid yet",
            kds(&future, &future_key),
            "--kds-tls-cert-file: it is not valid yet (notBefore 2099-01-01T00:00:00Z)",
        ),
        (
            "another certificate's key",
            kds(&good, &stranger_key),
            "--kds-tls-key-file: the key does not belong to the certificate",
        ),
    ];
    for (what, args, cause) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = refused("meshplane-global", &args).await;
        let problems = listed(&err);
        assert!(
            problems.len() == 1 && problems[0].contains(cause),
            "{what}: one problem, {cause:?}:\n{err}"
        );
        assert!(
            err.contains("cannot serve TLS to zones")
                && err.contains("-addext basicConstraints=critical,CA:FALSE")
                && err.contains("-addext subjectAltName=DNS:kds.example.com"),
            "{what}: the fix is given:\n{err}"
        );
        assert!(
            !err.contains("PRIVATE KEY"),
            "{what}: no key material:\n{err}"
        );
        println!("global refused {what}: {}", problems[0].trim());
    }

    // The zone's dataplane server and the API are checked the same way.
    let err = refused(
        "meshplane-zone",
        &[
            "--dp-server-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--dp-server-tls-cert-file",
            s(&ca_leaf),
            "--dp-server-tls-key-file",
            s(&ca_leaf_key),
        ],
    )
    .await;
    assert!(
        err.contains("--dp-server-tls-cert-file: it is a CA certificate")
            && err.contains("cannot serve TLS to dataplane agents")
            && err.contains("--cp-ca-file"),
        "{err}"
    );
    let err = refused(
        "meshplane-global",
        &[
            "--kds-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--api-https-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--api-tls-cert-file",
            s(&expired),
            "--api-tls-key-file",
            s(&expired_key),
        ],
    )
    .await;
    assert!(
        err.contains("--api-tls-cert-file: it expired at 2021-01-01T00:00:00Z"),
        "{err}"
    );

    // The command the message gives, for the names a zone here dials, makes a certificate global
    // accepts and a zone trusting the CA connects to.
    let err = refused(
        "meshplane-global",
        &[
            "--kds-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--kds-tls-cert-file",
            s(&other),
            "--kds-tls-key-file",
            s(&pki.path("other.key")),
            "--kds-tls-san",
            "localhost,127.0.0.1",
        ],
    )
    .await;
    let cmd = fix_command(&err);
    assert!(
        cmd.contains(&"subjectAltName=DNS:localhost,IP:127.0.0.1".to_string()),
        "{cmd:?}"
    );
    pki.openssl(&cmd[1..].join(" "));
    let (fixed, fixed_key) = (pki.path("kds.crt"), pki.path("kds.key"));
    let g = Global::start(
        Store::Memory,
        &[
            "--kds-tls-cert-file",
            s(&fixed),
            "--kds-tls-key-file",
            s(&fixed_key),
            "--kds-tls-san",
            "localhost,127.0.0.1",
        ],
    )
    .await
    .expect("global starts with the certificate the message's command made");
    // The harness gives zones global.kds_ca() as --kds-ca-file: put the operator's CA there.
    std::fs::create_dir_all(&g.work).expect("work");
    std::fs::copy(pki.path("ca.pem"), g.kds_ca()).expect("ca");
    let z = Zone::start(&g, "zone-1", Store::Memory, &[])
        .await
        .expect("a zone trusting the CA connects, syncs and is ready");
    drop(z);
}

/// A zone dialling `address` with `ca` as --kds-ca-file; its log is where the cause must show.
async fn zone_dialling(address: &str, ca: &Path) -> (Proc, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("zone.token");
    // Never sent: the handshake fails first.
    std::fs::write(&token, "not-a-token").expect("token");
    let args: Vec<String> = [
        "run",
        "--zone",
        "zone-1",
        "--global-address",
        address,
        "--kds-ca-file",
        s(ca),
        "--zone-token-file",
        s(&token),
        "--store",
        "memory",
        "--api-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--dp-server-addr",
        &format!("127.0.0.1:{}", free_port()),
        "--work-dir",
        s(&dir.path().join("work")),
        "--kds-reconnect-base",
        "100ms",
        "--kds-reconnect-max",
        "1s",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let p = Proc::spawn("zone", &bin("meshplane-zone"), &args, &[])
        .await
        .expect("zone");
    (p, dir)
}

async fn logged(p: &mut Proc, words: &str) -> String {
    let found = eventually(WAIT, words, || {
        let logs = p.logs();
        async move { logs.contains(words).then_some(logs) }
    })
    .await;
    p.check_running().expect("the zone keeps retrying");
    found.unwrap_or_else(|e| panic!("{e}; zone log:\n{}", p.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_names_the_cause_when_globals_certificate_is_bad() {
    let pki = Pki::new();
    let s_server = |cert: &Path, key: &Path| {
        let port = free_port();
        let args: Vec<String> = [
            "s_server",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            s(cert),
            "-key",
            s(key),
            "-alpn",
            "h2",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        (port, args)
    };

    // `openssl req -x509`'s default, handed to the zone as its CA too: what issue 13 met.
    let (ca_leaf, ca_leaf_key) = pki.self_signed_ca("ca-leaf", "DNS:localhost");
    let (port, args) = s_server(&ca_leaf, &ca_leaf_key);
    let _server = Proc::spawn("s_server", Path::new("openssl"), &args, &[])
        .await
        .expect("s_server");
    let (mut zone, _dir) = zone_dialling(&format!("grpcs://localhost:{port}"), &ca_leaf).await;
    let logs = logged(
        &mut zone,
        "global's certificate is a CA certificate (basicConstraints CA:TRUE)",
    )
    .await;
    assert!(
        logs.contains("CaUsedAsEndEntity"),
        "rustls' code stays: {logs}"
    );
    println!(
        "zone, CA certificate: {}",
        logs.lines().last().unwrap_or_default()
    );
    drop(zone);

    let (expired, expired_key) = pki.leaf(
        "expired",
        "DNS:localhost",
        Some(("20200101000000Z", "20210101000000Z")),
    );
    let (port, args) = s_server(&expired, &expired_key);
    let _server = Proc::spawn("s_server", Path::new("openssl"), &args, &[])
        .await
        .expect("s_server");
    let (mut zone, _dir) =
        zone_dialling(&format!("grpcs://localhost:{port}"), &pki.path("ca.pem")).await;
    logged(
        &mut zone,
        "global's certificate expired at 2021-01-01T00:00:00Z",
    )
    .await;
    drop(zone);

    // A real global whose certificate lacks the name the zone dials.
    let (ip_only, ip_only_key) = pki.leaf("ip-only", "IP:127.0.0.1", None);
    let g = Global::start(
        Store::Memory,
        &[
            "--kds-tls-cert-file",
            s(&ip_only),
            "--kds-tls-key-file",
            s(&ip_only_key),
        ],
    )
    .await
    .expect("global");
    let (mut zone, _dir) = zone_dialling(
        &format!("grpcs://localhost:{}", g.kds_port),
        &pki.path("ca.pem"),
    )
    .await;
    logged(
        &mut zone,
        "global's certificate does not name localhost (the host of --global-address); it names IP:127.0.0.1",
    )
    .await;
}
