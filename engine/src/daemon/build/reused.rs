//! The engine's side of [`images::context::reuse`]: where a context copy's record is
//! kept (in the build cache, by the step and its parent) and how it is found again.

use super::exec::CopyJob;
use super::stage::StageState;
use super::Ctx;
use images::dockerfile::Step;
use images::store::LayerRecord;
use std::path::PathBuf;

/// A context copy's earlier run (see [`images::context::reuse`]), found by the step
/// and its parent (not by what it copies, which is what changed), and the record of
/// this run for the next.
pub struct Reused {
    path: Option<PathBuf>,
    at: i64,
    pub earlier: Option<std::sync::Arc<images::context::reuse::Reuse>>,
    pub record: Option<std::sync::Arc<images::context::reuse::Recorder>>,
}

impl Reused {
    pub fn begin(ctx: &Ctx, st: &StageState, step: &Step, job: &CopyJob) -> Reused {
        use images::context::reuse::{Record, Reuse};
        let none = Reused {
            path: None,
            at: 0,
            earlier: None,
            record: None,
        };
        // Only a copy of the context alone: a fetched file, a heredoc or an archive
        // written over a noted destination would make its record wrong.
        if !job.source.is_context || !job.remote.is_empty() || !job.inline.is_empty() || !job.unpack.is_empty() {
            return none;
        }
        let dir = ctx.cache.dir().join("copies");
        if std::fs::create_dir_all(&dir).is_err() {
            return none;
        }
        let path = dir.join(super::cache::key(&st.key, &["copy", &step.text, &job.dest]));
        let earlier = Record::load(&path).and_then(|r| {
            let d = images::Digest::parse(&r.layer)?;
            let layer = ctx.store.layer_dir(&d);
            Reuse::new(r, &layer).ok().map(std::sync::Arc::new)
        });
        Reused {
            path: Some(path),
            // Before anything is read: a file changed during the copy is newer.
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            earlier,
            record: Some(std::sync::Arc::default()),
        }
    }

    pub fn save(&self, layer: Option<&LayerRecord>) {
        let (Some(path), Some(rec), Some(layer)) = (&self.path, &self.record, layer) else {
            return;
        };
        let files = std::mem::take(&mut *rec.lock().unwrap_or_else(|p| p.into_inner()));
        let r = images::context::reuse::Record {
            layer: layer.diff_id.to_string(),
            at: self.at,
            files,
        };
        // Only the next build's speed depends on it.
        if let Err(e) = r.save(path) {
            tracing::warn!("build cache: {}: {e}", path.display());
        }
    }
}
