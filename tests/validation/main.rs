//! CA backend validation at global (issue 3) through the REST API, against a real OpenBao 2.7.2 set up

mod common;
mod dataplane_identity;
mod dataplanes;
mod mesh_sections;
mod own_ca;
mod vault;
mod vault_tls;
