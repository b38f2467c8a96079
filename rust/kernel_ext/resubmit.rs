// SPDX-License-Identifier: GPL-2.0

//! Sends parked bios to their device from process context.
//!
//! A parked read waits for a prefetch in flight. When that prefetch fails or
//! its data is dropped, the read must go to the device after all, but the
//! prefetch completes in interrupt context, where `submit_bio_noacct` (which
//! may sleep) cannot be called. [`Resubmitter::submit_later`] queues the bio
//! and runs the system workqueue's worker to submit it.

use super::bio::ParkedBio;
use super::sync::{new_irq_spinlock, IrqSpinLock};
use kernel::{
    prelude::*,
    sync::Arc,
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

/// Bios one device may have waiting for submission.
pub(crate) const RESUBMIT_SLOTS: usize = 32;

/// A queue of parked bios and the work item that submits them.
#[pin_data]
pub(crate) struct Resubmitter {
    #[pin]
    work: Work<Resubmitter>,
    #[pin]
    queue: IrqSpinLock<[Option<ParkedBio>; RESUBMIT_SLOTS]>,
}

impl_has_work! {
    impl HasWork<Self> for Resubmitter { self.work }
}

impl WorkItem for Resubmitter {
    type Pointer = Arc<Resubmitter>;

    fn run(this: Arc<Resubmitter>) {
        loop {
            // One at a time: submission may sleep, the lock may not be held.
            let next = this.queue.lock().iter_mut().find_map(Option::take);
            match next {
                Some(bio) => bio.submit(),
                None => break,
            }
        }
    }
}

impl Resubmitter {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                work <- new_work!("aether_resubmit"),
                queue <- new_irq_spinlock!([const { None }; RESUBMIT_SLOTS], "aether_resubmit"),
            }),
            GFP_KERNEL,
        )
    }

    /// Queues `bio` for submission from process context. Any context. Gives
    /// the bio back if the queue is full.
    pub(crate) fn submit_later(self: &Arc<Self>, bio: ParkedBio) -> Result<(), ParkedBio> {
        {
            let mut q = self.queue.lock();
            match q.iter_mut().find(|s| s.is_none()) {
                Some(slot) => *slot = Some(bio),
                None => return Err(bio),
            }
        }
        // Already queued is fine: the pending run takes this bio too.
        let _ = workqueue::system().enqueue(self.clone());
        Ok(())
    }

    /// Bios queued and not yet submitted.
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().iter().filter(|s| s.is_some()).count()
    }

    /// Waits until queued bios have been submitted and the work is idle.
    /// May sleep.
    pub(crate) fn flush(&self) {
        // SAFETY: `work` is an initialised `work_struct` inside `self`,
        // alive for the call; `flush_work` only waits for it.
        unsafe { super::bindings::flush_work(Work::raw_get(&self.work).cast()) };
    }
}
