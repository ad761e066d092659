//! The control socket's server: threads that take requests while the guest runs, and
//! keep every client, however hostile, away from the guest.
//!
//! ```text
//!  accept thread ──┬── connection thread 1 ── request line → dispatch::answer → reply line
//!  (epoll: socket  ├── connection thread 2 ──            (a job on the vCPU thread,
//!   or stop)       └── ...  at most MAX_CONNECTIONS      if the command needs the VM)
//! ```
//!
//! The guest runs on the vCPU thread and never waits for this server: a command reaches
//! it only as a job, taken at an exit boundary. So what a client does (nothing, half a
//! line, garbage, a megabyte without a newline, hanging up in the middle) can cost it a
//! connection, never the guest. Each connection gets [`REQUEST_TIMEOUT`] for each
//! complete request line (a deadline for the whole line, so a client trickling one byte
//! at a time gets no longer), and [`MAX_CONNECTIONS`] bounds the threads: one more
//! client is told so and closed, and the others go on being served.
//!
//! With [`ControlServer::start_catching_signals`] the accept thread also turns SIGINT and
//! SIGTERM into a stop of the guest (`super::signals`).
//!
//! Dropping the [`ControlServer`] stops it: the accept thread is woken through an
//! eventfd, every open connection is shut down for reading (a command under way still
//! sends its reply), the threads are joined and the socket file is removed
//! (`super::socket_file`).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::commands::Session;
use super::dispatch::answer;
use super::signals;
use super::framing::{Frame, LineReader};
use super::protocol::{encode_error, MAX_LINE};
use super::socket_file::{SocketFile, SocketFileError};
use crate::outcome::GuestStop;
use crate::vcpu::control::AfterJob;

/// Connections served at once; one more is refused with an error reply.
pub const MAX_CONNECTIONS: usize = 8;
/// Time a client has for each complete request line, from connecting or from the
/// previous reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a reply may take to be written (a client that never reads fills the socket's
/// buffer).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// epoll tags.
const LISTENER: u64 = 0;
const STOP: u64 = 1;
const SIGNAL: u64 = 2;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The socket file.
    #[error("control socket: {0}")]
    Socket(#[from] SocketFileError),
    /// epoll, the eventfd or a thread.
    #[error("control socket: cannot {what}: {source}")]
    Setup {
        /// What failed.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> ServerError {
    move |source| ServerError::Setup { what, source }
}

/// An open connection, as the server keeps track of it.
struct Connection {
    /// Another handle on the socket, to shut it down when the server stops.
    stream: UnixStream,
    thread: JoinHandle<()>,
}

/// The control socket, listening; stops and removes its file when dropped.
pub struct ControlServer {
    stop: EventFd,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<Connection>>>,
    /// The signal that stopped the run (0: none).
    stopped_by: Arc<AtomicI32>,
    // Declared last: the file goes once nothing serves it any more.
    file: Arc<SocketFile>,
}

/// What the accept thread works with.
struct Acceptor {
    listener: UnixListener,
    epoll: Epoll,
    connections: Arc<Mutex<Vec<Connection>>>,
    session: Arc<Session>,
    file: Arc<SocketFile>,
    stopped_by: Arc<AtomicI32>,
    signals: Option<&'static EventFd>,
}

impl ControlServer {
    /// Creates the socket at `path` and serves `session`'s VM on it from threads of its own.
    pub fn start(path: &Path, session: Session) -> Result<ControlServer, ServerError> {
        Self::start_with(path, session, None)
    }

    /// Like [`ControlServer::start`], and SIGINT or SIGTERM then stop the guest cleanly
    /// instead of killing hv (`super::signals`); for a program with one VM.
    pub fn start_catching_signals(path: &Path, session: Session) -> Result<ControlServer, ServerError> {
        let signals = signals::catch().map_err(setup("catch SIGINT and SIGTERM"))?;
        Self::start_with(path, session, Some(signals))
    }

    fn start_with(path: &Path, session: Session, signals: Option<&'static EventFd>) -> Result<ControlServer, ServerError> {
        let (listener, file) = SocketFile::create(path)?;
        let file = Arc::new(file);
        let stop = EventFd::new(0).map_err(setup("create an eventfd"))?;
        let epoll = Epoll::new().map_err(setup("create an epoll instance"))?;
        epoll
            .ctl(ControlOperation::Add, listener.as_raw_fd(), EpollEvent::new(EventSet::IN, LISTENER))
            .map_err(setup("watch the socket"))?;
        epoll.ctl(ControlOperation::Add, stop.as_raw_fd(), EpollEvent::new(EventSet::IN, STOP)).map_err(setup("watch the eventfd"))?;
        if let Some(signals) = signals {
            epoll
                .ctl(ControlOperation::Add, signals.as_raw_fd(), EpollEvent::new(EventSet::IN, SIGNAL))
                .map_err(setup("watch the signal eventfd"))?;
        }
        let connections = Arc::new(Mutex::new(Vec::new()));
        let stopped_by = Arc::new(AtomicI32::new(0));
        let acceptor = Acceptor {
            listener,
            epoll,
            connections: connections.clone(),
            session: Arc::new(session),
            file: file.clone(),
            stopped_by: stopped_by.clone(),
            signals,
        };
        let accept = std::thread::Builder::new()
            .name("hv-control".into())
            .spawn(move || acceptor.run())
            .map_err(setup("start the control thread"))?;
        Ok(ControlServer { stop, accept: Some(accept), connections, stopped_by, file })
    }

    /// The signal (SIGINT, SIGTERM) that stopped the run, if one did.
    pub fn stopped_by_signal(&self) -> Option<i32> {
        match self.stopped_by.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections = std::mem::take(&mut *lock(&self.connections));
        for c in &connections {
            // Only the reading side: a thread waiting for its client's next line sees
            // the end of the stream at once, and one inside a command still writes its
            // reply (`snapshot --stop` ends the run, and its client wants to hear so).
            let _ = c.stream.shutdown(std::net::Shutdown::Read);
        }
        for c in connections {
            let _ = c.thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Acceptor {
    /// Accepts clients until the stop eventfd fires.
    fn run(self) {
        let mut events = [EpollEvent::default(); 3];
        loop {
            let ready = match self.epoll.wait(-1, &mut events) {
                Ok(n) => &events[..n],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("hv: control socket: epoll failed ({e}); no more clients are accepted");
                    return;
                }
            };
            if ready.iter().any(|e| e.data() == STOP) {
                return;
            }
            if ready.iter().any(|e| e.data() == SIGNAL) {
                self.on_signal();
            }
            if ready.iter().any(|e| e.data() == LISTENER) {
                self.accept();
            }
        }
    }

    /// SIGINT or SIGTERM: the first stops the guest, a second ends hv at once.
    fn on_signal(&self) {
        if let Some(event) = self.signals {
            let _ = event.read();
        }
        let signal = signals::last().unwrap_or(libc::SIGTERM);
        if self.stopped_by.swap(signal, Ordering::AcqRel) != 0 {
            eprintln!("hv: {} again while stopping: exiting now", signals::name(signal));
            self.file.remove();
            std::process::exit(128 + signal);
        }
        // From a thread of its own: the accept thread must stay free to see a second signal.
        let control = self.session.control.clone();
        let why = format!("hv got {}: the guest was stopped", signals::name(signal));
        let _ = std::thread::Builder::new().name("hv-control-stop".into()).spawn(move || {
            let _ = control.call(move |_| ((), AfterJob::Stop(GuestStop::Ended { why })));
        });
    }

    /// Takes one client: a connection thread for it, or a refusal over the limit.
    fn accept(&self) {
        let stream = match self.listener.accept() {
            Ok((stream, _)) => stream,
            // The client may have gone already, or the process is out of descriptors:
            // neither is a reason to stop serving the others.
            Err(_) => return,
        };
        let mut open = lock(&self.connections);
        open.retain(|c| !c.thread.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            drop(open);
            refuse(stream);
            return;
        }
        let Ok(handle) = stream.try_clone() else { return };
        let session = self.session.clone();
        let spawned = std::thread::Builder::new().name("hv-control-client".into()).spawn(move || serve(stream, &session));
        match spawned {
            Ok(thread) => open.push(Connection { stream: handle, thread }),
            Err(_) => refuse(handle),
        }
    }
}

/// Tells a client over the limit so, without a thread of its own.
fn refuse(stream: UnixStream) {
    // The socket is fresh, so its buffer takes this short line without blocking; the
    // timeout is a second guard.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let message = format!("too many control connections (at most {MAX_CONNECTIONS} at once); try again later");
    let _ = write_line(&stream, &encode_error(&message));
}

/// Reads from a socket with a deadline for a whole line rather than per read.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// Serves one client, then closes the connection (the server's own handle on it would
/// otherwise keep it open).
fn serve(stream: UnixStream, session: &Session) {
    serve_requests(&stream, session);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One reply per request line, until the client hangs up, breaks a limit or the server
/// stops.
fn serve_requests(stream: &UnixStream, session: &Session) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut lines = LineReader::new(Deadline { stream, until: Instant::now() }, MAX_LINE);
    loop {
        lines.get_mut().until = Instant::now() + REQUEST_TIMEOUT;
        let (reply, more) = match lines.next_line() {
            Ok(Frame::Line(line)) => {
                // A progress line that cannot be written is dropped; the command goes on
                // and its reply meets the same fate.
                let mut client_gone = false;
                let reply = answer(session, &line, &mut |progress| {
                    client_gone = client_gone || write_line(stream, &progress).is_err();
                });
                (reply, true)
            }
            Ok(Frame::TooLong) => (encode_error(&format!("request line longer than {MAX_LINE} bytes; closing the connection")), false),
            // Hung up (maybe in the middle of a line: there is nobody to answer).
            Ok(Frame::Closed { .. }) => return,
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                let message = format!("no complete request line within {} s; closing the connection", REQUEST_TIMEOUT.as_secs());
                (encode_error(&message), false)
            }
            Err(_) => return,
        };
        if write_line(stream, &reply).is_err() || !more {
            return;
        }
    }
}

/// Writes `line` and its `\n` in one go.
fn write_line(mut stream: &UnixStream, line: &str) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    stream.write_all(&bytes)
}
