//! The protobuf codec of every generated client and server: tonic-prost's, except that a message
//! that does not decode is the sender's fault and answers `INVALID_ARGUMENT` naming the type, where
//! tonic-prost answers `INTERNAL` (which would page the server's owner for a caller's bug).
//!
//! On the client side the same mapping applies to a reply that does not decode; our servers only
//! send what their own generated code encoded, so that case means mismatched contract versions.
use std::marker::PhantomData;

use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U> {
    inner: tonic_prost::ProstCodec<T, U>,
}

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: tonic_prost::ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder {
            inner: self.inner.decoder(),
            _message: PhantomData,
        }
    }
}

/// Decodes `U`, reporting a malformed message as `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct ProstDecoder<U> {
    inner: tonic_prost::ProstDecoder<U>,
    _message: PhantomData<U>,
}

impl<U: prost::Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // tonic-prost's decoder fails only when the bytes are not a valid `U`.
        self.inner.decode(buf).map_err(|status| {
            Status::invalid_argument(format!(
                "request body is not a valid {} message: {}",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("protobuf"),
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
