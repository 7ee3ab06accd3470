//! What the background worker and one executor share: a dynamic shared
//! memory segment that carries the job to the executor and its outcome back.

use pgrx::pg_sys;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};

/// The job an executor runs, read by the worker from the job's payload.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub job_id: i64,
    pub command: String,
    pub database: String,
    pub run_as: String,
    /// The whole command's bound; None: longer than a timer can count.
    pub timeout_ms: Option<u64>,
}

/// How the command ended, in the form the job records it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub enum Outcome {
    /// Command tag and rows of the last statement.
    Completed { status: String, rows: u64 },
    /// `'<SQLSTATE>: <message>'`.
    Failed { error: String },
}

const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const WRITTEN: u32 = 2;
/// Room for the outcome: an error message longer than this is cut.
const OUTCOME_BYTES: usize = 8 * 1024;

#[repr(C)]
struct Header {
    outcome_state: AtomicU32,
    outcome_len: AtomicU32,
    request_len: u32,
}

const REQUEST_AT: usize = std::mem::size_of::<Header>() + OUTCOME_BYTES;

/// One segment, mapped in this process.
pub struct Channel {
    segment: *mut pg_sys::dsm_segment,
}

impl Channel {
    /// Creates the segment for `request` (the worker, outside any
    /// transaction, so that the mapping lasts until `close`).
    pub fn create(request: &Request) -> Channel {
        let bytes = serde_json::to_vec(request).expect("a request serializes");
        // SAFETY: the segment is at least REQUEST_AT + bytes long and only
        // this process uses it until the executor starts.
        unsafe {
            let segment = pg_sys::dsm_create(REQUEST_AT + bytes.len(), 0);
            let base = pg_sys::dsm_segment_address(segment) as *mut u8;
            base.cast::<Header>().write(Header {
                outcome_state: AtomicU32::new(EMPTY),
                outcome_len: AtomicU32::new(0),
                request_len: bytes.len() as u32,
            });
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(REQUEST_AT), bytes.len());
            Channel { segment }
        }
    }

    /// Maps the segment the worker passed (the executor); None when it is gone.
    pub fn attach(handle: u32) -> Option<Channel> {
        // SAFETY: dsm_attach returns NULL for a segment that no longer exists.
        let segment = unsafe { pg_sys::dsm_attach(handle) };
        (!segment.is_null()).then_some(Channel { segment })
    }

    pub fn handle(&self) -> u32 {
        unsafe { pg_sys::dsm_segment_handle(self.segment) }
    }

    fn header(&self) -> &Header {
        // SAFETY: the segment starts with a Header for as long as it is mapped.
        unsafe { &*(pg_sys::dsm_segment_address(self.segment) as *const Header) }
    }

    fn base(&self) -> *mut u8 {
        unsafe { pg_sys::dsm_segment_address(self.segment) as *mut u8 }
    }

    pub fn request(&self) -> Result<Request, serde_json::Error> {
        let len = self.header().request_len as usize;
        // SAFETY: the worker wrote request_len bytes at REQUEST_AT before starting us.
        let bytes = unsafe { std::slice::from_raw_parts(self.base().add(REQUEST_AT), len) };
        serde_json::from_slice(bytes)
    }

    /// Records the outcome unless one already was (the first word wins: an
    /// error reported while the process exits must not replace the result).
    pub fn put_outcome(&self, outcome: &Outcome) {
        let header = self.header();
        if header.outcome_state.compare_exchange(EMPTY, WRITING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let bytes = encode_within(outcome, OUTCOME_BYTES);
        // SAFETY: WRITING makes this process the only writer of the area.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base().add(std::mem::size_of::<Header>()), bytes.len());
        }
        header.outcome_len.store(bytes.len() as u32, Ordering::Relaxed);
        header.outcome_state.store(WRITTEN, Ordering::Release);
    }

    /// The outcome, once the executor wrote it.
    pub fn outcome(&self) -> Option<Outcome> {
        let header = self.header();
        if header.outcome_state.load(Ordering::Acquire) != WRITTEN {
            return None;
        }
        // SAFETY: WRITTEN is stored after the bytes and their length.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.base().add(std::mem::size_of::<Header>()),
                header.outcome_len.load(Ordering::Relaxed) as usize,
            )
        };
        serde_json::from_slice(bytes).ok()
    }

    /// Unmaps the segment; the last process to do so destroys it.
    pub fn close(self) {
        unsafe { pg_sys::dsm_detach(self.segment) }
    }
}

/// JSON of `outcome`, its error message cut (at a character boundary) so
/// that it fits in `limit` bytes.
fn encode_within(outcome: &Outcome, limit: usize) -> Vec<u8> {
    let bytes = serde_json::to_vec(outcome).expect("an outcome serializes");
    if bytes.len() <= limit {
        return bytes;
    }
    let Outcome::Failed { error } = outcome else {
        unreachable!("a completed outcome is a command tag and a number");
    };
    let mut keep = limit / 2;
    while !error.is_char_boundary(keep) {
        keep -= 1;
    }
    encode_within(&Outcome::Failed { error: format!("{}...", &error[..keep]) }, limit)
}

#[cfg(test)]
mod unit_tests {
    use super::{Outcome, encode_within};

    #[test]
    fn long_errors_are_cut_to_fit_at_a_character_boundary() {
        let error = format!("XX000: {}", "é".repeat(10_000));
        let bytes = encode_within(&Outcome::Failed { error }, 1024);
        assert!(bytes.len() <= 1024);
        let Outcome::Failed { error } = serde_json::from_slice(&bytes).unwrap() else { panic!("not failed") };
        assert!(error.starts_with("XX000: é") && error.ends_with("..."));
    }

    #[test]
    fn short_outcomes_are_kept_whole() {
        let outcome = Outcome::Completed { status: "VACUUM".into(), rows: 0 };
        assert_eq!(serde_json::from_slice::<Outcome>(&encode_within(&outcome, 1024)).unwrap(), outcome);
    }
}
