//! The gRPC contracts of the NCY backbone, generated from `proto/ncy/**/v1/*.proto`.
//!
//! Free-form JSON (job payloads, cached values, realtime message data) travels as JSON **text** in
//! `string` fields whose names end in `_json`: it keeps 64-bit integers exact, which
//! `google.protobuf.Struct` (doubles only) does not, and services validate it once at the edge.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every NCY proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ncy_descriptor.bin"));

pub mod cache {
    pub mod v1 {
        tonic::include_proto!("ncy.cache.v1");
    }
}

pub mod jobs {
    pub mod v1 {
        tonic::include_proto!("ncy.jobs.v1");
    }
}

pub mod realtime {
    pub mod v1 {
        tonic::include_proto!("ncy.realtime.v1");
    }
}
