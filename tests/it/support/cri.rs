//! The kubelet's side of containerd's CRI image service, as far as the tests need it: `PullImage` over a
//! containerd socket (gRPC on HTTP/2 with hyper, the messages by prost; field numbers from
//! kubernetes/cri-api `pkg/apis/runtime/v1/api.proto`). A CRI pull is what resolves an image through the
//! registry `config_path` of containerd's config (`ctr` has its own resolver and never reads it).

use bytes::{BufMut, BytesMut};
use http_body_util::{BodyExt, Full};
use prost::Message;
use std::path::Path;

/// `runtime.v1.ImageSpec` (only `image`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
}

/// `runtime.v1.PullImageRequest` (no `auth` (2), no `sandbox_config` (3)).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageRequest {
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
}

/// `runtime.v1.PullImageResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageResponse {
    #[prost(string, tag = "1")]
    pub image_ref: String,
}

/// CRI `PullImage(image)` on the containerd at `socket`: the image reference it returns (the image id), or the
/// gRPC error (`grpc-status`, `grpc-message`).
pub fn pull_image(socket: &Path, image: &str) -> Result<String, String> {
    let req = PullImageRequest { image: Some(ImageSpec { image: image.into() }) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(call::<_, PullImageResponse>(socket, "/runtime.v1.ImageService/PullImage", &req)).map(|r| r.image_ref)
}

async fn call<Req: Message, Resp: Message + Default>(socket: &Path, method: &str, req: &Req) -> Result<Resp, String> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let (mut send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(conn);
    // a gRPC message: not compressed (0), its length (u32, big-endian), the protobuf bytes
    let msg = req.encode_to_vec();
    let mut body = BytesMut::with_capacity(5 + msg.len());
    body.put_u8(0);
    body.put_u32(msg.len() as u32);
    body.put_slice(&msg);
    let request = hyper::Request::post(format!("http://localhost{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(body.freeze()))
        .unwrap();
    let response = send.send_request(request).await.map_err(|e| format!("{method}: {e}"))?;
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.map_err(|e| format!("{method}: reading the response: {e}"))?;
    // the status is in the trailers, or in the headers of a trailers-only response (an error)
    let trailers = body.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers.get(name).or_else(|| headers.get(name)).map(|v| v.to_str().unwrap_or_default().to_string())
    };
    let status = field("grpc-status").unwrap_or_default();
    if status != "0" {
        return Err(format!("{method}: grpc-status {status:?}: {}", field("grpc-message").unwrap_or_default()));
    }
    let data = body.to_bytes();
    if data.len() < 5 || data[0] != 0 {
        return Err(format!("{method}: not one uncompressed gRPC message ({} bytes)", data.len()));
    }
    Resp::decode(&data[5..]).map_err(|e| format!("{method}: bad response: {e}"))
}
