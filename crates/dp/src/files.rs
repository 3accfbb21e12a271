//! Writes the identity to disk the way Kubernetes' AtomicWriter fills a projected volume, so that a
//! reader never sees a new key with the old certificate:
//!
//! ```text
//! <cert-dir>/..2025_01_31_10_00_00.123456789/{cert.pem,key.pem,bundle.pem}   this rotation's set
//! <cert-dir>/..data -> ..2025_01_31_10_00_00.123456789                         swapped by one rename
//! <cert-dir>/cert.pem -> ..data/cert.pem   (and key.pem, bundle.pem; created once)
//! ```
//!
//! Each rotation writes a fresh timestamped directory, points a new symlink at it under a temporary
//! name and renames that over `..data`, then removes the previous directory. The key gets exactly
//! `--key-file-mode` (0600, or 0640 to share it with the agent's group), whatever the umask; the
//! certificates 0644. Directories follow the umask, so who can reach the files at all is the
//! directory's owner's choice (the systemd unit's UMask= and RuntimeDirectoryMode=).

use std::{io::Write, path::Path};

use meshplane_dp_api::dp::IdentityUpdate;

/// The symlink to the current set.
const DATA: &str = "..data";
/// The name the next `..data` is created under before it is renamed into place.
const DATA_TMP: &str = "..data_tmp";

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode)
        .open(path)?;
    // The umask may have taken bits away from the mode given to open; the mode must be exact, since
    // a group reading the key is the point of 0640.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Whether `name` is one of the timestamped directories this module creates.
fn is_set_dir(name: &str) -> bool {
    name.strip_prefix("..")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// Creates `..<UTC timestamp>` in `dir` (with a suffix if that name is taken) and returns its name.
fn create_set_dir(dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::DirBuilderExt;
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%9f")
        .to_string();
    let mut n = 0u32;
    loop {
        let name = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}_{n}")
        };
        match std::fs::DirBuilder::new()
            .mode(0o755)
            .create(dir.join(&name))
        {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Points `link` at `target` with one rename, whatever `link` was before (a symlink, a regular file
/// written by an older agent, or nothing).
fn replace_symlink(dir: &Path, tmp_name: &str, target: &Path, link: &Path) -> std::io::Result<()> {
    let tmp = dir.join(tmp_name);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// Writes cert.pem (leaf, then chain), key.pem (`key_mode`) and bundle.pem as one set. Nothing is
/// written without a certificate.
pub fn write(dir: &Path, u: &IdentityUpdate, key_mode: u32) -> std::io::Result<bool> {
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
    let bundle = u.trust_bundle.join("\n");
    let files: [(&str, &[u8], u32); 3] = [
        ("cert.pem", cert.as_bytes(), 0o644),
        ("key.pem", c.key_pem.as_bytes(), key_mode),
        ("bundle.pem", bundle.as_bytes(), 0o644),
    ];

    // 1. The new set, in a directory of its own that no reader knows yet.
    let set = create_set_dir(dir)?;
    let written = files
        .iter()
        .try_for_each(|(name, data, mode)| write_file(&dir.join(&set).join(name), data, *mode))
        .and_then(|()| sync_dir(&dir.join(&set)));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(dir.join(&set));
        return Err(e);
    }

    // 2. The swap: every reader resolving ..data from now on sees the whole new set.
    if let Err(e) = replace_symlink(dir, DATA_TMP, Path::new(&set), &dir.join(DATA)) {
        let _ = std::fs::remove_dir_all(dir.join(&set));
        return Err(e);
    }

    // 3. The names users know, once (this also converts the regular files of an older agent).
    for (name, _, _) in files {
        let target = Path::new(DATA).join(name);
        let link = dir.join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            replace_symlink(dir, &format!(".{name}.tmp"), &target, &link)?;
        }
    }
    sync_dir(dir)?;

    // 4. The previous set (and any a crash left behind): no new reader can reach it any more.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_set_dir(name) && name != set && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshplane_dp_api::dp::Certificate;
    use std::os::unix::fs::PermissionsExt;

    fn update(cert: &str, key: &str, bundle: &str) -> IdentityUpdate {
        IdentityUpdate {
            mesh_certificate: Some(Certificate {
                cert_pem: cert.into(),
                key_pem: key.into(),
                ..Default::default()
            }),
            trust_bundle: vec![bundle.into()],
            ..Default::default()
        }
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).expect(name)
    }

    /// The timestamped set directories in `dir`.
    fn sets(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .filter(|n| is_set_dir(n))
            .collect();
        v.sort();
        v
    }

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
        assert!(write(dir.path(), &u, 0o600).expect("write"));
        assert_eq!(read(dir.path(), "cert.pem"), "LEAF\nINTER\n");
        assert_eq!(read(dir.path(), "bundle.pem"), "ROOT1\n\nROOT2\n");
        let mode = std::fs::metadata(dir.path().join("key.pem"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!write(dir.path(), &IdentityUpdate::default(), 0o600).expect("no cert"));
    }

    #[test]
    fn a_key_shared_with_the_group_has_exactly_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &update("CERT", "KEY", "ROOT"), 0o640).expect("write");
        for (name, want) in [
            ("key.pem", 0o640),
            ("cert.pem", 0o644),
            ("bundle.pem", 0o644),
        ] {
            let mode = std::fs::metadata(dir.path().join(name))
                .expect(name)
                .permissions()
                .mode()
                & 0o7777;
            assert_eq!(mode, want, "{name}: {mode:o}");
        }
    }

    #[test]
    fn a_rotation_swaps_the_whole_set_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write(d, &update("CERT1", "KEY1", "ROOT1"), 0o600).expect("first");
        let first = std::fs::read_link(d.join(DATA)).expect("..data is a symlink");
        assert_eq!(sets(d), vec![first.display().to_string()]);
        write(d, &update("CERT2", "KEY2", "ROOT2"), 0o600).expect("second");
        let second = std::fs::read_link(d.join(DATA)).expect("..data");
        assert_ne!(first, second, "..data points at a new directory");
        assert_eq!(
            sets(d),
            vec![second.display().to_string()],
            "the previous set is removed"
        );
        for (name, want) in [
            ("cert.pem", "CERT2"),
            ("key.pem", "KEY2"),
            ("bundle.pem", "ROOT2"),
        ] {
            assert_eq!(
                std::fs::read_link(d.join(name)).expect("a symlink"),
                Path::new(DATA).join(name),
                "{name} goes through ..data"
            );
            assert_eq!(read(&d.join(&second), name), want);
            assert_eq!(read(d, name), want);
        }
        let mode = std::fs::metadata(d.join(&second).join("key.pem"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(d)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n.to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn readers_resolving_data_never_see_a_mixed_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        write(&d, &update("CERT0", "KEY0", "ROOT"), 0o600).expect("first");
        let writer = {
            let d = d.clone();
            std::thread::spawn(move || {
                for i in 1..=50 {
                    write(
                        &d,
                        &update(&format!("CERT{i}"), &format!("KEY{i}"), "ROOT"),
                        0o600,
                    )
                    .expect("rotation");
                }
            })
        };
        let mut checked = 0;
        while !writer.is_finished() || checked == 0 {
            let set = d.join(std::fs::read_link(d.join(DATA)).expect("..data is always there"));
            // The set may be removed between the two reads, never changed.
            if let (Ok(cert), Ok(key)) = (
                std::fs::read_to_string(set.join("cert.pem")),
                std::fs::read_to_string(set.join("key.pem")),
            ) {
                assert_eq!(cert.replace("CERT", ""), key.replace("KEY", ""));
                checked += 1;
            }
        }
        writer.join().expect("writer");
        assert_eq!(read(&d, "cert.pem"), "CERT50");
        assert_eq!(read(&d, "key.pem"), "KEY50");
    }

    #[test]
    fn the_files_of_an_older_agent_become_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for name in ["cert.pem", "key.pem", "bundle.pem"] {
            std::fs::write(d.join(name), "OLD").expect("old file");
        }
        std::fs::create_dir(d.join("..2020_01_01_00_00_00.000000001")).expect("a crash's leftover");
        write(d, &update("CERT", "KEY", "ROOT"), 0o600).expect("write");
        for (name, want) in [
            ("cert.pem", "CERT"),
            ("key.pem", "KEY"),
            ("bundle.pem", "ROOT"),
        ] {
            assert!(
                std::fs::symlink_metadata(d.join(name))
                    .expect("meta")
                    .file_type()
                    .is_symlink(),
                "{name} is now a symlink"
            );
            assert_eq!(read(d, name), want);
        }
        assert_eq!(sets(d).len(), 1, "{:?}", sets(d));
    }
}
