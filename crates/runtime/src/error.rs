//! Errors of the service runtime.
use std::net::SocketAddr;

/// What can go wrong while a service boots or serves.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A listener could not be bound (port in use, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Redis could not be reached or answered an error.
    #[error("redis: {0}")]
    Redis(String),
    /// No pooled Redis connection: the pool timed out waiting for one, or could not create one
    /// (the typed cause: deadpool's error around the `redis::RedisError`).
    #[error("redis: {0}")]
    RedisPool(#[from] deadpool::managed::PoolError<redis::RedisError>),
    /// Redis answered a command with an error, or the connection failed during it.
    #[error("redis: {0}")]
    RedisCommand(#[from] redis::RedisError),
    /// PostgreSQL could not be reached or answered an error.
    #[error("postgres: {0}")]
    Postgres(String),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// gRPC reflection could not be built from the descriptors.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The API keys file is missing, unreadable or malformed, or no keys were configured for a
    /// service that serves RPCs.
    #[error("api keys: {0}")]
    ApiKeys(String),
    /// Other I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
