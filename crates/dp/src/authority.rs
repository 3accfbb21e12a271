//! Makes the Workload API usable by gRPC C-core clients (py-spiffe, Envoy's `google_grpc`) over a unix
//! socket. They send the socket path, percent-encoded, as `:authority`, and h2 refuses such a request
//! (hyperium/h2#487). This shim sits between each accepted socket and the gRPC server: it passes every
//! HTTP/2 frame through unchanged except request header blocks, which it decodes, gives
//! `:authority: localhost` (a unix socket has no authority to speak of), and re-encodes.
//! Only the client-to-server direction is touched; replies are copied as they are.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames we emit stay within HTTP/2's default maximum, which every peer accepts.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is refused rather than buffered.
const MAX_BLOCK: usize = 1024 * 1024;

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<([u8; 9], Vec<u8>)>> {
    let mut head = [0u8; 9];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    if len > MAX_BLOCK {
        return Err(bad("HTTP/2 frame too large"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head, payload)))
}

fn frame(kind: u8, flags: u8, stream: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream);
    out.extend_from_slice(payload);
    out
}

/// The header block fragment of a HEADERS frame, without padding and priority fields.
fn fragment(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first().ok_or_else(|| bad("empty padded HEADERS"))?);
        start = 1;
        end = end
            .checked_sub(pad)
            .ok_or_else(|| bad("HEADERS padding longer than the frame"))?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| bad("malformed HEADERS frame"))
}

/// Copies client frames to the server, rewriting request header blocks.
async fn client_to_server<R, W>(mut from: R, mut to: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if preface != PREFACE {
        return Err(bad("not an HTTP/2 connection"));
    }
    to.write_all(&preface).await?;
    let mut decoder = loona_hpack::Decoder::new();
    let mut encoder = loona_hpack::Encoder::new();
    // A header block spread over HEADERS + CONTINUATION frames: (stream, END_STREAM, fragment).
    let mut pending: Option<([u8; 4], u8, Vec<u8>)> = None;
    while let Some((head, payload)) = read_frame(&mut from).await? {
        let (kind, flags) = (head[3], head[4]);
        let stream = [head[5], head[6], head[7], head[8]];
        let block = match (kind, pending.take()) {
            (HEADERS, None) => {
                let frag = fragment(flags, &payload)?.to_vec();
                Some((stream, flags & END_STREAM, frag, flags & END_HEADERS != 0))
            }
            (CONTINUATION, Some((s, end_stream, mut frag))) if s == stream => {
                frag.extend_from_slice(&payload);
                if frag.len() > MAX_BLOCK {
                    return Err(bad("header block too large"));
                }
                Some((s, end_stream, frag, flags & END_HEADERS != 0))
            }
            (HEADERS | CONTINUATION, _) => return Err(bad("interleaved header blocks")),
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
                None
            }
        };
        let Some((s, end_stream, frag, complete)) = block else {
            continue;
        };
        if !complete {
            pending = Some((s, end_stream, frag));
            continue;
        }
        let headers = decoder
            .decode(&frag)
            .map_err(|e| bad(&format!("HPACK: {e:?}")))?;
        let rewritten: Vec<(Vec<u8>, Vec<u8>)> = headers
            .into_iter()
            .map(|(n, v)| {
                if n == b":authority" {
                    (n, b"localhost".to_vec())
                } else {
                    (n, v)
                }
            })
            .collect();
        let encoded = encoder.encode(rewritten.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let chunks: Vec<&[u8]> = if encoded.is_empty() {
            vec![&[][..]]
        } else {
            encoded.chunks(MAX_FRAME).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let end_headers = if i == last { END_HEADERS } else { 0 };
            let (kind, flags) = if i == 0 {
                (HEADERS, end_stream | end_headers)
            } else {
                (CONTINUATION, end_headers)
            };
            to.write_all(&frame(kind, flags, s, chunk)).await?;
        }
    }
    to.shutdown().await
}

/// Proxies one accepted connection into the in-process gRPC server's end of a duplex pipe.
pub async fn shim<C>(client: C, server: tokio::io::DuplexStream)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let up = async move {
        let r = client_to_server(cr, &mut sw).await;
        // Also when the client went away mid-frame or spoke no HTTP/2: the server must see the end,
        // or it waits for more forever and the connection (and its descriptor) is never released.
        let _ = sw.shutdown().await;
        r
    };
    let down = async move {
        let r = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
        r.map(|_| ())
    };
    let (a, b) = tokio::join!(up, down);
    if let Err(e) = a.and(b)
        && e.kind() != io::ErrorKind::UnexpectedEof
        && e.kind() != io::ErrorKind::BrokenPipe
        && e.kind() != io::ErrorKind::ConnectionReset
    {
        tracing::debug!(error = %e, "workload API connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_that_goes_away_early_ends_the_connection() {
        let timeout = std::time::Duration::from_secs(5);
        for sent in [&b"PRI * HT"[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"] {
            let (mut client, accepted) = tokio::io::duplex(1024);
            let (shim_side, mut server) = tokio::io::duplex(1024);
            let task = tokio::spawn(shim(accepted, shim_side));
            client.write_all(sent).await.expect("write");
            drop(client);
            let mut seen = Vec::new();
            tokio::time::timeout(timeout, server.read_to_end(&mut seen))
                .await
                .expect("the server sees the end of the connection")
                .expect("read");
            drop(server);
            tokio::time::timeout(timeout, task)
                .await
                .expect("the shim ends")
                .expect("join");
        }
    }

    #[tokio::test]
    async fn rewrites_authority_and_keeps_other_frames() {
        let mut enc = loona_hpack::Encoder::new();
        let hdrs: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":authority", b"tmp%2Fwl.sock"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
        ];
        let block = enc.encode(hdrs);
        let (a, b) = block.split_at(block.len() / 2);
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, [0; 4], &[])); // SETTINGS
        input.extend(frame(
            HEADERS,
            PADDED,
            [0, 0, 0, 1],
            &[&[2u8][..], a, &[0, 0]].concat(),
        ));
        input.extend(frame(CONTINUATION, END_HEADERS, [0, 0, 0, 1], b));
        input.extend(frame(0x0, END_STREAM, [0, 0, 0, 1], b"data"));
        let mut out = Vec::new();
        client_to_server(&input[..], &mut out)
            .await
            .expect("proxied");
        assert_eq!(&out[..24], PREFACE);
        let mut rest = &out[24..];
        let (h, p) = read_frame(&mut rest)
            .await
            .expect("read")
            .expect("settings");
        assert_eq!((h[3], p.len()), (0x4, 0));
        let (h, p) = read_frame(&mut rest).await.expect("read").expect("headers");
        assert_eq!(h[3], HEADERS);
        assert_eq!(h[4] & END_HEADERS, END_HEADERS);
        let decoded = loona_hpack::Decoder::new().decode(&p).expect("hpack");
        assert_eq!(decoded[1], (b":authority".to_vec(), b"localhost".to_vec()));
        assert_eq!(decoded[2].1, b"/SpiffeWorkloadAPI/FetchX509SVID".to_vec());
        let (h, p) = read_frame(&mut rest).await.expect("read").expect("data");
        assert_eq!((h[3], h[4], p.as_slice()), (0x0, END_STREAM, &b"data"[..]));
    }
}
