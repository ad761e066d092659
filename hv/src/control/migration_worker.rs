//! The thread that sends a migration for the control socket.
//!
//! `hv ctl … migrate` arrives on a client's thread, whose seccomp filter
//! (`sandbox::ThreadKind::ControlClient`) allows no network connection, and whatever
//! that thread starts inherits the filter: a filter can only be tightened. So the one
//! thread allowed to connect out is started with the server, before anything is confined,
//! and confines itself with its own filter (`ThreadKind::MigrationSender`). A client's
//! thread hands it the migration and relays its rounds back as progress lines.

use crossbeam_channel::{Receiver, Sender};

use crate::migration::{MigrationReport, RoundFigures};

/// What the worker reports while a migration runs.
pub enum MigrationEvent {
    /// A round ended.
    Round(RoundFigures),
    /// The migration is over: its report and the figures' files that could not be
    /// written, or why it failed.
    Done(Result<(MigrationReport, Vec<String>), String>),
}

/// One migration to send: a closure run on the worker thread, reporting on `events`.
pub type MigrationJob = Box<dyn FnOnce(&Sender<MigrationEvent>) + Send>;

/// The handle a client's thread uses to give the worker a migration.
pub struct MigrationWorker {
    jobs: Sender<(MigrationJob, Sender<MigrationEvent>)>,
}

impl MigrationWorker {
    /// Starts the worker thread (call it before this thread confines itself), confined
    /// if `seccomp` is on.
    pub fn start(seccomp: bool) -> std::io::Result<MigrationWorker> {
        let (jobs, inbox) = crossbeam_channel::unbounded::<(MigrationJob, Sender<MigrationEvent>)>();
        std::thread::Builder::new().name("hv-migrate".into()).spawn(move || run(inbox, seccomp))?;
        Ok(MigrationWorker { jobs })
    }

    /// Runs `job` on the worker; the returned channel carries its rounds, then `Done`.
    pub fn submit(&self, job: MigrationJob) -> Receiver<MigrationEvent> {
        let (events, receiver) = crossbeam_channel::unbounded();
        if let Err(crossbeam_channel::SendError((_, events))) = self.jobs.send((job, events)) {
            let _ = events.send(MigrationEvent::Done(Err("the migration thread has ended".into())));
        }
        receiver
    }
}

fn run(inbox: Receiver<(MigrationJob, Sender<MigrationEvent>)>, seccomp: bool) {
    if seccomp {
        if let Err(e) = crate::sandbox::confine_current_thread(crate::sandbox::ThreadKind::MigrationSender) {
            eprintln!("hv: control socket: {e}; migrations cannot be sent");
            return;
        }
    }
    // Ends when the server (the last sender of jobs) is gone.
    while let Ok((job, events)) = inbox.recv() {
        job(&events);
    }
}
