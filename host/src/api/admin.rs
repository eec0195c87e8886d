//! Dev-mode administration: the host clock, and the process's memory. These routes exist only
//! when the server runs with `--dev`; moving the clock forward makes due timers fire without
//! waiting. The offset is the
//! database's: an advance adds to the stored offset, this process takes the result at once and
//! wakes its scheduler, and other processes on the same database follow within
//! [`OFFSET_REFRESH`](crate::clock::OFFSET_REFRESH).

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, JsonBody};
use crate::clock::{MAX_OFFSET_MS, parse_duration};
use crate::tenancy::Scope;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    /// A human duration: `2d`, `36h`, `15m`.
    by: String,
}

pub async fn clock(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    Ok(Json(clock_view(&state)))
}

pub async fn advance_clock(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    JsonBody(body): JsonBody<AdvanceBody>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let by = parse_duration(&body.by).map_err(|e| ApiError::invalid_field("by", e))?;
    let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    if by_ms > MAX_OFFSET_MS - state.clock.offset_ms() {
        return Err(ApiError::invalid_field(
            "by",
            format!(
                "the dev clock moves at most {} ahead of real time, and is {} ahead now",
                humantime::format_duration(std::time::Duration::from_millis(MAX_OFFSET_MS as u64)),
                humantime::format_duration(std::time::Duration::from_millis(
                    state.clock.offset_ms().max(0) as u64
                ))
            ),
        ));
    }
    let offset = state.store.advance_clock_offset(by_ms).await?;
    state.clock.observe_offset(offset);
    state.scheduler_wake.notify_one();
    Ok(Json(clock_view(&state)))
}

fn clock_view(state: &AppState) -> Value {
    json!({ "now": state.clock.now().to_rfc3339(), "nowMs": state.clock.now().0, "offsetMs": state.clock.offset_ms() })
}

/// The process's memory: resident set size, and how much of it the embedded database's caches
/// hold (`null` on PostgreSQL), so the host's own share can be watched apart from the caches.
/// The allocator's free pages are handed back first, so RSS counts live memory rather than
/// the high-water mark of past bursts.
pub async fn memory(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    release_free_heap();
    Ok(Json(json!({
        "residentBytes": resident_bytes(),
        "databaseBytes": state.store.in_process_memory(),
    })))
}

/// Return the heap's free pages to the system: glibc keeps what was freed in its per-thread
/// arenas, so after a burst (a large batch, 64 activations' journals) RSS stays at the peak.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's arenas; it takes the
    // arenas' locks and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size from `/proc/self/status` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    // "VmRSS:   123456 kB"
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
