//! Every file under `deploy/` is checked by one of these tests.

use super::*;
use crate::{
    config::{config_files, dataplane_for},
    kubernetes::{kustomization_dirs, strings},
    systemd::UNITS,
};

#[test]
fn every_deployment_file_is_one_these_tests_check() {
    for p in files_under(&deploy()) {
        let rel = p
            .strip_prefix(deploy())
            .expect("under deploy")
            .to_path_buf();
        let name = file_name(&p);
        let checked = match rel.components().next().and_then(|c| c.as_os_str().to_str()) {
            // Owned by the resource examples' own tests.
            Some("examples") => true,
            Some("Dockerfile" | "Dockerfile.dockerignore") => true,
            Some("config") => matches!(name, "global.yaml" | "zone.yaml" | "dp.yaml"),
            Some("systemd") => UNITS
                .iter()
                .any(|u| u.name == name || u.env_example == name),
            Some("kubernetes") => {
                name == "kustomization.yaml"
                    || config_files().contains(&p)
                    || config_files().iter().any(|c| dataplane_for(c) == p)
                    || kustomization_dirs().iter().any(|d| {
                        let k = yaml(&d.join("kustomization.yaml"));
                        strings(&k["resources"])
                            .iter()
                            .chain(strings(&k["patches"]).iter())
                            .any(|r| d.join(r) == p)
                    })
            }
            _ => false,
        };
        assert!(
            checked,
            "deploy/{} is not covered by tests/deploy/",
            rel.display()
        );
    }
}
