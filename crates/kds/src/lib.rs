//! Meshplane's global<->zone sync (KDS): the gRPC protocol, the global-side server and the zone-side
//! client. Stores are reached only through the core `ResourceStore` trait.
#![forbid(unsafe_code)]

pub mod proto {
    #![allow(clippy::all, unreachable_pub, missing_docs)]
    tonic::include_proto!("meshplane.kds.v1");
}

pub mod apply;
pub mod chunk;
pub mod client;
pub mod link;
pub mod mirror;
pub mod server;
pub mod version;
pub mod view;
