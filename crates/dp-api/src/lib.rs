//! Generated code for the dataplane API (`meshplane.dp.v1`) and the SPIFFE Workload API.
#![forbid(unsafe_code)]

pub mod dp {
    #![allow(clippy::all, unreachable_pub, missing_docs)]
    tonic::include_proto!("meshplane.dp.v1");
}

/// The Workload API has no proto package, so its code is generated into the `_` module.
pub mod workload {
    #![allow(clippy::all, unreachable_pub, missing_docs)]
    tonic::include_proto!("_");
}

/// The metadata header every Workload API call must carry.
pub const WORKLOAD_HEADER: &str = "workload.spiffe.io";
