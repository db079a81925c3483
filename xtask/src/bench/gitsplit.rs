//! Splits the `git_clone` / `git_sync` phase into connect, fetch and checkout, from the
//! git engine's own debug events (`connected`, `fetched`, `checked out the tree`,
//! each with `elapsed_ms`). Diagnostics only: when the events are missing (the engine
//! changed its messages), the phase stays whole.

use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

static EVENTS: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

/// Collects `sandbox_core::git` events that carry `elapsed_ms`.
pub(crate) struct GitSplitLayer;

#[derive(Default)]
struct Fields {
    message: Option<String>,
    elapsed_ms: Option<f64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "elapsed_ms" {
            self.elapsed_ms = Some(value as f64);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "elapsed_ms" {
            self.elapsed_ms = Some(value as f64);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_ms" {
            self.elapsed_ms = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for GitSplitLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("sandbox_core::git") {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let (Some(m), Some(ms)) = (f.message, f.elapsed_ms) {
            if let Ok(mut v) = EVENTS.lock() {
                v.push((m, ms));
            }
        }
    }
}

/// Forgets the events so far (call right before a start).
pub(crate) fn reset() {
    if let Ok(mut v) = EVENTS.lock() {
        v.clear();
    }
}

/// Replaces `git_clone` or `git_sync` in `phases` by `connect`, `fetch`, `checkout`
/// and `git_other` (the case says whether it was a clone or a sync), from the first
/// events since [`reset`].
pub(crate) fn split(phases: &mut Vec<(String, f64)>) {
    let events = match EVENTS.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return,
    };
    let first = |m: &str| events.iter().find(|(n, _)| n == m).map(|(_, v)| *v);
    let (Some(connected), Some(fetched), Some(checkout)) = (
        first("connected"),
        first("fetched"),
        first("checked out the tree"),
    ) else {
        return;
    };
    let Some(i) = phases
        .iter()
        .position(|(n, _)| n == "git_sync" || n == "git_clone")
    else {
        return;
    };
    let total = phases[i].1;
    let fetch = (fetched - connected).max(0.0);
    let rest = (total - connected - fetch - checkout).max(0.0);
    phases.splice(
        i..=i,
        [
            ("connect".to_owned(), connected),
            ("fetch".to_owned(), fetch),
            ("checkout".to_owned(), checkout),
            ("git_other".to_owned(), rest),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_is_split_into_connect_fetch_checkout_and_the_rest() {
        reset();
        if let Ok(mut v) = EVENTS.lock() {
            v.extend([
                ("connected".to_owned(), 5.0),
                ("fetched".to_owned(), 25.0),
                ("checked out the tree".to_owned(), 12.0),
                ("checked out the tree".to_owned(), 99.0),
            ]);
        }
        let mut phases = vec![
            ("provision".to_owned(), 1.0),
            ("git_sync".to_owned(), 40.0),
            ("other".to_owned(), 0.5),
        ];
        split(&mut phases);
        let names: Vec<&str> = phases.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "provision",
                "connect",
                "fetch",
                "checkout",
                "git_other",
                "other"
            ]
        );
        assert_eq!(phases[2].1, 20.0);
        assert_eq!(phases[3].1, 12.0, "the first checkout event counts");
        assert_eq!(phases[4].1, 3.0);
        // Without the events the phase stays whole.
        let mut whole = vec![("git_sync".to_owned(), 40.0)];
        split(&mut whole);
        assert_eq!(whole, vec![("git_sync".to_owned(), 40.0)]);
    }
}
