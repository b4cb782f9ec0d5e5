//! The gRPC contracts of the NCY backbone, generated from `proto/ncy/**/v1/*.proto`.
//!
//! Free-form JSON (job payloads, cached values, realtime message data) travels as JSON **text** in
//! `string` fields whose names end in `_json`: it keeps 64-bit integers exact, which
//! `google.protobuf.Struct` (doubles only) does not, and services validate it once at the edge.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every NCY proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ncy_descriptor.bin"));

pub mod codec;

include!(concat!(env!("OUT_DIR"), "/ncy_scopes.rs"));

/// The API-key scope `path` (`/package.Service/Method`) requires, from the protos; `None` for a path
/// that is not an NCY RPC.
pub fn required_scope(path: &str) -> Option<&'static str> {
    REQUIRED_SCOPES
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .map(|i| REQUIRED_SCOPES[i].1)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_a_scope_of_its_own_service() {
        assert!(REQUIRED_SCOPES.len() >= 40, "{REQUIRED_SCOPES:?}");
        for (path, scope) in REQUIRED_SCOPES {
            let package = path.trim_start_matches("/ncy.").split('.').next();
            let service = scope.split(':').next();
            assert_eq!(package, service, "{path} needs {scope}");
        }
        assert_eq!(
            required_scope("/ncy.cache.v1.CacheService/Get"),
            Some("cache:read")
        );
        assert_eq!(
            required_scope("/ncy.cache.v1.CacheService/InvalidatePattern"),
            Some("cache:admin")
        );
        assert_eq!(required_scope("/ncy.cache.v1.CacheService/Nope"), None);
        assert_eq!(required_scope("/grpc.health.v1.Health/Check"), None);
    }
}
