//! The TCP baseline's server: the smallest HTTP server that answers `GET /big?bytes=N`
//! as the guest's `net-serve` does (N bytes of the alphabet, repeated), on the host's own
//! loopback, so that the same `curl` fetches the same bytes from the host's TCP stack
//! alone.
//!
//! It runs on a thread of its own while `curl` runs; the listening socket is made by the
//! caller (in the benchmark's namespace: a socket belongs to the namespace of the thread
//! that made it), and the thread stops when told or when its deadline passes, so it never
//! outlives the benchmark step. The only client is our `curl`, but the request is still
//! read with a bound (a head of at most [`MAX_REQUEST_BYTES`]).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `net-serve`'s pattern for `/big` (byte i is `PATTERN[i % 26]`).
pub const PATTERN: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
/// The longest request head read.
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Bytes written per `write` call: the alphabet repeated, a multiple of 26 so that each
/// chunk starts where the pattern starts.
const CHUNK_BYTES: usize = 26 * 2520;
/// How often an idle server looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// The size asked for by a request head `GET /big?bytes=N HTTP/1.x`, or `None` for any
/// other request.
pub fn requested_bytes(head: &str) -> Option<u64> {
    let line = head.lines().next()?;
    let mut words = line.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    if method != "GET" || !version.starts_with("HTTP/1.") || words.next().is_some() {
        return None;
    }
    target.strip_prefix("/big?bytes=")?.parse().ok()
}

/// Serves `listener` until `stop` is set or `deadline` passes; returns the bytes of body
/// sent in all.
pub fn serve(listener: &TcpListener, stop: &AtomicBool, deadline: Instant) -> io::Result<u64> {
    listener.set_nonblocking(true)?;
    let mut sent = 0;
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => sent += answer(stream)?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Reads one request and answers it: 200 with the body, or 400.
fn answer(mut stream: TcpStream) -> io::Result<u64> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer)?;
        if n == 0 || head.len() + n > MAX_REQUEST_BYTES {
            return Ok(0);
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let Some(bytes) = requested_bytes(&String::from_utf8_lossy(&head)) else {
        stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(0);
    };
    write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n")?;
    let chunk: Vec<u8> = PATTERN.iter().copied().cycle().take(CHUNK_BYTES).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK_BYTES as u64) as usize;
        stream.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_of_big_is_a_request_for_bytes() {
        assert_eq!(requested_bytes("GET /big?bytes=1048576 HTTP/1.1\r\nHost: x\r\n\r\n"), Some(1 << 20));
        assert_eq!(requested_bytes("GET /big?bytes=0 HTTP/1.0\r\n\r\n"), Some(0));
        assert_eq!(requested_bytes("POST /big?bytes=10 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(requested_bytes("GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(requested_bytes("GET /big?bytes=-1 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(requested_bytes("GET /big?bytes=99999999999999999999999 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(requested_bytes("GET /big?bytes=10 HTTP/1.1 extra\r\n\r\n"), None);
        assert_eq!(requested_bytes(""), None);
    }

    #[test]
    fn the_server_sends_the_pattern_with_its_length() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        let port = listener.local_addr().expect("address").port();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let server = s.spawn(|| serve(&listener, &stop, Instant::now() + Duration::from_secs(30)));
            let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            client.write_all(b"GET /big?bytes=100000 HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).expect("read");
            stop.store(true, Ordering::Release);
            assert_eq!(server.join().expect("server thread").expect("served"), 100_000);
            let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
            let head = String::from_utf8_lossy(&reply[..split]);
            assert!(head.starts_with("HTTP/1.1 200") && head.contains("Content-Length: 100000"), "{head}");
            let body = &reply[split..];
            assert_eq!(body.len(), 100_000);
            assert!(body.iter().enumerate().all(|(i, b)| *b == PATTERN[i % 26]), "byte i is the pattern's i % 26");
        });
    }
}
