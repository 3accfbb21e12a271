//! Writes the identity to disk atomically: each file is written to a temporary name in the same
//! directory and renamed, so a reader never sees half a certificate; the key is mode 0600.

use std::{io::Write, path::Path};

use meshplane_dp_api::dp::IdentityUpdate;

fn write_atomic(dir: &Path, name: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    // The mode of an existing temporary file is not reset by open; make sure.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Writes cert.pem (leaf, then chain), key.pem and bundle.pem. Nothing is written without a certificate.
pub fn write(dir: &Path, u: &IdentityUpdate) -> std::io::Result<bool> {
    let Some(c) = &u.mesh_certificate else {
        return Ok(false);
    };
    std::fs::create_dir_all(dir)?;
    let mut cert = c.cert_pem.clone();
    for extra in &c.chain_pem {
        if !cert.ends_with('\n') {
            cert.push('\n');
        }
        cert.push_str(extra);
    }
    write_atomic(dir, "key.pem", c.key_pem.as_bytes(), 0o600)?;
    write_atomic(dir, "cert.pem", cert.as_bytes(), 0o644)?;
    write_atomic(
        dir,
        "bundle.pem",
        u.trust_bundle.join("\n").as_bytes(),
        0o644,
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_dp_api::dp::Certificate;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_three_files_with_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let u = IdentityUpdate {
            mesh_certificate: Some(Certificate {
                cert_pem: "LEAF\n".into(),
                key_pem: "KEY\n".into(),
                chain_pem: vec!["INTER\n".into()],
                ..Default::default()
            }),
            trust_bundle: vec!["ROOT1\n".into(), "ROOT2\n".into()],
            ..Default::default()
        };
        assert!(write(dir.path(), &u).expect("write"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cert.pem")).expect("cert"),
            "LEAF\nINTER\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("bundle.pem")).expect("bundle"),
            "ROOT1\n\nROOT2\n"
        );
        let mode = std::fs::metadata(dir.path().join("key.pem"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!write(dir.path(), &IdentityUpdate::default()).expect("no cert"));
    }
}
