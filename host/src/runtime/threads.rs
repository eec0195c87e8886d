//! Where activations run: a tokio runtime of their own, one thread per core, each at a lower
//! scheduling priority (nice 10) than the API's threads. A guest that spins to its CPU budget
//! (or sixty-four of them) then takes what the API leaves, instead of the API's workers: the
//! kernel gives a busy API thread about nine tenths of a core against a busy guest thread.

use std::io;
use tokio::runtime::{Handle, Runtime};

/// How much less urgent a guest thread is than the API's (a nice value, 0 to 19).
const GUEST_NICENESS: libc::c_int = 10;

pub struct GuestThreads {
    runtime: Option<Runtime>,
}

impl GuestThreads {
    pub fn start() -> io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("waymark-guest")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> Handle {
        self.runtime
            .as_ref()
            .expect("running until dropped")
            .handle()
            .clone()
    }
}

impl Drop for GuestThreads {
    /// Without waiting for activations in flight: their leases lapse and another host (or
    /// this one, restarted) runs them again.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lower the calling thread's priority (on Linux a nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read and set the calling thread's scheduling
    // attributes; a failure (a sandbox that forbids it) leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, GUEST_NICENESS) != 0 {
            tracing::warn!("could not lower a guest thread's priority");
        }
    }
}
