//! The thread pool heavy calls run on, safe across `fork`.
//!
//! Rayon's global pool does not survive `fork()`: a child process (a PyTorch
//! DataLoader worker, a multiprocessing pool) inherits the pool's bookkeeping
//! but none of its threads, and its first parallel call blocks forever. We
//! therefore run every parallel call inside a pool owned by the current
//! process, rebuilt when the process id changes. Its size is
//! `RAYON_NUM_THREADS` if set, else the number of available cores; results
//! never depend on it.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex};

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

fn current() -> Arc<ThreadPool> {
    let pid = std::process::id();
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, pool)) = guard.as_ref() {
        if *owner == pid {
            return pool.clone();
        }
    }
    // A pool inherited through fork has no threads behind it: never drop it
    // (that would wait for them), just forget it.
    if let Some((_, stale)) = guard.take() {
        std::mem::forget(stale);
    }
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // When the threads cannot be started (an address-space limit, too many
    // threads), fall back to one worker: results never depend on the count.
    let build = |n: usize| ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("dataprobes-{i}")).build();
    let pool = Arc::new(build(threads).or_else(|_| build(1)).expect("failed to start the dataprobes thread pool"));
    *guard = Some((pid, pool.clone()));
    pool
}

/// Runs `f` (and every rayon call inside it) on this process's pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    current().install(f)
}
