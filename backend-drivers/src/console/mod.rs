//! The console backend: guest text to hv's standard output.
//!
//! Requests carry their text inline (see `pv_abi::device::console`), so this backend
//! needs no grants: it checks each request ([`check::check_request`]), copies its
//! bytes, sanitised ([`check::sanitize`]), to its output in ring order, and answers
//! with the number of bytes written.

pub mod check;

use std::io::Write;

use pv_abi::device::console::{ConsoleRequest, ConsoleResponse};

use crate::runner::{HandlerContext, RequestHandler};
pub use check::{sanitize, sanitize_text};

/// The console device's backend.
pub struct ConsoleBackend {
    out: Box<dyn Write + Send>,
}

impl ConsoleBackend {
    /// A console that writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        ConsoleBackend { out }
    }
}

impl RequestHandler for ConsoleBackend {
    type Request = ConsoleRequest;
    type Response = ConsoleResponse;
    const NAME: &'static str = "console";

    fn handle(&mut self, request: &ConsoleRequest, cx: &mut HandlerContext) -> ConsoleResponse {
        let text = match check::check_request(request) {
            Ok(text) => text,
            Err(too_long) => {
                cx.stats.failed_requests += 1;
                return ConsoleResponse { id: request.id, status: too_long.status() };
            }
        };
        // Our own stdout failing is not the guest's fault: report the bytes as written.
        let _ = self.out.write_all(&sanitize(text));
        if text.contains(&b'\n') {
            let _ = self.out.flush();
        }
        cx.stats.bytes_from_guest += text.len() as u64;
        ConsoleResponse { id: request.id, status: text.len() as i32 }
    }

    fn request_id(request: &ConsoleRequest) -> u64 {
        request.id
    }

    fn summarize(request: &ConsoleRequest) -> String {
        match request.text() {
            Some(text) => format!("write {:?}", String::from_utf8_lossy(text)),
            None => format!("write len={} (too long)", request.len),
        }
    }

    fn describe_response(response: &ConsoleResponse) -> (u64, String) {
        let status = if response.status >= 0 { format!("{} bytes", response.status) } else { "EINVAL".into() };
        (response.id, status)
    }
}
