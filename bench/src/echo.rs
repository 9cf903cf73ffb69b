//! The baseline of the gRPC benchmark: a bare tonic unary service whose
//! request and response sizes match those of a cached GetAccessToken call.

use std::net::SocketAddr;

use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The code generated from `proto/bench/v1/echo.proto`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod proto {
    tonic::include_proto!("bench.v1");
}

use proto::echo_server::{Echo, EchoServer};
use proto::{EchoRequest, EchoResponse};

/// The echo service, which returns a payload of `response_size` bytes.
#[derive(Debug, Default)]
pub struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let size = request.get_ref().response_size as usize;
        Ok(Response::new(EchoResponse {
            payload: vec![b'x'; size],
        }))
    }
}

/// Serves the echo service on `127.0.0.1:0` until the returned sender
/// sends `true` or is dropped, with tonic's default server settings.
///
/// The listener comes from [`crate::env::bind_loopback`], as the
/// registrar's does in these benchmarks: tonic 0.14 ignores
/// `Server::tcp_nodelay` for `serve_with_incoming*`, so accepted sockets
/// have `TCP_NODELAY` only when `nodelay` sets it on the listener.
pub async fn serve(nodelay: bool) -> anyhow::Result<(SocketAddr, watch::Sender<bool>)> {
    let listener = crate::env::bind_loopback(nodelay)?;
    let address = listener.local_addr()?;
    let incoming = TcpListenerStream::new(listener);
    let (stop, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(EchoService))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    });
    Ok((address, stop))
}

/// Builds an echo request whose encoded size is `request_size` bytes (or the
/// smallest possible size above it) and that requests a response of
/// `response_size` bytes encoded.
pub fn sized_request(request_size: usize, response_size: usize) -> EchoRequest {
    let response_payload = padding_for(response_size, |len| {
        prost::Message::encoded_len(&EchoResponse {
            payload: vec![0; len],
        })
    });
    let mut request = EchoRequest {
        payload: Vec::new(),
        response_size: response_payload as u32,
    };
    let request_payload = padding_for(request_size, |len| {
        request.payload = vec![0; len];
        prost::Message::encoded_len(&request)
    });
    request.payload = vec![b'x'; request_payload];
    request
}

/// Returns the largest payload length whose encoded message is at most
/// `target` bytes, or zero.
fn padding_for(target: usize, mut encoded_len: impl FnMut(usize) -> usize) -> usize {
    (0..=target)
        .rev()
        .find(|&len| encoded_len(len) <= target)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_request_matches_sizes() {
        let request = sized_request(120, 900);
        assert_eq!(prost::Message::encoded_len(&request), 120);
        let response = EchoResponse {
            payload: vec![0; request.response_size as usize],
        };
        assert_eq!(prost::Message::encoded_len(&response), 900);
    }
}
